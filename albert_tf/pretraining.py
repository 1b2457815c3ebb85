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
) -> keras_hub.layers.MaskedLMMaskGenerator:
    """keras-hub's dynamic masking, as in BERT: 15% of the tokens, of which 80% become [MASK],
    10% a random token and 10% stay; special tokens are never selected. Runs in tf.data, so each
    epoch masks other tokens."""
    return keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size=vocabulary_size,
        mask_selection_rate=mask_selection_rate,
        mask_token_id=mask_token_id,
        mask_selection_length=mask_selection_length(sequence_length, mask_selection_rate),
        unselectable_token_ids=list(unselectable_token_ids),
    )


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
