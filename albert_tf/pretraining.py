"""ALBERT pretraining: masked-LM + sentence-order prediction (SOP) on an `AlbertBackbone`.

`build_sop_pairs` turns documents (lists of sentences) into segment pairs; `pretraining_dataset`
tokenizes, packs and masks them in tf.data (masking stays dynamic); `AlbertPretrainer` adds a
masked-LM head tied to the factorized token embedding and an SOP head on the pooled output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from albert_tf.heads import SentenceOrderHead

NO_SOP_LABEL = -1  # a single-segment instance: trains MLM only


@dataclass
class SopPairs:
    """Segment pairs for pretraining. `label` is 0 (in order), 1 (swapped) or -1 (one segment)."""

    first: list[str]
    second: list[str]
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.first)


def build_sop_pairs(
    documents: Iterable[Sequence[str]],
    max_chars: int = 400,
    seed: int = 0,
    swap_probability: float = 0.5,
) -> SopPairs:
    """Cut each document's consecutive sentences into chunks of about `max_chars` characters.

    A chunk of two or more sentences is split at a random sentence boundary into segments A and B,
    swapped with `swap_probability` (label 1). A one-sentence chunk becomes a single-segment
    instance (label -1) so that short texts still feed masked-LM. Build pairs from body text only:
    a headline as segment B is a surface cue that lets SOP be solved without understanding.
    """
    rng = random.Random(seed)
    first: list[str] = []
    second: list[str] = []
    labels: list[int] = []

    def emit(chunk: list[str]) -> None:
        if len(chunk) == 1:
            first.append(chunk[0])
            second.append("")
            labels.append(NO_SOP_LABEL)
            return
        cut = rng.randint(1, len(chunk) - 1)
        a, b = " ".join(chunk[:cut]), " ".join(chunk[cut:])
        swapped = rng.random() < swap_probability
        first.append(b if swapped else a)
        second.append(a if swapped else b)
        labels.append(int(swapped))

    for sentences in documents:
        chunk: list[str] = []
        size = 0
        for sentence in sentences:
            sentence = sentence.strip()
            if not sentence:
                continue
            if chunk and size + len(sentence) > max_chars:
                emit(chunk)
                chunk, size = [], 0
            chunk.append(sentence)
            size += len(sentence) + 1
        if chunk:
            emit(chunk)
    return SopPairs(first, second, np.asarray(labels, dtype=np.int32))


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


def make_masked_lm_preprocessor(
    tokenizer, sequence_length: int, mask_selection_rate: float = 0.15
) -> keras_hub.models.AlbertMaskedLMPreprocessor:
    """keras-hub's ALBERT preprocessor: tokenize, pack [CLS] A [SEP] B [SEP], mask dynamically."""
    return keras_hub.models.AlbertMaskedLMPreprocessor(
        tokenizer=tokenizer,
        sequence_length=sequence_length,
        mask_selection_rate=mask_selection_rate,
        mask_selection_length=max(1, int(round(sequence_length * mask_selection_rate * 1.25))),
    )


def pretraining_dataset(
    pairs: SopPairs,
    preprocessor: keras_hub.models.AlbertMaskedLMPreprocessor,
    batch_size: int,
    seed: int = 0,
    start_step: int = 0,
    num_steps: int | None = None,
    shuffle: bool = True,
) -> tf.data.Dataset:
    """Batches of `(x, {"mlm", "sop"} labels, {"mlm", "sop"} weights)` from step `start_step`.

    With `shuffle=False` the pairs are read once in order (for evaluation).
    """
    if shuffle:
        num_steps = num_steps if num_steps is not None else 1
        order = example_order(len(pairs), seed, start_step * batch_size, num_steps * batch_size)
    else:
        order = np.arange(len(pairs))
    first = tf.constant(pairs.first)
    second = tf.constant(pairs.second)
    labels = tf.constant(pairs.label)

    def gather(index):
        return tf.gather(first, index), tf.gather(second, index), tf.gather(labels, index)

    def preprocess(a, b, label):
        x, mask_ids, mask_weights = preprocessor((a, b))
        y = {"mlm": mask_ids, "sop": tf.maximum(label, 0)}
        weights = {
            "mlm": mask_weights,
            "sop": tf.cast(label != NO_SOP_LABEL, "float32"),
        }
        return x, y, weights

    ds = tf.data.Dataset.from_tensor_slices(order)
    ds = ds.batch(batch_size, drop_remainder=shuffle).map(gather)
    ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="albert_tf")
class AlbertPretrainer(keras_hub.models.Task):
    """An `AlbertBackbone` with a tied masked-LM head and a sentence-order head.

    Outputs `{"mlm": logits [batch, masks, vocabulary], "sop": logits [batch, 2]}`; the loss is
    MLM + SOP (see `compile_pretrainer`). Preprocessing runs in tf.data (`pretraining_dataset`),
    so `preprocessor` is usually None.

    Args:
        backbone: a `keras_hub.models.AlbertBackbone`.
        preprocessor: optional keras-hub preprocessor applied by `fit` / `predict`.
        dropout: dropout before the SOP classifier.

    Example:
    ```python
    backbone = keras_hub.models.AlbertBackbone(**get_config("nano").backbone_kwargs())
    pretrainer = AlbertPretrainer(backbone)
    ```
    """

    def __init__(self, backbone, preprocessor=None, dropout: float = 0.0, **kwargs):
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

        # === Functional Model ===
        inputs = {
            **backbone.input,
            "mask_positions": keras.Input(shape=(None,), dtype="int32", name="mask_positions"),
        }
        outputs = backbone(backbone.input)
        super().__init__(
            inputs=inputs,
            outputs={
                "mlm": self.mlm_head(outputs["sequence_output"], inputs["mask_positions"]),
                "sop": self.sop_head(outputs["pooled_output"]),
            },
            **kwargs,
        )

        # === Config ===
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update({"dropout": self.dropout})
        return config


def compile_pretrainer(
    pretrainer: AlbertPretrainer, optimizer: keras.optimizers.Optimizer, jit_compile: bool = True
) -> None:
    """Loss = MLM cross-entropy over masked positions + SOP cross-entropy; accuracies as metrics."""
    pretrainer.compile(
        optimizer=optimizer,
        loss={
            "mlm": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "sop": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
        weighted_metrics={
            "mlm": [keras.metrics.SparseCategoricalAccuracy("accuracy")],
            "sop": [keras.metrics.SparseCategoricalAccuracy("accuracy")],
        },
        jit_compile=jit_compile,
    )


def build_backbone(config_kwargs: dict) -> keras_hub.models.AlbertBackbone:
    return keras_hub.models.AlbertBackbone(**config_kwargs)
