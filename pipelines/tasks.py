"""Fine-tune and evaluate one opinion-mining task on one benchmark dataset.

The shared core of `opinionrec finetune --task`, `opinionrec evaluate --task` and
`benchmarks/quality.py`: a dataset of `pipelines.quality.datasets` in, a fine-tuned keras-hub
model folder and EVAL.md's metrics out. Task kinds:

- sentiment / topic: text classification (accuracy, macro-F1);
- intent: classification whose low-confidence answers become "out of scope" (a threshold on the
  top probability chosen on dev; in-scope accuracy and out-of-scope recall);
- aspect-terms: BIO tagging over SentencePiece pieces decoded to character spans (exact-span F1);
- aspect-polarity: the sentence and one aspect term as a pair (accuracy, macro-F1).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger("opinionrec")

# `--task` -> the dataset kind it trains on (pipelines.quality.datasets.Dataset.task).
TASKS = {
    "sentiment": "classification",
    "topic": "classification",
    "intent": "intent",
    "aspect-terms": "aspect_terms",
    "aspect-polarity": "aspect_polarity",
}
MODEL_INFO = "opinionrec_task.json"


@dataclasses.dataclass
class TaskOptions:
    """How to fine-tune; the defaults suit the tiny encoder on 2 CPU cores."""

    sequence_length: int | None = None  # None: from the training texts (95th percentile)
    max_sequence_length: int = 128
    batch_size: int = 32
    epochs: float = 3.0
    learning_rate: float = 1e-3
    max_minutes: float | None = None
    # Training speed (sequence slots per second) to plan the learning-rate schedule within
    # `max_minutes`: steps = min(epochs, minutes x speed / (batch x length)). None: by epochs.
    tokens_per_second: float | None = None
    eval_every: int = 200
    patience: int = 3
    # Batches of similar-length texts with their padding trimmed (classification tasks).
    group_by_length: bool = True
    # Start the head from a logistic regression on the frozen encoder's features (LP-FT):
    # "on", "off", or "auto" = on for tasks of at least PROBE_MIN_CLASSES classes (measured: it
    # lifts the 77- and 150-intent sets by 10-13 points, and costs a 2-class set more training
    # time than it gives back).
    linear_probe: str = "auto"
    class_weights: bool = False
    max_train: int | None = None
    max_dev: int = 2000
    seed: int = 0
    xla: bool = True
    # Task distillation: a fine-tuned teacher folder (of `train_task`, same dataset) whose
    # probabilities on the training texts the model learns beside the labels, with this weight on
    # the labels (`text_tasks.distillation_targets`). Classification tasks only.
    teacher_model: str | None = None
    hard_label_weight: float = 0.5
    # Unlabelled in-domain texts (a file, one per line) the teacher labels for the model beside
    # the training set: task distillation on more text than is labelled (TinyBERT's recipe).
    # Needs `teacher_model`; at most `max_unlabelled` of them (a seeded sample).
    unlabelled: str | None = None
    max_unlabelled: int = 8000
    # Before that, minutes of intermediate-layer distillation from the teacher's fine-tuned
    # backbone on the task's texts (TinyBERT's first task stage), taken out of `max_minutes`;
    # 0 = off. Needs a student that shares the teacher's width and vocabulary.
    layer_minutes: float = 0.0
    layer_learning_rate: float = 2e-4


def task_of_dataset(kind: str) -> str:
    """The `--task` name of a dataset kind ("classification" reads as sentiment or topic)."""
    return {v: k for k, v in TASKS.items() if k != "topic"}[kind]


def default_task(dataset) -> str:
    """The dataset's own `--task`: a classification set is sentiment when its classes are
    polarities (SST-2, ChnSentiCorp), topic otherwise (AG News, MIND, Banking77's intents)."""
    from pipelines.quality.datasets import POLARITY_LABELS

    if dataset.task == "classification" and not set(dataset.labels) <= set(POLARITY_LABELS):
        return "topic"
    return task_of_dataset(dataset.task)


def check_task(task: str | None, dataset) -> str:
    """`task` if it fits `dataset` (None: the dataset's own); a clear error otherwise."""
    if task is None:
        return default_task(dataset)
    if task not in TASKS:
        raise SystemExit(f"unknown --task {task!r}; choose from {', '.join(TASKS)}")
    if TASKS[task] != dataset.task:
        raise SystemExit(f"--task {task} does not fit dataset {dataset.name} (a "
                         f"{dataset.task.replace('_', ' ')} dataset: use --task "
                         f"{default_task(dataset)})")
    return task


def choose_sequence_length(lengths: Sequence[int], maximum: int, quantile: float = 0.95) -> int:
    """Covers `quantile` of the examples (+[CLS]/[SEP]), rounded up to 16, at most `maximum`."""
    import numpy as np

    if not len(lengths):
        return min(maximum, 64)
    needed = int(np.quantile(np.asarray(lengths), quantile)) + 3
    return int(min(maximum, max(16, math.ceil(needed / 16) * 16)))


def _piece_lengths(proto: bytes, texts: Sequence[str], limit: int = 2000) -> list[int]:
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_proto=proto)
    return [len(ids) for ids in processor.encode(list(texts[:limit]))]


def _token_lengths(tokenizer, texts: Sequence[str], limit: int = 2000) -> list[int]:
    """Tokens per text: SentencePiece directly (fast) for ALBERT, the tokenizer itself for a
    WordPiece (BERT-family) checkpoint."""
    if _is_sentencepiece(tokenizer):
        return _piece_lengths(_tokenizer_proto(tokenizer), texts, limit)
    return [len(ids) for ids in tokenizer(list(texts[:limit]))]


def _is_sentencepiece(tokenizer) -> bool:
    import keras_hub

    return isinstance(tokenizer, keras_hub.models.AlbertTokenizer)


def _tokenizer_proto(tokenizer) -> bytes:
    """The SentencePiece proto of a keras-hub `AlbertTokenizer`, as bytes."""
    from albert_tf.tokenizer import sentencepiece_proto

    return sentencepiece_proto(tokenizer)


def _label_ids(examples, labels: Sequence[str]) -> list[int]:
    index = {label: i for i, label in enumerate(labels)}
    return [index[e.label] for e in examples]


PROBE_MIN_CLASSES = 10


def uses_linear_probe(setting: str, num_classes: int) -> bool:
    """Whether a classifier of `num_classes` starts its head from a linear probe."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"linear_probe must be auto, on or off. Received: {setting!r}")
    return setting == "on" or (setting == "auto" and num_classes >= PROBE_MIN_CLASSES)


def planned_steps(options: TaskOptions, num_train: int, sequence_length: float) -> int:
    """Steps to train: `epochs` passes, or fewer when a time budget and a speed say so
    (`sequence_length`: the mean width of a batch, where batches are trimmed)."""
    steps = max(1, math.ceil(options.epochs * num_train / options.batch_size))
    if options.max_minutes and options.tokens_per_second:
        per_step = options.batch_size * sequence_length / options.tokens_per_second
        steps = min(steps, max(1, int(options.max_minutes * 60 / per_step)))
    return steps


def _write_info(output: Path, info: dict) -> None:
    (output / MODEL_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")


def read_info(model_dir: str | Path) -> dict:
    path = Path(model_dir) / MODEL_INFO
    if not path.exists():
        raise SystemExit(f"{model_dir} is not a model folder of `opinionrec finetune --task` "
                         f"(no {MODEL_INFO})")
    return json.loads(path.read_text())


def read_unlabelled(path: str | Path, dataset, labelled: Sequence[str], limit: int,
                    seed: int = 0) -> list[str]:
    """Distinct texts of `path` (one per line), at most `limit` (a seeded sample), leaving out any
    whose normalised form is a `labelled` training text or a text of `dataset`'s dev or test
    split: nothing held out is learnt from, not even through the teacher. For aspect polarity a
    line is a pair, "sentence<TAB>aspect term" (`split_pair`); the sentence is what is checked."""
    import random

    from pipelines.quality.in_domain import text_key

    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"--unlabelled {path}: no such file (one text per line)")
    pairs = dataset.task == "aspect_polarity"
    taken = {text_key(t) for t in labelled}
    held_out = {text_key(e.text) for e in (*dataset.dev, *dataset.test)}
    texts, dropped, seen = [], 0, set()
    for line in path.read_text(encoding="utf-8").splitlines():
        sentence, target = split_pair(line)
        key = text_key(sentence)
        if not key:
            continue
        if pairs and not target:
            raise SystemExit(f"--unlabelled {path}: aspect polarity needs 'sentence<TAB>aspect "
                             f"term' lines, not {line[:60]!r}")
        if key in taken or (key, target) in seen:  # a plain text repeats as (key, None)
            continue
        if key in held_out:
            dropped += 1
            continue
        seen.add((key, target))
        texts.append(line.strip())
    if dropped:
        log.warning("--unlabelled: left out %d texts that are also dev or test texts of %s",
                    dropped, dataset.name)
    if not texts:
        raise SystemExit(f"--unlabelled {path}: no text left that is not already labelled or "
                         "held out")
    if len(texts) > limit:
        texts = random.Random(seed).sample(texts, limit)
    return texts


def split_pair(line: str) -> tuple[str, str | None]:
    """An unlabelled line's (sentence, aspect term): "sentence<TAB>term", or a plain text."""
    sentence, tab, target = line.strip().partition("\t")
    return sentence.strip(), (target.strip() or None) if tab else None


def train_task(dataset, preset: str | Path, output: str | Path, options: TaskOptions,
               task: str | None = None) -> dict:
    """Fine-tune the preset's backbone on `dataset`; save a keras-hub model folder in `output`.

    Returns the training summary (steps, dev curve, sequence length, seconds). The folder holds
    the fine-tuned backbone, tokenizer, task weights and `opinionrec_task.json` (task, labels,
    the intent threshold), so `evaluate_task` and `TextClassifier.from_preset` can load it.
    """
    task = check_task(task, dataset)
    if options.unlabelled and not options.teacher_model:
        raise SystemExit("--unlabelled needs --teacher-model: the fine-tuned teacher labels "
                         "those texts for the model")
    import keras

    from albert_tf.bert import load_backbone
    from albert_tf.spans import aligner_for
    from albert_tf.text_tasks import make_pair_preprocessor
    from albert_tf.tokenizer import load_preset_tokenizer
    from pipelines.quality.datasets import stratified_subset

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    work = output / "training"
    shutil.rmtree(work, ignore_errors=True)  # a fine-tune always starts from the preset
    keras.utils.set_random_seed(options.seed)  # before any tokenizer: it resets TF resources
    train = dataset.train
    if options.max_train:
        train = stratified_subset(train, options.max_train, options.seed)
    # Dev is scored at every checkpoint: a seeded, label-stratified sample of it keeps that cheap.
    dev = stratified_subset(dataset.dev, options.max_dev, options.seed)
    unlabelled: list[str] = []
    if options.unlabelled:
        unlabelled = read_unlabelled(options.unlabelled, dataset, [e.text for e in train],
                                     options.max_unlabelled, options.seed)
    tokenizer = load_preset_tokenizer(preset)  # SentencePiece, or WordPiece for a BERT checkpoint
    texts = [e.text for e in train]
    lengths = _token_lengths(tokenizer, texts)
    if TASKS[task] == "aspect_polarity":
        lengths = [n + len(e.target or "") // 3 + 2 for n, e in zip(lengths, train)]
    sequence_length = options.sequence_length or choose_sequence_length(
        lengths, options.max_sequence_length
    )
    log.info("%s on %s: %d training%s, %d dev examples; sequence length %d", task,
             dataset.name, len(train),
             f" (+{len(unlabelled)} unlabelled, labelled by the teacher)" if unlabelled else "",
             len(dev), sequence_length)
    backbone = load_backbone(preset)  # ALBERT, or the BERT equivalent
    start = time.perf_counter()
    if TASKS[task] == "aspect_terms":
        summary = _train_tagger(backbone, aligner_for(tokenizer), train, dev,
                                sequence_length, work, options, unlabelled,
                                layer_preprocessor=make_pair_preprocessor(tokenizer,
                                                                          sequence_length))
        info: dict[str, Any] = {"labels": []}
        preprocessing = tokenizer
    else:
        preprocessing = make_pair_preprocessor(tokenizer, sequence_length)
        summary, info = _train_classifier(backbone, preprocessing, dataset, train, dev, work,
                                          options, task, unlabelled)
    # The folder is a keras-hub preset: fine-tuned backbone + task weights + tokenizer.
    summary.pop("model").save_to_preset(str(output))
    preprocessing.save_to_preset(str(output))
    info.update(task=task, dataset=dataset.name, kind=dataset.task, language=dataset.language,
                sequence_length=sequence_length, preset=str(preset),
                options=dataclasses.asdict(options))
    _write_info(output, info)
    summary.update(sequence_length=sequence_length, parameters=int(backbone.count_params()),
                   wall_s=round(time.perf_counter() - start, 1))
    (output / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _train_classifier(backbone, preprocessor, dataset, train, dev, work, options, task,
                      unlabelled: Sequence[str] = ()):
    import numpy as np

    from albert_tf.bert import matching_class
    from albert_tf.text_tasks import (
        TextClassifier, fine_tune_classifier, length_buckets, mean_batch_width,
        predict_text_logits, softmax, token_lengths,
    )
    from pipelines.quality import metrics

    sequence_length = int(preprocessor.sequence_length)
    labels = list(dataset.labels)
    in_scope_dev = [e for e in dev if e.label in labels]
    pairs = TASKS[task] == "aspect_polarity"
    # The subclass for this backbone (ALBERT or BERT), so the folder loads back as it was built.
    model = matching_class(TextClassifier, type(backbone))(backbone, num_classes=len(labels))
    dev_y = np.asarray(_label_ids(in_scope_dev, labels))

    def dev_score(y, logits):  # macro-F1 where classes are unbalanced, else accuracy
        pred = logits.argmax(-1)
        if "macro_f1" in dataset.metrics:
            return metrics.macro_f1(y, pred)
        return metrics.accuracy(y, pred)

    train_texts, train_y = [e.text for e in train], _label_ids(train, labels)
    targets, labelling = None, {}
    if options.teacher_model:
        from albert_tf.text_tasks import distillation_targets

        teacher_info = read_info(options.teacher_model)
        if teacher_info.get("labels") != labels:
            raise ValueError(f"the teacher {options.teacher_model} was fine-tuned on other "
                             f"labels ({teacher_info.get('labels')}) than {dataset.name}'s")
        probabilities = _classifier_probabilities(options.teacher_model, train)
        targets = distillation_targets(train_y, probabilities, options.hard_label_weight)
        log.info("%s: task distillation from %s (label weight %.2f; teacher agrees with %.1f%% "
                 "of the training labels)", dataset.name, options.teacher_model,
                 options.hard_label_weight,
                 100 * float(np.mean(probabilities.argmax(-1) == np.asarray(train_y))))
    train_pairs = [e.target for e in train] if pairs else None
    if options.teacher_model and unlabelled:  # the teacher's distributions are their only targets
        extra_texts, extra_pairs = zip(*map(split_pair, unlabelled))
        start = time.perf_counter()
        extra = _teacher_probabilities(options.teacher_model, extra_texts,
                                       extra_pairs if pairs else None)
        labelling = _labelling_summary(len(unlabelled), start)
        train_texts += list(extra_texts)
        if pairs:
            train_pairs += list(extra_pairs)
        train_y += [int(i) for i in extra.argmax(-1)]
        targets = np.concatenate([targets, extra])
    # Batches of similar-length texts, trimmed: plan the steps with what a step really costs.
    lengths, width = None, float(sequence_length)
    if options.group_by_length:
        lengths = token_lengths(preprocessor, train_texts, train_pairs)
        width = mean_batch_width(lengths, options.batch_size, length_buckets(sequence_length),
                                 options.seed)
    layer_stage: dict = {}
    if options.teacher_model and options.layer_minutes > 0:
        layer_stage, options = _distill_layers(
            backbone, options, preprocessor, train_texts, train_pairs, lengths,
            [e.text for e in in_scope_dev], [e.target for e in in_scope_dev] if pairs else None,
            work)
    summary = fine_tune_classifier(
        model, preprocessor, train_texts, train_y,
        [e.text for e in in_scope_dev], dev_y, work,
        train_pairs=train_pairs,
        dev_pairs=[e.target for e in in_scope_dev] if pairs else None,
        epochs=options.epochs, batch_size=options.batch_size,
        max_steps=planned_steps(options, len(train_texts), width),
        learning_rate=options.learning_rate, balanced=options.class_weights,
        eval_every=options.eval_every, patience=options.patience,
        max_minutes=options.max_minutes, seed=options.seed, jit_compile=options.xla,
        dev_score=dev_score, train_targets=targets, lengths=lengths,
        group_by_length=options.group_by_length,
        linear_probe=uses_linear_probe(options.linear_probe, len(labels)),
    )
    info: dict[str, Any] = {"labels": labels}
    if TASKS[task] == "intent" and len(in_scope_dev) < len(dev):
        # Out-of-scope detection: the top probability below a threshold chosen on full dev.
        probs = softmax(predict_text_logits(model, preprocessor, [e.text for e in dev]))
        is_oos = np.asarray([e.label not in labels for e in dev])
        correct = np.asarray([labels[p] == e.label for p, e in zip(probs.argmax(-1), dev)])
        info["oos_threshold"] = float(metrics.choose_oos_threshold(probs.max(-1), is_oos,
                                                                     correct))
    summary.update(labelling, model=model)
    if layer_stage:
        summary["layer_distillation"] = layer_stage
    return summary, info


def _distill_layers(backbone, options: TaskOptions, preprocessor, texts, pairs, lengths,
                    dev_texts, dev_pairs, work: Path) -> tuple[dict, TaskOptions]:
    """The student's layers learn the fine-tuned teacher's on the task's texts for
    `options.layer_minutes`; returns what that did and the options with the budget left."""
    from albert_tf.bert import load_backbone
    from albert_tf.layer_distillation import distill_layers_on_texts

    teacher = load_backbone(options.teacher_model)
    if (backbone.hidden_dim, backbone.vocabulary_size) != (teacher.hidden_dim,
                                                           teacher.vocabulary_size):
        log.warning("layer distillation skipped: the student (width %d, %d tokens) does not "
                    "share the teacher's width and vocabulary (%d, %d)", backbone.hidden_dim,
                    backbone.vocabulary_size, teacher.hidden_dim, teacher.vocabulary_size)
        return {}, options
    minutes = options.layer_minutes
    if options.max_minutes:
        minutes = min(minutes, options.max_minutes / 2)  # the head keeps at least half
    # (The distiller freezes the [CLS] pooler, as the classifier's mean pooling already has.)
    stage = distill_layers_on_texts(
        backbone, teacher, preprocessor, texts, Path(work) / "layers", pairs=pairs,
        lengths=lengths, dev_texts=dev_texts, dev_pairs=dev_pairs,
        batch_size=options.batch_size, max_minutes=minutes,
        learning_rate=options.layer_learning_rate, seed=options.seed, jit_compile=options.xla)
    log.info("layer distillation from %s: %d steps in %.0f s; dev hidden MSE %.3f -> %.3f, "
             "attention KL %.3f -> %.3f", options.teacher_model, stage["steps"], stage["wall_s"],
             stage["dev_losses_before"].get("hidden", float("nan")),
             stage["dev_losses_after"].get("hidden", float("nan")),
             stage["dev_losses_before"].get("attention", float("nan")),
             stage["dev_losses_after"].get("attention", float("nan")))
    if options.max_minutes:
        left = max(0.5, options.max_minutes - stage["wall_s"] / 60)
        options = dataclasses.replace(options, max_minutes=left)
    return stage, options


def _labelling_summary(count: int, start: float) -> dict:
    """What labelling the unlabelled texts cost, logged and kept in the training summary."""
    seconds = round(time.perf_counter() - start, 1)
    log.info("the teacher labelled %d unlabelled texts in %.0f s", count, seconds)
    return {"unlabelled_examples": count, "teacher_labelling_seconds": seconds}


def _train_tagger(backbone, aligner, train, dev, sequence_length, work, options,
                  unlabelled: Sequence[str] = (), layer_preprocessor=None) -> dict:
    import numpy as np
    import tensorflow as tf

    from albert_tf.pretraining import example_order
    from albert_tf.bert import matching_class
    from albert_tf.tagger import (INPUT_KEYS, TokenTagger, compile_tagger, encode_for_tagging,
                                  predict_spans, predict_tag_probabilities, tag_targets)
    from albert_tf.text_tasks import (KeepBest, batch_width, length_buckets,
                                      length_grouped_order, mean_batch_width)
    from albert_tf.training import fit_resumable, make_optimizer, warmup_steps_for
    from pipelines.quality import metrics

    encoded = encode_for_tagging(aligner, [e.text for e in train], [list(e.spans) for e in train],
                                 sequence_length)
    truncated_spans = int(np.sum(encoded.get("truncated_spans", 0)))
    targets = np.asarray(encoded["labels"])
    labelling: dict = {}
    if options.teacher_model:  # task distillation: the fine-tuned teacher's tag distributions
        teacher = _tagging_teacher(options.teacher_model, aligner)
        probabilities = predict_tag_probabilities(teacher, encoded)
        targets = tag_targets(targets, probabilities, options.hard_label_weight)
        on_pieces = np.asarray(encoded["sample_weight"]) > 0
        log.info("aspect terms: task distillation from %s (label weight %.2f; teacher agrees "
                 "with %.1f%% of the training tags)", options.teacher_model,
                 options.hard_label_weight, 100 * float(np.mean(
                     probabilities.argmax(-1)[on_pieces] == np.asarray(encoded["labels"])[on_pieces])))
        if unlabelled:  # the teacher's tag distributions are their only targets
            start = time.perf_counter()
            extra = encode_for_tagging(aligner, list(unlabelled), None, sequence_length)
            extra_targets = predict_tag_probabilities(teacher, extra)
            labelling = _labelling_summary(len(unlabelled), start)
            encoded = {k: np.concatenate([np.asarray(encoded[k]), np.asarray(extra[k])])
                       for k in (*INPUT_KEYS, "sample_weight")}
            targets = np.concatenate([targets, extra_targets])
        del teacher
    lengths = np.asarray(encoded["padding_mask"]).sum(axis=1)  # labelled, then unlabelled
    layer_stage: dict = {}
    if options.teacher_model and options.layer_minutes > 0 and layer_preprocessor is not None:
        # The stage reads whole texts ([CLS] text [SEP]), as the tagger does; their encoded
        # lengths group its batches.
        layer_stage, options = _distill_layers(
            backbone, options, layer_preprocessor, [e.text for e in train] + list(unlabelled),
            None, lengths, [e.text for e in dev], None, work)
    model = matching_class(TokenTagger, type(backbone))(backbone)
    widths = length_buckets(sequence_length)
    width = float(sequence_length)
    if options.group_by_length:  # batches of similar length, trimmed (as for classifiers)
        width = mean_batch_width(lengths, options.batch_size, widths, options.seed)
    total_steps = planned_steps(options, len(lengths), width)
    optimizer = make_optimizer("adamw", options.learning_rate,
                               warmup_steps_for(max(1, total_steps // 10), options.max_minutes),
                               total_steps)
    compile_tagger(model, optimizer, jit_compile=options.xla,
                   soft_targets=options.teacher_model is not None)
    keys = INPUT_KEYS

    def trim(x, y, w):
        cut = batch_width(x["padding_mask"], widths)
        return {k: v[:, :cut] for k, v in x.items()}, y[:, :cut], w[:, :cut]

    def train_dataset(start_step: int, num_steps: int):
        if options.group_by_length:
            order = length_grouped_order(lengths, options.seed, start_step, num_steps,
                                         options.batch_size, widths)
        else:
            order = example_order(len(lengths), options.seed, start_step * options.batch_size,
                                  num_steps * options.batch_size)
        x = {k: np.asarray(encoded[k])[order] for k in keys}
        y = targets[order]
        w = np.asarray(encoded["sample_weight"])[order]
        ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(options.batch_size)
        return ds.map(trim) if options.group_by_length else ds

    dev_texts = [e.text for e in dev]
    dev_gold = [list(e.spans) for e in dev]

    def dev_f1(m) -> float:
        predicted = predict_spans(m, aligner, dev_texts, sequence_length)
        return metrics.span_prf(dev_gold, predicted)["f1"]

    keep_best = KeepBest(dev_f1, patience=options.patience)
    start = time.perf_counter()
    steps = fit_resumable(
        model, train_dataset, total_steps=total_steps,
        steps_per_checkpoint=max(1, min(options.eval_every, total_steps)),
        checkpoint_dir=work / "checkpoints", log_dir=work / "logs", keep_checkpoints=1,
        max_minutes=options.max_minutes, anneal_in_budget=True,
        tokens_per_step=round(options.batch_size * width), extra_callbacks=[keep_best],
    )
    return {"model": model, "mean_batch_width": round(width, 1), "steps": steps,
            "planned_steps": total_steps,
            "best_step": keep_best.best_step, "best_dev": keep_best.best,
            "dev_curve": keep_best.history, "train_seconds": round(time.perf_counter() - start, 1),
            "train_examples": len(train), "truncated_spans": truncated_spans, **labelling,
            **({"layer_distillation": layer_stage} if layer_stage else {})}


def _tagging_teacher(model_dir: str, aligner):
    """A fine-tuned aspect-term tagger folder to learn from; it must tokenize as the student does
    (the ALBERT student keeps its teacher's WordPiece vocabulary), so its tags line up."""
    from albert_tf.spans import aligner_for, tokenizes_alike
    from albert_tf.tagger import TokenTagger
    from albert_tf.tokenizer import load_preset_tokenizer

    info = read_info(model_dir)
    if info["kind"] != "aspect_terms":
        raise ValueError(f"the teacher {model_dir} is a {info['kind']} model, not a tagger")
    if not tokenizes_alike(aligner_for(load_preset_tokenizer(model_dir)), aligner):
        raise ValueError(f"the teacher {model_dir} tokenizes differently from the student; tag "
                         "distillation needs the same vocabulary (distil the student from it)")
    return TokenTagger.from_preset(model_dir, preprocessor=None)


def _classifier_probabilities(model_dir: str, examples):
    """Softmax probabilities of a fine-tuned classifier folder over `examples`, in order."""
    pairs = None
    if read_info(model_dir)["kind"] == "aspect_polarity":
        pairs = [e.target or "" for e in examples]
    return _teacher_probabilities(model_dir, [e.text for e in examples], pairs)


def _teacher_probabilities(model_dir: str, texts: Sequence[str],
                           pairs: Sequence[str] | None = None):
    """Softmax probabilities of a fine-tuned classifier folder over `texts` (and `pairs`)."""
    import keras_hub

    from albert_tf.text_tasks import TextClassifier, predict_text_logits, softmax
    from albert_tf.tokenizer import is_wordpiece_preset

    model = TextClassifier.from_preset(model_dir, preprocessor=None)
    cls = (keras_hub.models.BertTextClassifierPreprocessor if is_wordpiece_preset(model_dir)
           else keras_hub.models.AlbertTextClassifierPreprocessor)
    preprocessor = cls.from_preset(model_dir)
    return softmax(predict_text_logits(model, preprocessor, list(texts), pairs))


def _labels(probs, info: dict, open_set: bool) -> list[str]:
    """Argmax class names; with `open_set` and an intent threshold, "oos" below it."""
    from pipelines.quality import metrics

    if open_set and "oos_threshold" in info:
        return list(metrics.apply_threshold(probs, info["labels"], info["oos_threshold"]))
    return [info["labels"][i] for i in probs.argmax(-1)]


def predict_task(model_dir: str | Path, examples, open_set: bool = True) -> list:
    """Predictions of a fine-tuned model folder: class names ("oos" for an intent below the
    threshold, unless `open_set` is False) or, for aspect-terms, character spans per example."""
    info = read_info(model_dir)
    model_dir = str(model_dir)
    if info["kind"] == "aspect_terms":
        from albert_tf.spans import aligner_for
        from albert_tf.tagger import TokenTagger, predict_spans
        from albert_tf.tokenizer import load_preset_tokenizer

        model = TokenTagger.from_preset(model_dir, preprocessor=None)
        aligner = aligner_for(load_preset_tokenizer(model_dir))
        return predict_spans(model, aligner, [e.text for e in examples], info["sequence_length"])
    return _labels(_classifier_probabilities(model_dir, examples), info, open_set)


def score(dataset, examples, predictions, open_predictions=None) -> dict[str, float]:
    """EVAL.md's metrics of `dataset` for `predictions` on `examples` (fractions 0-1).

    Intent: "accuracy" is the closed-set in-scope accuracy of `predictions` (EVAL.md's figure);
    with `open_predictions` (the threshold applied) also open-set "in_scope_accuracy" and
    "oos_recall", as the TF-IDF baseline reports them.
    """
    from pipelines.quality import metrics

    if dataset.task == "aspect_terms":
        result = metrics.span_prf([list(e.spans) for e in examples], predictions)
    elif dataset.task == "intent":
        gold = [e.label for e in examples]
        in_scope = [i for i, g in enumerate(gold) if g != "oos"]
        result = {"accuracy": metrics.accuracy([gold[i] for i in in_scope],
                                               [predictions[i] for i in in_scope])}
        if open_predictions is not None and len(in_scope) < len(gold):
            result["in_scope_accuracy"] = metrics.in_scope_accuracy(gold, open_predictions)
            result["oos_recall"] = metrics.oos_recall(gold, open_predictions)
    else:
        gold = [e.label for e in examples]
        result = {"accuracy": metrics.accuracy(gold, predictions),
                  "macro_f1": metrics.macro_f1(gold, predictions)}
    return {name: float(value) for name, value in result.items()}


def evaluate_task(model_dir: str | Path, dataset, split: str = "test") -> dict[str, Any]:
    """Score a fine-tuned model folder on `dataset`'s `split`; metrics by name plus `n`."""
    info = read_info(model_dir)
    if info["kind"] != dataset.task:
        raise SystemExit(f"{model_dir} was fine-tuned for {info['task']} ({info['dataset']}); "
                         f"{dataset.name} is a {dataset.task.replace('_', ' ')} dataset")
    examples = getattr(dataset, split)
    start = time.perf_counter()
    if info["kind"] == "intent":
        probs = _classifier_probabilities(str(model_dir), examples)
        result = score(dataset, examples, _labels(probs, info, open_set=False),
                       _labels(probs, info, open_set=True))
    else:
        result = score(dataset, examples, predict_task(model_dir, examples))
    result.update(n=len(examples), predict_seconds=round(time.perf_counter() - start, 1))
    return result
