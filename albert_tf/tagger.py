"""Term extraction as token tagging: ALBERT's per-token vectors -> BIO logits per piece.

Texts are packed `[CLS] pieces [SEP] pad...` like keras-hub's ALBERT preprocessors, but in
numpy from `albert_tf.spans.PieceAligner`, because each label needs its piece's character
span. Training cuts texts at gold span boundaries; inference tokenizes whole texts, so the
model sees the same ids as the classifier's keras-hub preprocessing.
"""

from __future__ import annotations

from typing import Sequence

import keras
import keras_hub
import numpy as np

from albert_tf.heads import ClassificationHead
from albert_tf.spans import (
    BEGIN,
    INSIDE,
    OUTSIDE,
    TAGS,
    Piece,
    PieceAligner,
    Span,
    resolve_overlaps,
    span_pieces,
    strip_span,
    tags_to_spans,
)
from albert_tf.training import WeightsOnlyTask

INPUT_KEYS = ("token_ids", "segment_ids", "padding_mask")


@keras.saving.register_keras_serializable(package="albert_tf")
class TokenTagger(WeightsOnlyTask, keras_hub.models.Task):
    """ALBERT backbone -> `sequence_output` -> dropout -> a logit per tag for every token.

    Args:
        backbone: a `keras_hub.models.AlbertBackbone` (`BertTokenTagger` takes the BERT
            equivalent; `albert_tf.bert.matching_class` picks the class).
        preprocessor: optional keras-hub preprocessor (inputs usually come from
            `encode_for_tagging`).
        num_tags: tags per token (`len(TAGS)`: O, B, I).
        dropout: dropout before the per-token classifier.

    Example:
        model = TokenTagger(backbone)
        compile_tagger(model, keras.optimizers.Adam(1e-3))
        data = encode_for_tagging(aligner, texts, spans, sequence_length=64)
        model.fit(model_inputs(data), data["labels"], sample_weight=data["sample_weight"])

    Saved with `save_to_preset` beside its tokenizer, it loads back with
    `TokenTagger.from_preset(path)`.
    """

    backbone_cls = keras_hub.models.AlbertBackbone

    def __init__(self, backbone, preprocessor=None, num_tags: int = len(TAGS),
                 dropout: float = 0.1, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.tagging_head = ClassificationHead(
            num_tags, dropout=dropout, dtype=backbone.dtype_policy, name="tagging_head"
        )
        # Tags are read from every token's vector, so the [CLS] pooler gets no gradient.
        backbone.get_layer("pooled_dense").trainable = False

        # === Functional Model ===
        inputs = backbone.input
        logits = self.tagging_head(backbone(inputs)["sequence_output"])
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        # === Config ===
        self.num_tags = num_tags
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update({"num_tags": self.num_tags, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="albert_tf")
class BertTokenTagger(TokenTagger):
    """`TokenTagger` on the BERT equivalent (`albert_tf.bert`), for ALBERT-vs-BERT runs."""

    backbone_cls = keras_hub.models.BertBackbone


def compile_tagger(model: TokenTagger, optimizer, jit_compile: bool = True,
                   soft_targets: bool = False) -> None:
    """Per-token cross-entropy from logits; `sample_weight` masks [CLS], [SEP], pad. Labels are
    tag ids, or with `soft_targets` a distribution over tags per token (`tag_targets`)."""
    from albert_tf.text_tasks import compile_text_classifier

    compile_text_classifier(model, optimizer, jit_compile=jit_compile, soft_targets=soft_targets)


def tag_targets(labels: np.ndarray, teacher_probabilities: np.ndarray,
                hard_weight: float = 0.5) -> np.ndarray:
    """Task distillation for tagging: per token, `hard_weight` x one-hot(gold tag) + the rest x
    the teacher's tag distribution (`[N, T, tags]`): `text_tasks.distillation_targets` per token."""
    from albert_tf.text_tasks import distillation_targets

    return distillation_targets(labels, teacher_probabilities, hard_weight)


def predict_tag_probabilities(model: TokenTagger, encoded: dict,
                              batch_size: int = 64) -> np.ndarray:
    """Softmax tag distributions `[N, T, tags]` of packed texts (`encode_for_tagging`), shortest
    first, each batch trimmed to the width it needs; positions past a batch's width are O."""
    from albert_tf.text_tasks import length_buckets, width_for

    mask = np.asarray(encoded["padding_mask"])
    n, sequence_length = mask.shape
    lengths = mask.sum(axis=1)
    widths = length_buckets(sequence_length)
    probabilities = np.zeros((n, sequence_length, model.num_tags), "float32")
    probabilities[..., OUTSIDE] = 1.0
    order = np.argsort(lengths, kind="stable")
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        width = int(width_for(lengths[rows].max(), widths))
        x = {key: np.asarray(encoded[key])[rows, :width] for key in INPUT_KEYS}
        logits = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(x)), "float32")
        logits -= logits.max(axis=-1, keepdims=True)
        exp = np.exp(logits)
        probabilities[rows, :width] = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


def model_inputs(encoded: dict) -> dict[str, np.ndarray]:
    """The backbone's inputs out of `encode_for_tagging`'s result."""
    return {key: encoded[key] for key in INPUT_KEYS}


def encode_for_tagging(
    aligner: PieceAligner,
    texts: Sequence[str],
    spans_per_text: Sequence[Sequence[Span]] | None,
    sequence_length: int,
) -> dict:
    """Packs texts as `[CLS] pieces [SEP] pad...` with a tag per position.

    With `spans_per_text`, each text is cut at its (whitespace-stripped, non-overlapping) gold
    span boundaries so its pieces tag the spans exactly; with None (inference) texts are
    tokenized whole and every label is O. Texts keep their first `sequence_length - 2` pieces.

    Returns:
        A dict of numpy arrays `token_ids`, `segment_ids`, `padding_mask`, `labels` (int32,
        `(len(texts), sequence_length)`; labels index `TAGS`, 0 where not a piece) and
        `sample_weight` (float32: 1 on pieces, 0 on [CLS], [SEP], padding and on the kept
        pieces of a gold span cut by truncation); `truncated_spans` (int32 per text: gold
        spans not wholly kept); and `pieces`, the kept `Piece`s per text for `tags_to_spans`.
    """
    if sequence_length < 3:
        raise ValueError(f"`sequence_length` must be at least 3. Received: {sequence_length}")
    if spans_per_text is not None and len(spans_per_text) != len(texts):
        raise ValueError("`spans_per_text` must have one entry per text. Received: "
                         f"{len(spans_per_text)} for {len(texts)} texts")
    shape = (len(texts), sequence_length)
    token_ids = np.full(shape, aligner.pad_id, "int32")
    padding_mask = np.zeros(shape, "int32")
    labels = np.zeros(shape, "int32")
    sample_weight = np.zeros(shape, "float32")
    truncated = np.zeros(len(texts), "int32")
    kept_pieces: list[list[Piece]] = []
    room = sequence_length - 2
    for row, text in enumerate(texts):
        spans: list[Span] = []
        if spans_per_text is not None:
            stripped = (strip_span(text, tuple(s)) for s in spans_per_text[row])
            spans = resolve_overlaps(s for s in stripped if s is not None)
        pieces = aligner.pieces(text, cut_at=[c for span in spans for c in span])
        kept = pieces[:room]
        n = len(kept)
        token_ids[row, 0] = aligner.cls_id
        token_ids[row, 1:n + 1] = [p.id for p in kept]
        token_ids[row, n + 1] = aligner.sep_id
        padding_mask[row, :n + 2] = 1
        sample_weight[row, 1:n + 1] = 1.0
        for indices in span_pieces(pieces, spans):
            if not indices:
                continue
            if indices[-1] >= room:
                truncated[row] += 1
                sample_weight[row, [1 + i for i in indices if i < room]] = 0.0
                continue
            labels[row, 1 + indices[0]] = BEGIN
            labels[row, [1 + i for i in indices[1:]]] = INSIDE
        kept_pieces.append(kept)
    return {
        "token_ids": token_ids,
        "segment_ids": np.zeros(shape, "int32"),
        "padding_mask": padding_mask,
        "labels": labels,
        "sample_weight": sample_weight,
        "truncated_spans": truncated,
        "pieces": kept_pieces,
    }


def tagging_dataset(encoded: dict, batch_size: int, shuffle: bool = True, seed: int = 0):
    """`(inputs, labels, sample_weight)` batches of `encode_for_tagging`'s result for `fit`.

    keras-hub's `Task.fit` turns numpy arrays into an unshuffled dataset and ignores
    `shuffle=True`, so training data goes in as this dataset, reshuffled every epoch.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(
        (model_inputs(encoded), encoded["labels"], encoded["sample_weight"])
    )
    if shuffle:
        ds = ds.shuffle(len(encoded["labels"]), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def decode_tags(encoded: dict, tags: np.ndarray, texts: Sequence[str]) -> list[list[Span]]:
    """Character spans per text from a tag per position (`[CLS]` at 0) of packed texts."""
    return [tags_to_spans(pieces, tags[row, 1:len(pieces) + 1], text)
            for row, (pieces, text) in enumerate(zip(encoded["pieces"], texts))]


def predict_spans(model: TokenTagger, aligner: PieceAligner, texts: Sequence[str],
                  sequence_length: int, batch_size: int = 64) -> list[list[Span]]:
    """Predicted term spans `[(start, end), ...]` per text: whole-text pieces, argmax tags.
    Texts run shortest first, each batch trimmed to the width it needs."""
    from albert_tf.text_tasks import length_buckets, width_for

    texts = list(texts)
    if not texts:
        return []
    encoded = encode_for_tagging(aligner, texts, None, sequence_length)
    lengths = encoded["padding_mask"].sum(axis=1)
    widths = length_buckets(sequence_length)
    tags = np.full(encoded["padding_mask"].shape, OUTSIDE, "int64")
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        width = int(width_for(lengths[rows].max(), widths))
        x = {key: encoded[key][rows, :width] for key in INPUT_KEYS}
        logits = keras.ops.convert_to_numpy(model.predict_on_batch(x))
        tags[rows, :width] = np.asarray(logits).argmax(axis=-1)
    tags = np.where(encoded["padding_mask"] > 0, tags, OUTSIDE)
    return decode_tags(encoded, tags, texts)
