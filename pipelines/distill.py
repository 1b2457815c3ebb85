"""`opinionrec distill`: an ALBERT student inherits and distils the pretrained teacher on your text.

The student (`albert_tf.student`) starts from the teacher's weights (SVD-factorised embeddings,
one shared layer from the teacher's layers), then learns the teacher's hidden states, attention
and value relations and sentence embeddings on the workspace's own documents
(`albert_tf.layer_distillation`). Resumable, time-budgeted, TensorBoard logs in
`distill/logs`; the student is saved as a keras-hub preset (`distill/preset`, ALBERT backbone +
the teacher's WordPiece tokenizer) that `finetune --encoder student` and the quality harness load.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

STAGE = "distill"
# Group texts by length only where batches would be at most this share of full width.
WORTH_GROUPING = 0.75


@dataclass(frozen=True)
class DistillOptions:
    """What a distillation run does; the freshness check and resumption compare these."""

    teacher: str | None = None
    embedding_dim: int = 128
    shared_from: str = "average"
    steps: int = 3000
    batch_size: int = 32
    sequence_length: int = 64
    learning_rate: float = 5e-4
    checkpoint_every: int = 100
    held_out_fraction: float = 0.02
    eval_texts: int = 256
    max_texts: int = 200_000
    texts_files: tuple[str, ...] = ()
    seed: int = 0
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    value_weight: float = 1.0
    sentence_weight: float = 1.0
    group_by_length: bool = True
    no_xla: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "DistillOptions":
        fields = cls.__dataclass_fields__
        values = {k: v for k, v in vars(args).items() if k in fields}
        values["texts_files"] = tuple(args.texts or ())
        values["group_by_length"] = not getattr(args, "no_group_by_length", False)
        return cls(**values)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    defaults = DistillOptions()
    parser.add_argument("--teacher", default=None,
                        help="a Hugging Face or keras-hub BERT folder to distil (default: the "
                        "packaged all-MiniLM-L6-v2)")
    parser.add_argument("--texts", nargs="*", metavar="FILE",
                        help="plain-text files, one text per line, to distil on instead of the "
                        "workspace's ingested documents")
    parser.add_argument("--embedding-dim", type=int, default=defaults.embedding_dim,
                        help="E, the student's factorized embedding width (default: %(default)s)")
    parser.add_argument("--shared-from", default=defaults.shared_from,
                        help="teacher layer(s) that initialise the shared layer: average, first, "
                        "middle, last or an index (default: %(default)s, the best start measured)")
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help="training steps planned; the learning rate decays to 0 there. Raise "
                        "it to continue a finished run from its last checkpoint "
                        "(default: %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=60.0,
                        help="stop after this many minutes of training, with a checkpoint; "
                        "0 = no budget (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="texts per step (default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=defaults.sequence_length,
                        help="WordPiece tokens per text; longer documents are cut into chunks "
                        "of whole sentences (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                        help="peak AdamW learning rate (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every,
                        help="steps between checkpoints and held-out losses (default: "
                        "%(default)s)")
    parser.add_argument("--held-out-fraction", type=float, default=defaults.held_out_fraction,
                        help="share of distinct texts held out for the losses logged per "
                        "checkpoint, split by text (default: %(default)s)")
    parser.add_argument("--eval-texts", type=int, default=defaults.eval_texts,
                        help="held-out texts scored per checkpoint (default: %(default)s)")
    parser.add_argument("--max-texts", type=int, default=defaults.max_texts,
                        help="texts read at most (default: %(default)s)")
    for name in ("hidden", "attention", "value", "sentence"):
        parser.add_argument(f"--{name}-weight", type=float,
                            default=getattr(defaults, f"{name}_weight"),
                            help=f"weight of the {name} loss, 0 to leave it out (default: "
                            "%(default)s)")
    parser.add_argument("--no-group-by-length", action="store_true",
                        help="pad every batch to --sequence-length instead of grouping texts "
                        "of similar length and trimming each batch to the width it needs")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="data order seed")
    parser.add_argument("--no-xla", action="store_true", help="do not XLA-compile the step")


# === Texts ===

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def chunk_sentences(sentences: Iterable[str], max_words: int) -> list[str]:
    """Consecutive sentences packed into chunks of at most `max_words` words (a longer sentence
    is its own chunk, cut by the tokenizer): whole sentences, as the teacher was trained on."""
    chunks, current, words = [], [], 0
    for sentence in sentences:
        sentence = " ".join(str(sentence).split())
        if not sentence:
            continue
        n = len(sentence.split())
        if current and words + n > max_words:
            chunks.append(" ".join(current))
            current, words = [], 0
        current.append(sentence)
        words += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def workspace_texts(ws: ws_lib.Workspace, max_words: int) -> list[str]:
    """Reviews and news of the workspace (title, then sentences), chunked."""
    from pipelines.corpus import read_docs

    docs = read_docs(ws.docs, kinds=["review", "news"], columns=["title", "text", "sentences"])
    texts: list[str] = []
    for title, sentences, text in zip(docs["title"], docs["sentences"], docs["text"]):
        parts = list(sentences) if sentences is not None and len(sentences) else \
            _SENTENCE_END.split(str(text or ""))
        if title:
            parts = [str(title), *parts]
        texts.extend(chunk_sentences(parts, max_words))
    return texts


def file_texts(paths: Sequence[str], max_words: int) -> list[str]:
    texts: list[str] = []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
            texts.extend(chunk_sentences(_SENTENCE_END.split(line), max_words))
    return texts


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the texts in order: what a run trained on, wherever the files were read from."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    return digest.hexdigest()


def split_texts(texts: Sequence[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Distinct texts, split by their case-folded text (no held-out text has a twin in training)."""
    from pipelines.corpus import held_out, split_key

    distinct = list(dict.fromkeys(texts))
    keys = [split_key(t) for t in distinct]
    flags = held_out(keys, fraction, salt=f"distill:{seed}")
    train = [t for t, f in zip(distinct, flags) if not f]
    train_keys = {k for k, f in zip(keys, flags) if not f}
    test = [t for t, k, f in zip(distinct, keys, flags) if f and k not in train_keys]
    return train, test


# === The stage ===


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    options = DistillOptions.from_args(args)
    if options.embedding_dim < 2:
        raise SystemExit(f"distill: --embedding-dim must be at least 2, not {options.embedding_dim}")
    if options.sequence_length < 8:
        raise SystemExit("distill: --sequence-length must be at least 8")
    params = asdict(options)
    inputs = ({f"texts_{i}": path for i, path in enumerate(options.texts_files)}
              if options.texts_files else {"ingest": "stage:ingest"})
    if ws_lib.skip_if_fresh(args, ws, STAGE, params, inputs):
        return 0
    return _distill(ws, options, params, inputs, args.max_minutes or None)


def _grouping_lengths(options: DistillOptions, preprocessor, train: Sequence[str]):
    """(token lengths of `train`, mean batch width) when batches should be grouped by length and
    trimmed (as in fine-tuning), else (None, full width): switched off, or texts so long that batches would keep over
    `WORTH_GROUPING` of their width, where each extra width's XLA compile of the teacher +
    student step (~20 s) costs more than trimming saves in a short budget."""
    from albert_tf.text_tasks import length_buckets, mean_batch_width, token_lengths

    full = float(options.sequence_length)
    if not options.group_by_length:
        return None, full
    lengths = token_lengths(preprocessor, train)
    width = mean_batch_width(lengths, options.batch_size, length_buckets(options.sequence_length),
                             options.seed)
    if width > WORTH_GROUPING * options.sequence_length:
        log.info("distill: texts fill %.0f%% of %d tokens; batches stay full width",
                 100 * width / options.sequence_length, options.sequence_length)
        return None, full
    log.info("distill: texts grouped by length; mean batch width %.1f of %d tokens", width,
             options.sequence_length)
    return lengths, width


def _teacher_folder(options: DistillOptions) -> str:
    if options.teacher:
        return options.teacher
    from albert_tf.distillation import minilm_folder

    try:
        return str(minilm_folder())
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise SystemExit(f"distill: {error}") from error


def _distill(ws, options: DistillOptions, params: dict, inputs: dict,
             max_minutes: float | None) -> int:
    import keras
    import keras_hub

    from albert_tf.bert import wordpiece_for
    from albert_tf.layer_distillation import DistillationWeights, LayerDistiller
    from albert_tf.student import (StudentShape, build_student, embedding_agreement,
                                   parameter_count)
    from albert_tf.text_tasks import make_pair_preprocessor, text_dataset, unlabelled_batches
    from albert_tf.training import fit_resumable, make_optimizer, read_history, warmup_steps_for

    teacher_folder = _teacher_folder(options)
    stage_dir = ws.stage_dir(STAGE)
    checkpoints, logs, preset_dir = stage_dir / "checkpoints", stage_dir / "logs", \
        ws.student_preset
    run_file = stage_dir / "run.json"
    max_words = max(4, int(options.sequence_length * 0.7))
    texts = (file_texts(options.texts_files, max_words) if options.texts_files
             else workspace_texts(ws, max_words))[: options.max_texts]
    train, held_out = split_texts(texts, options.held_out_fraction, options.seed)
    if len(train) < options.batch_size:
        raise SystemExit(f"distill: {len(train)} distinct texts, fewer than one batch of "
                         f"{options.batch_size}; ingest more documents or pass --texts")
    # More --steps (or another checkpoint interval) continues the run; anything else restarts it.
    # The texts count by content, not path, so a copied workspace or corpus still resumes.
    run_state = ws_lib.jsonable({**params, "steps": None, "checkpoint_every": None,
                                 "texts_files": None, "texts": len(texts),
                                 "texts_sha256": texts_digest(texts), "teacher": teacher_folder})
    saved = json.loads(run_file.read_text()) if run_file.exists() else run_state
    if saved != run_state:
        changed = sorted(k for k in {**saved, **run_state} if saved.get(k) != run_state.get(k))
        log.info("distill: %s changed since the last run; discarding its checkpoints and logs",
                 ", ".join(changed))
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.rmtree(logs, ignore_errors=True)

    with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
        stage_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps(run_state))
        keras.utils.set_random_seed(options.seed)
        teacher = keras_hub.models.BertBackbone.from_preset(teacher_folder, dtype="float32")
        tokenizer = wordpiece_for(keras_hub.models.BertTokenizer.from_preset(teacher_folder),
                                  keras_hub.models.AlbertBackbone)
        preprocessor = make_pair_preprocessor(tokenizer, options.sequence_length)
        student, inheritance = build_student(
            teacher, StudentShape(options.embedding_dim, None, options.shared_from))
        log.info("distill: teacher %s (%d parameters) -> ALBERT student E=%d, 1 shared layer x "
                 "%d (%d parameters, %.1fx fewer); %d training and %d held-out texts of up to "
                 "%d tokens", teacher_folder, parameter_count(teacher), options.embedding_dim,
                 student.num_layers, parameter_count(student),
                 parameter_count(teacher) / parameter_count(student), len(train), len(held_out),
                 options.sequence_length)

        lengths, width = _grouping_lengths(options, preprocessor, train)
        trim = lengths is not None
        eval_texts = held_out[: options.eval_texts]
        eval_ds = (text_dataset(eval_texts, preprocessor, options.batch_size, trim=trim).cache()
                   if eval_texts else None)
        at_init = (embedding_agreement(student, teacher, list(eval_ds)) if eval_ds is not None
                   else None)
        if at_init:
            log.info("distill: right after inheritance, held-out sentence cosine %.3f, hidden "
                     "MSE %.3f", at_init["sentence_cosine"], at_init["hidden_mse"])

        weights = DistillationWeights(options.hidden_weight, options.attention_weight,
                                      options.value_weight, options.sentence_weight)
        distiller = LayerDistiller(student, teacher, weights)
        warmup = warmup_steps_for(min(200, options.steps // 10), max_minutes)
        optimizer = make_optimizer("adamw", options.learning_rate, warmup, options.steps)
        distiller.compile(optimizer=optimizer, jit_compile=not options.no_xla)

        train_ds = unlabelled_batches(train, preprocessor, options.batch_size, options.seed,
                                      lengths)

        step = fit_resumable(distiller, train_ds, total_steps=options.steps,
                             steps_per_checkpoint=options.checkpoint_every,
                             checkpoint_dir=checkpoints, log_dir=logs, validation_data=eval_ds,
                             max_minutes=max_minutes,
                             tokens_per_step=round(options.batch_size * width))
        final = (embedding_agreement(student, teacher, list(eval_ds)) if eval_ds is not None
                 else None)
        shutil.rmtree(preset_dir, ignore_errors=True)
        student.save_to_preset(str(preset_dir))
        tokenizer.save_to_preset(str(preset_dir))
        metrics = {
            "step": step, "teacher": teacher_folder,
            "teacher_parameters": parameter_count(teacher),
            "student_parameters": parameter_count(student),
            "parameter_ratio": round(parameter_count(teacher) / parameter_count(student), 2),
            "inheritance": inheritance, "train_texts": len(train), "held_out_texts": len(held_out),
            "mean_batch_width": round(width, 1),
            "held_out_at_init": at_init, "held_out_final": final,
            "history": read_history(logs),
        }
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        record["summary"] = {k: v for k, v in metrics.items() if k != "history"}
        if final:
            log.info("distill: step %d; held-out sentence cosine %.3f (at init %.3f), hidden MSE "
                     "%.3f (at init %.3f); student preset -> %s", step, final["sentence_cosine"],
                     at_init["sentence_cosine"], final["hidden_mse"], at_init["hidden_mse"],
                     preset_dir)
    return 0
