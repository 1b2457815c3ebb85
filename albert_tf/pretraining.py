"""ALBERT pretraining: masked-LM + sentence-order prediction (SOP) on an `AlbertBackbone`.

The instances (segment pairs, tokenized and packed) come from the `pretraining-data` Beam job;
`albert_tf.instances` reads, batches and masks them in tf.data (masking stays dynamic, see
`make_mask_generator`). `AlbertPretrainer` adds a masked-LM head tied to the factorized token
embedding and an SOP head on the pooled output; with `teacher_dim`, also a projection of the
mean-pooled sentence vector onto a teacher's sentence embedding (`albert_tf.distillation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import keras_hub
import numpy as np

from albert_tf.distillation import CosineDistance, teacher_cosine_metric
from albert_tf.heads import SentenceOrderHead, TeacherProjection

# SOP labels: 0 the segments in text order, 1 swapped, -1 a single segment (trains MLM only).
NO_SOP_LABEL = -1


def example_order(num_examples: int, seed: int, start: int, count: int) -> np.ndarray:
    """Indices of examples `start .. start+count` of an endless stream of seeded epoch shuffles.

    A pure function of (seed, position), so a resumed run sees exactly the data it would have.
    """
    out = np.empty(count, dtype=np.int64)
    filled = 0
    position = start
    while filled < count:
        epoch, offset = divmod(position, num_examples)
        order = np.random.default_rng([seed, epoch]).permutation(num_examples)
        take = min(count - filled, num_examples - offset)
        out[filled : filled + take] = order[offset : offset + take]
        filled += take
        position += take
    return out


def mask_selection_length(sequence_length: int, mask_selection_rate: float = 0.15) -> int:
    """Masked positions per instance: 1.25x the expected count, so few instances lose a mask."""
    return max(1, round(sequence_length * mask_selection_rate * 1.25))


def make_mask_generator(
    vocabulary_size: int,
    mask_token_id: int,
    unselectable_token_ids: Sequence[int],
    sequence_length: int,
    mask_selection_rate: float = 0.15,
    max_ngram: int = 1,
):
    """keras-hub's dynamic masking, as in BERT: 15% of the tokens, of which 80% become [MASK],
    10% a random token and 10% stay; special tokens are never selected. Runs in tf.data, so each
    epoch masks other tokens. `max_ngram` > 1 masks spans instead (`NgramMaskGenerator`)."""
    kwargs = {
        "vocabulary_size": vocabulary_size,
        "mask_selection_rate": mask_selection_rate,
        "mask_token_id": mask_token_id,
        "mask_selection_length": mask_selection_length(sequence_length, mask_selection_rate),
        "unselectable_token_ids": list(unselectable_token_ids),
    }
    if max_ngram > 1:
        return NgramMaskGenerator(**kwargs, max_ngram=max_ngram)
    return keras_hub.layers.MaskedLMMaskGenerator(**kwargs)


def ngram_probabilities(max_ngram: int) -> np.ndarray:
    """ALBERT's span lengths: p(n) = (1/n) / sum_k (1/k) for n = 1..max_ngram."""
    inverse = 1.0 / np.arange(1, max_ngram + 1)
    return inverse / inverse.sum()


def span_start_rate(mask_selection_rate: float, max_ngram: int) -> float:
    """The per-token probability of starting a span such that, with spans overlapping freely,
    the expected share of covered tokens is `mask_selection_rate` (away from row ends).

    A token is covered unless no span of length > k starts k tokens before it, for every k:
    1 - prod_k (1 - r P(n > k)) = rate, solved for r by bisection."""
    longer = ngram_probabilities(max_ngram)[::-1].cumsum()[::-1]  # P(n > k), k = 0..max-1

    def coverage(r: float) -> float:
        return 1.0 - float(np.prod(1.0 - r * longer))

    low, high = 0.0, 1.0  # coverage(1) = 1: a span starts at every token
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if coverage(middle) < mask_selection_rate else (low, middle)
    return (low + high) / 2


class NgramMaskGenerator:
    """ALBERT's n-gram masking (Lan et al. 2020, after SpanBERT): spans of n consecutive pieces,
    n <= `max_ngram` with p(n) proportional to 1/n, cover `mask_selection_rate` of the tokens;
    each covered token becomes [MASK] (80%), a random token (10%) or stays (10%).

    A drop-in for keras-hub's `MaskedLMMaskGenerator` in tf.data: ragged token ids in; masked
    `token_ids` (ragged) and `mask_positions`, `mask_ids`, `mask_weights` of shape
    [batch, mask_selection_length] out. Spans never cover special tokens or padding and do not
    cross them; past `mask_selection_length` covered tokens, a row's later tokens stay unmasked.
    """

    def __init__(self, vocabulary_size: int, mask_selection_rate: float, mask_token_id: int,
                 mask_selection_length: int, unselectable_token_ids: Sequence[int] = (),
                 max_ngram: int = 3, mask_token_rate: float = 0.8,
                 random_token_rate: float = 0.1):
        if max_ngram < 1:
            raise ValueError(f"`max_ngram` must be at least 1. Received: {max_ngram}")
        if not 0 < mask_selection_rate < 1:
            raise ValueError("`mask_selection_rate` must be in (0, 1). "
                             f"Received: {mask_selection_rate}")
        self.vocabulary_size = vocabulary_size
        self.mask_selection_rate = mask_selection_rate
        self.mask_token_id = mask_token_id
        self.mask_selection_length = mask_selection_length
        self.unselectable_token_ids = sorted(set(unselectable_token_ids))
        self.max_ngram = max_ngram
        self.mask_token_rate = mask_token_rate
        self.random_token_rate = random_token_rate
        self.start_rate = span_start_rate(mask_selection_rate, max_ngram)
        self.log_probabilities = np.log(ngram_probabilities(max_ngram))[None, :]

    def __call__(self, tokens):
        import tensorflow as tf

        lengths = tokens.row_lengths()
        dense = tokens.to_tensor()
        batch, width = tf.shape(dense)[0], tf.shape(dense)[1]
        selectable = tf.sequence_mask(lengths, width)
        if self.unselectable_token_ids:
            special = tf.constant(self.unselectable_token_ids, dense.dtype)
            selectable &= ~tf.reduce_any(dense[:, :, None] == special, axis=-1)
        later = tf.range(width)[None, :]

        def shifted(x, k: int):  # x[:, t - k] at t; False where t - k is before the row
            return x if k == 0 else tf.roll(x, k, axis=1) & (later >= k)

        span = tf.reshape(tf.random.categorical(self.log_probabilities, batch * width),
                          [batch, width]) + 1
        start = selectable & (tf.random.uniform([batch, width]) < self.start_rate)
        covered = tf.zeros_like(selectable)
        unbroken = selectable  # tokens t-k..t all selectable
        for k in range(self.max_ngram):
            if k:
                unbroken &= shifted(selectable, k)
            covered |= shifted(start & (span > k), k) & unbroken
        chosen = covered & (tf.cumsum(tf.cast(covered, tf.int32), axis=1)
                            <= self.mask_selection_length)

        draw = tf.random.uniform([batch, width])
        random_ids = tf.random.uniform([batch, width], maxval=self.vocabulary_size,
                                       dtype=dense.dtype)
        replacement = tf.where(
            draw < self.mask_token_rate, tf.cast(self.mask_token_id, dense.dtype),
            tf.where(draw < self.mask_token_rate + self.random_token_rate, random_ids, dense))
        masked = tf.where(chosen, replacement, dense)
        shape = [None, self.mask_selection_length]
        positions = tf.ragged.boolean_mask(
            tf.broadcast_to(tf.range(width, dtype=tf.int64)[None, :], [batch, width]), chosen)
        return {
            "token_ids": tf.RaggedTensor.from_tensor(masked, lengths=lengths),
            "mask_positions": positions.to_tensor(shape=shape),
            "mask_ids": tf.ragged.boolean_mask(dense, chosen).to_tensor(shape=shape),
            "mask_weights": tf.ones_like(positions, tf.float32).to_tensor(shape=shape),
        }


@keras.saving.register_keras_serializable(package="albert_tf")
class AlbertPretrainer(keras_hub.models.Task):
    """An `AlbertBackbone` with a tied masked-LM head and a sentence-order head.

    Outputs `{"mlm": logits [batch, masks, vocabulary], "sop": logits [batch, 2]}` and, with
    `teacher_dim`, `"teacher"`: the student's mean-pooled sentence vector projected to
    `[batch, teacher_dim]`. The loss is MLM + SOP (+ cosine distillation), see
    `compile_pretrainer`. Preprocessing runs in tf.data (`albert_tf.instances`),
    so `preprocessor` is usually None.

    Args:
        backbone: a `keras_hub.models.AlbertBackbone` (or a `BertBackbone`: the MLM head ties
            to whatever token embedding the backbone has).
        preprocessor: optional keras-hub preprocessor applied by `fit` / `predict`.
        dropout: dropout before the SOP classifier.
        teacher_dim: the teacher's embedding size (384 for `--teacher minilm`), or None for no
            distillation output.

    Example:
    ```python
    backbone = keras_hub.models.AlbertBackbone(**get_config("nano").backbone_kwargs())
    pretrainer = AlbertPretrainer(backbone)
    ```
    """

    def __init__(self, backbone, preprocessor=None, dropout: float = 0.0,
                 teacher_dim: int | None = None, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.mlm_head = keras_hub.layers.MaskedLMHead(
            vocabulary_size=backbone.vocabulary_size,
            token_embedding=backbone.token_embedding,
            intermediate_activation=keras.activations.gelu,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=backbone.dtype_policy,
            name="mlm_head",
        )
        self.sop_head = SentenceOrderHead(
            dropout=dropout, dtype=backbone.dtype_policy, name="sop_head"
        )
        self.teacher_head = None
        if teacher_dim:
            self.teacher_head = TeacherProjection(
                teacher_dim, dtype=backbone.dtype_policy, name="teacher_head"
            )

        # === Functional Model ===
        inputs = {
            **backbone.input,
            "mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions"),
        }
        outputs = backbone(backbone.input)
        heads = {
            "mlm": self.mlm_head(outputs["sequence_output"], inputs["mask_positions"]),
            "sop": self.sop_head(outputs["pooled_output"]),
        }
        if self.teacher_head is not None:
            heads["teacher"] = self.teacher_head(
                outputs["sequence_output"], inputs["padding_mask"]
            )
        super().__init__(inputs=inputs, outputs=heads, **kwargs)

        # === Config ===
        self.dropout = dropout
        self.teacher_dim = teacher_dim

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout, "teacher_dim": self.teacher_dim})
        return config


def compile_pretrainer(
    pretrainer: AlbertPretrainer,
    optimizer: keras.optimizers.Optimizer,
    jit_compile: bool = True,
    teacher_weight: float = 1.0,
    sop_weight: float = 1.0,
) -> None:
    """Loss = mean MLM cross-entropy over the masked tokens + `sop_weight` x mean SOP
    cross-entropy over the segment pairs; accuracies as metrics.

    A pretrainer with a `"teacher"` output (`teacher_dim`) adds `teacher_weight` x the cosine
    distance `1 - cos` to the teacher embedding (`y["teacher"]`, weighted by
    `sample_weights["teacher"]`), logged as `teacher_loss`, and its mean cosine as
    `teacher_cosine`. `teacher_weight` is unused without a teacher output.
    """
    # Each loss is a mean over its real items (masked tokens, segment pairs), not over every
    # slot of the batch: padding slots and single-segment rows (weight 0) would otherwise dilute
    # it, and SOP, present in a quarter of the rows of a review + news corpus, never learned.
    loss = {
        "mlm": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"),
        "sop": keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"),
    }
    metrics = {
        "mlm": [keras.metrics.SparseCategoricalAccuracy("accuracy")],
        "sop": [keras.metrics.SparseCategoricalAccuracy("accuracy")],
    }
    loss_weights = {"mlm": 1.0, "sop": float(sop_weight)}
    if getattr(pretrainer, "teacher_dim", None):
        # Averaged over the whole batch, not over the distilled rows: with a sampled teacher
        # (`--teacher-max-instances`) a batch may hold one distilled row, and a mean over it
        # alone gave that row the weight of the batch (MLM collapsed to 4% on the real corpus).
        loss["teacher"] = CosineDistance()
        metrics["teacher"] = [teacher_cosine_metric()]
        loss_weights["teacher"] = float(teacher_weight)
    pretrainer.compile(
        optimizer=optimizer,
        loss=loss,
        loss_weights=loss_weights,
        weighted_metrics=metrics,
        jit_compile=jit_compile,
    )


def build_backbone(config_kwargs: dict) -> keras_hub.models.AlbertBackbone:
    return keras_hub.models.AlbertBackbone(**config_kwargs)
