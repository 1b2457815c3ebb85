"""Extractive question answering (SQuAD 2.0 style): a start and an end logit per token, and
"no answer" as the span at `[CLS]`.

A question and a context are packed `[CLS] question [SEP] context-window [SEP]` (segment 0 for the
question, 1 for the context), in numpy from `albert_tf.spans` aligners so every context piece keeps
its character span: an answer is `context[piece_i.start:piece_j.end]`, exact through
normalisation, whitespace trimmed. A context longer than a window is cut into windows overlapping
by `stride` pieces; a window that does not hold the whole answer learns "no answer" (`[CLS]`).
At inference each example's best span over its windows is scored against its least "no answer"
score, and a threshold on that margin (chosen on dev) decides whether to answer.

Works with any keras-hub backbone this package uses (ALBERT, its BERT equivalent, the MiniLM
teacher): `matching_class(SpanQuestionAnswerer, type(backbone))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import keras
import keras_hub
import numpy as np

from albert_tf.spans import Piece, span_pieces, strip_span

INPUT_KEYS = ("token_ids", "segment_ids", "padding_mask")
_MASKED = -1e4  # a logit for positions that cannot start or end an answer


@keras.saving.register_keras_serializable(package="albert_tf")
class SpanQuestionAnswerer(keras_hub.models.Task):
    """Backbone -> `sequence_output` -> dropout -> Dense(2): start and end logits per token,
    padding masked. Outputs `[batch, tokens, 2]`.

    Example:
        model = SpanQuestionAnswerer(backbone)
        compile_qa(model, keras.optimizers.Adam(3e-5))
        data = encode_for_qa(aligner, questions, contexts, answers, sequence_length=256)
        model.fit(model_inputs(data), data["labels"])
    """

    backbone_cls = keras_hub.models.AlbertBackbone

    def __init__(self, backbone, preprocessor=None, dropout: float = 0.1, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=backbone.dtype_policy,
                                                  name="span_dropout")
        self.span_head = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=backbone.dtype_policy, name="span_head")
        # Spans are read from every token's vector, so the [CLS] pooler gets no gradient.
        backbone.get_layer("pooled_dense").trainable = False

        # === Functional Model ===
        inputs = backbone.input
        sequence = backbone(inputs)["sequence_output"]
        logits = keras.ops.cast(self.span_head(self.dropout_layer(sequence)), "float32")
        mask = keras.ops.expand_dims(keras.ops.cast(inputs["padding_mask"], "bool"), -1)
        logits = keras.ops.where(mask, logits, _MASKED)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="albert_tf")
class BertSpanQuestionAnswerer(SpanQuestionAnswerer):
    """`SpanQuestionAnswerer` on a BERT backbone (the MiniLM teacher, `albert_tf.bert`)."""

    backbone_cls = keras_hub.models.BertBackbone


@keras.saving.register_keras_serializable(package="albert_tf")
def span_loss(y_true, y_pred):
    """Mean of the start and end cross-entropies; `y_true` is `[batch, 2]` token positions."""
    y_true = keras.ops.cast(y_true, "int32")
    start = keras.losses.sparse_categorical_crossentropy(y_true[:, 0], y_pred[..., 0],
                                                         from_logits=True)
    end = keras.losses.sparse_categorical_crossentropy(y_true[:, 1], y_pred[..., 1],
                                                       from_logits=True)
    return (start + end) / 2.0


@keras.saving.register_keras_serializable(package="albert_tf")
def soft_span_loss(y_true, y_pred):
    """`span_loss` against target distributions: `y_true` is `[batch, tokens, 2]`, a distribution
    over the tokens for the start and one for the end (task distillation, `span_targets`)."""
    start = keras.losses.categorical_crossentropy(y_true[..., 0], y_pred[..., 0], from_logits=True)
    end = keras.losses.categorical_crossentropy(y_true[..., 1], y_pred[..., 1], from_logits=True)
    return (start + end) / 2.0


def compile_qa(model: SpanQuestionAnswerer, optimizer, jit_compile: bool = True,
               soft_targets: bool = False) -> None:
    """Span cross-entropy against gold positions, or with `soft_targets` against distributions."""
    model.compile(optimizer=optimizer, loss=soft_span_loss if soft_targets else span_loss,
                  jit_compile=jit_compile)


def span_targets(labels: np.ndarray, teacher_logits: np.ndarray,
                 hard_weight: float = 0.5) -> np.ndarray:
    """Task distillation for QA: per window, `hard_weight` x one-hot(gold start / end, `[CLS]` for
    "no answer here") + the rest x the teacher's start / end distributions over the tokens
    (`text_tasks.distillation_targets` on each axis). `[windows, tokens, 2]` float32."""
    from albert_tf.text_tasks import distillation_targets, softmax

    logits = np.asarray(teacher_logits, "float32")
    return np.stack([distillation_targets(np.asarray(labels)[:, axis],
                                          softmax(logits[..., axis]), hard_weight)
                     for axis in (0, 1)], axis=-1)


def model_inputs(encoded: dict) -> dict[str, np.ndarray]:
    return {key: encoded[key] for key in INPUT_KEYS}


@dataclass
class Window:
    """One packed window of one example: its context pieces and where they sit in the row."""

    example: int
    pieces: list[Piece]  # the context pieces in this window
    offset: int  # the row position of the first context piece


def encode_for_qa(
    aligner,
    questions: Sequence[str],
    contexts: Sequence[str],
    answers: Sequence[tuple[int, int] | None] | None,
    sequence_length: int,
    stride: int = 64,
    max_question_pieces: int = 48,
) -> dict:
    """Pack each (question, context) into windows `[CLS] q [SEP] c[i:i+room] [SEP]`.

    `answers` holds each example's character span `(start, end)` in its context, or None for no
    answer (or is None at inference). With an answer, the context is cut at its boundaries so
    pieces cover it exactly; the label is the (start, end) row positions of its pieces in a
    window that holds it whole, else `(0, 0)`, the `[CLS]` position ("no answer here").

    Returns numpy `token_ids`, `segment_ids`, `padding_mask` (int32, `[windows, length]`),
    `labels` (int32 `[windows, 2]`) and `windows` (a `Window` per row).
    """
    if answers is not None and len(answers) != len(questions):
        raise ValueError(f"`answers` must have one entry per question. Received: {len(answers)} "
                         f"for {len(questions)} questions")
    rows_ids, rows_segments, labels, windows = [], [], [], []
    for index, (question, context) in enumerate(zip(questions, contexts)):
        question_ids = [p.id for p in aligner.pieces(question)][:max_question_pieces]
        span = None
        if answers is not None and answers[index] is not None:
            span = strip_span(context, tuple(answers[index]))
        pieces = aligner.pieces(context, cut_at=list(span) if span else [])
        answer_pieces = span_pieces(pieces, [span])[0] if span else []
        room = sequence_length - len(question_ids) - 3
        if room < 1:
            raise ValueError(f"`sequence_length` {sequence_length} leaves no room for the context "
                             f"after a {len(question_ids)}-piece question")
        offset = len(question_ids) + 2
        start = 0
        while True:
            window = pieces[start:start + room]
            ids = ([aligner.cls_id] + question_ids + [aligner.sep_id] + [p.id for p in window]
                   + [aligner.sep_id])
            rows_ids.append(ids)
            rows_segments.append([0] * offset + [1] * (len(window) + 1))
            label = (0, 0)
            if answer_pieces and start <= answer_pieces[0] and answer_pieces[-1] < start + room:
                label = (offset + answer_pieces[0] - start, offset + answer_pieces[-1] - start)
            labels.append(label)
            windows.append(Window(index, window, offset))
            if start + room >= len(pieces):
                break
            start += max(1, room - stride)
    n = len(rows_ids)
    token_ids = np.full((n, sequence_length), aligner.pad_id, "int32")
    segment_ids = np.zeros((n, sequence_length), "int32")
    padding_mask = np.zeros((n, sequence_length), "int32")
    for row, (ids, segments) in enumerate(zip(rows_ids, rows_segments)):
        token_ids[row, :len(ids)] = ids
        segment_ids[row, :len(segments)] = segments
        padding_mask[row, :len(ids)] = 1
    return {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask,
            "labels": np.asarray(labels, "int32").reshape(n, 2), "windows": windows}


@dataclass
class Answer:
    """The best span of one example and its margin over "no answer" (answer when > threshold)."""

    text: str
    start: int
    end: int
    margin: float


def predict_logits(model: SpanQuestionAnswerer, encoded: dict, batch_size: int = 32) -> np.ndarray:
    """`[windows, length, 2]` logits, shortest windows first, each batch trimmed to the smallest
    `length_buckets` width that holds it (few widths: few traces of the predict function)."""
    from albert_tf.text_tasks import length_buckets, width_for

    mask = np.asarray(encoded["padding_mask"])
    lengths = mask.sum(axis=1)
    widths = length_buckets(mask.shape[1])
    out = np.full(mask.shape + (2,), _MASKED, "float32")
    order = np.argsort(lengths, kind="stable")
    for first in range(0, len(order), batch_size):
        rows = order[first:first + batch_size]
        width = int(width_for(lengths[rows].max(), widths))
        x = {key: np.asarray(encoded[key])[rows, :width] for key in INPUT_KEYS}
        out[rows, :width] = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(x)))
    return out


def best_answers(encoded: dict, logits: np.ndarray, contexts: Sequence[str],
                 max_answer_pieces: int = 40) -> list[Answer]:
    """Each example's best context span over its windows (start <= end, at most
    `max_answer_pieces` long) and its margin: best span score - least `[CLS]` score."""
    best: dict[int, tuple[float, int, int]] = {}
    null: dict[int, float] = {}
    for row, window in enumerate(encoded["windows"]):
        starts, ends = logits[row, :, 0], logits[row, :, 1]
        null[window.example] = min(null.get(window.example, np.inf), starts[0] + ends[0])
        first, count = window.offset, len(window.pieces)
        if not count:
            continue
        s = starts[first:first + count]
        e = ends[first:first + count]
        scores = s[:, None] + e[None, :]
        i, j = np.indices(scores.shape)
        scores = np.where((j >= i) & (j - i < max_answer_pieces), scores, -np.inf)
        flat = int(np.argmax(scores))
        a, b = divmod(flat, count)
        score = float(scores[a, b])
        if window.example not in best or score > best[window.example][0]:
            span = strip_span(contexts[window.example],
                              (window.pieces[a].start, window.pieces[b].end))
            if span is not None:
                best[window.example] = (score, *span)
    answers = []
    for example, context in enumerate(contexts):
        if example not in best:
            answers.append(Answer("", -1, -1, -np.inf))
            continue
        score, start, end = best[example]
        answers.append(Answer(context[start:end], start, end, score - float(null[example])))
    return answers


def predict_answers(model: SpanQuestionAnswerer, aligner, questions: Sequence[str],
                    contexts: Sequence[str], sequence_length: int, stride: int = 64,
                    batch_size: int = 32) -> list[Answer]:
    """Best spans with their margins for (question, context) pairs (no threshold applied)."""
    encoded = encode_for_qa(aligner, questions, contexts, None, sequence_length, stride)
    return best_answers(encoded, predict_logits(model, encoded, batch_size), contexts)


def apply_threshold(answers: Sequence[Answer], threshold: float) -> list[str]:
    """The answer texts, "" (no answer) where the margin is not above `threshold`."""
    return [a.text if a.margin > threshold else "" for a in answers]


def fine_tune_qa(
    model: SpanQuestionAnswerer,
    encoded: dict,
    work_dir,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    epochs: float = 2.0,
    max_minutes: float | None = None,
    dev_score=None,
    eval_every: int = 200,
    patience: int = 3,
    seed: int = 0,
    jit_compile: bool = True,
    targets: np.ndarray | None = None,
) -> dict:
    """Fine-tune on `encode_for_qa` windows (AdamW, warm-up then linear decay, checkpoints in
    `work_dir` so an interrupted run resumes), windows of like length batched together
    (`length_grouped_order`) and each batch trimmed to its longest. `targets` (`span_targets`),
    when given, replace the gold labels: task distillation from a fine-tuned teacher.

    `dev_score(model) -> float`, when given, is evaluated every `eval_every` steps; the best
    weights are kept (`KeepBest`) and training stops after `patience` evaluations without gain.
    Returns the steps run, the dev curve and the training seconds.
    """
    import time
    from pathlib import Path

    import tensorflow as tf

    from albert_tf.text_tasks import KeepBest, batch_width, length_buckets, length_grouped_order
    from albert_tf.training import fit_resumable, make_optimizer, warmup_steps_for

    n = len(encoded["labels"])
    sequence_length = encoded["token_ids"].shape[1]
    widths = length_buckets(sequence_length)
    total_steps = max(1, int(epochs * n / batch_size))
    optimizer = make_optimizer("adamw", learning_rate,
                               warmup_steps_for(max(1, total_steps // 10), max_minutes),
                               total_steps)
    compile_qa(model, optimizer, jit_compile=jit_compile, soft_targets=targets is not None)
    y_all = np.asarray(encoded["labels"] if targets is None else targets)

    def trim(x, y):
        cut = batch_width(x["padding_mask"], widths)
        # Soft targets are per token: cut with the inputs (padding holds no probability).
        return {k: v[:, :cut] for k, v in x.items()}, (y if targets is None else y[:, :cut])

    lengths = np.asarray(encoded["padding_mask"]).sum(axis=1)

    def train_dataset(start_step: int, num_steps: int):
        # Windows of like width batched together: a batch of short reviews costs little.
        order = length_grouped_order(lengths, seed, start_step, num_steps, batch_size, widths)
        x = {k: np.asarray(encoded[k])[order] for k in INPUT_KEYS}
        return (tf.data.Dataset.from_tensor_slices((x, y_all[order]))
                .batch(batch_size).map(trim))

    callbacks = []
    keep_best = None
    if dev_score is not None:
        keep_best = KeepBest(dev_score, patience=patience)
        callbacks.append(keep_best)
    work_dir = Path(work_dir)
    started = time.perf_counter()
    steps = fit_resumable(
        model, train_dataset, total_steps=total_steps,
        steps_per_checkpoint=max(1, min(eval_every, total_steps)),
        checkpoint_dir=work_dir / "checkpoints", log_dir=work_dir / "logs", keep_checkpoints=1,
        max_minutes=max_minutes, anneal_in_budget=True, extra_callbacks=callbacks,
        tokens_per_step=batch_size * sequence_length,
    )
    return {"steps": steps, "planned_steps": total_steps, "windows": n,
            "train_seconds": round(time.perf_counter() - started, 1),
            "best_step": keep_best.best_step if keep_best else steps,
            "best_dev": keep_best.best if keep_best else None,
            "dev_curve": keep_best.history if keep_best else []}
