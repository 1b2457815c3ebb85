"""Multi-task text classifier: one ALBERT backbone, a sentiment head and a topic head.

Each training example carries a label for one task and -1 for the other; the missing label gets
sample weight 0, so reviews teach sentiment and news teach topics through the same encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import keras
import keras_hub
import numpy as np
import tensorflow as tf

from albert_tf.heads import ClassificationHead, MaskedMeanPooling

SENTIMENT_LABELS = ("negative", "neutral", "positive")
MISSING = -1


def rating_to_sentiment(rating: float) -> int:
    """1-2 stars negative, 3 neutral, 4-5 positive (indices into SENTIMENT_LABELS)."""
    if rating <= 2:
        return 0
    if rating < 4:
        return 1
    return 2


# A review's own sentiment label when it has no rating (Chinese review sets label 0/1).
_LABEL_SENTIMENT = {"0": 0, "neg": 0, "negative": 0, "1": 2, "pos": 2, "positive": 2,
                    "neutral": 1, "neu": 1}


def label_to_sentiment(label) -> int | None:
    """"0" / "negative" -> 0, "1" / "positive" -> 2, "neutral" -> 1; None for anything else."""
    if label is None:
        return None
    return _LABEL_SENTIMENT.get(str(label).strip().lower())


@dataclass
class LabelledTexts:
    """Texts with a sentiment label and a topic label each (-1 where unknown)."""

    texts: list[str] = field(default_factory=list)
    sentiment: list[int] = field(default_factory=list)
    topic: list[int] = field(default_factory=list)

    def add(self, text: str, sentiment: int = MISSING, topic: int = MISSING) -> None:
        self.texts.append(text)
        self.sentiment.append(sentiment)
        self.topic.append(topic)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> "LabelledTexts":
        return LabelledTexts(
            [self.texts[i] for i in indices],
            [self.sentiment[i] for i in indices],
            [self.topic[i] for i in indices],
        )


def balanced_weights(labels: np.ndarray, num_classes: int, max_weight: float = 10.0) -> np.ndarray:
    """Per-example weights: the task code's `class_weights` of the present labels, 0 where the
    label is missing (a review has no topic, a news article no sentiment)."""
    from albert_tf.text_tasks import class_weights

    labels = np.asarray(labels)
    present = labels >= 0
    per_class = class_weights(labels[present], num_classes, max_weight)
    return np.where(present, per_class[np.maximum(labels, 0)], 0.0).astype("float32")


@keras.saving.register_keras_serializable(package="albert_tf")
class OpinionClassifier(keras_hub.models.Task):
    """ALBERT backbone -> mean over tokens -> sentiment logits and topic logits.

    Args:
        backbone: a `keras_hub.models.AlbertBackbone`.
        preprocessor: optional keras-hub preprocessor (tokenization usually runs in tf.data).
        num_sentiments: sentiment classes (3: negative, neutral, positive).
        num_topics: topic classes (0 disables the topic head's training signal but keeps 1 unit).
        dropout: dropout before each classifier.
    """

    def __init__(self, backbone, preprocessor=None, num_sentiments: int = 3,
                 num_topics: int = 1, dropout: float = 0.1, **kwargs):
        # === Layers ===
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.pooling = MaskedMeanPooling(dtype=backbone.dtype_policy, name="mean_pooling")
        self.sentiment_head = ClassificationHead(
            num_sentiments, dropout=dropout, dtype=backbone.dtype_policy, name="sentiment_head"
        )
        self.topic_head = ClassificationHead(
            max(num_topics, 1), dropout=dropout, dtype=backbone.dtype_policy, name="topic_head"
        )
        if num_topics <= 0:  # no labelled news: the 1-unit head gets no gradient, so no updates
            self.topic_head.trainable = False
        # The heads read the mean over tokens, so the [CLS] pooler gets no gradient: freeze it.
        backbone.get_layer("pooled_dense").trainable = False

        # === Functional Model ===
        inputs = backbone.input
        pooled = self.pooling(backbone(inputs)["sequence_output"], inputs["padding_mask"])
        super().__init__(
            inputs=inputs,
            outputs={"sentiment": self.sentiment_head(pooled), "topic": self.topic_head(pooled)},
            **kwargs,
        )

        # === Config ===
        self.num_sentiments = num_sentiments
        self.num_topics = num_topics
        self.dropout = dropout

    def get_config(self):
        config = super().get_config()
        config.update({"num_sentiments": self.num_sentiments, "num_topics": self.num_topics,
                       "dropout": self.dropout})
        return config


def compile_classifier(model: OpinionClassifier, optimizer, jit_compile: bool = True) -> None:
    """Cross-entropy and accuracy per head; a topic head without topics (no labelled news) gets
    neither, so the logs show no `topic_accuracy: 0` that reads as a broken model."""
    heads = ["sentiment", "topic"] if model.num_topics > 0 else ["sentiment"]
    model.compile(
        optimizer=optimizer,
        loss={h: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for h in heads},
        weighted_metrics={h: [keras.metrics.SparseCategoricalAccuracy("accuracy")] for h in heads},
        jit_compile=jit_compile,
    )


def make_text_preprocessor(tokenizer, sequence_length: int):
    """keras-hub's classifier preprocessor for the tokenizer (ALBERT's SentencePiece, or BERT's
    WordPiece for a BERT-family checkpoint such as the MiniLM teacher): tokenize and pack
    `[CLS] text [SEP]`. The task code's `make_pair_preprocessor` chooses the class."""
    from albert_tf.text_tasks import make_pair_preprocessor

    return make_pair_preprocessor(tokenizer, sequence_length)


def load_encoder(preset: str):
    """(tokenizer, backbone) of a pretrained-weights folder: a keras-hub preset (ours, ALBERT or
    its BERT equivalent, both SentencePiece) or a Hugging Face ALBERT or BERT checkpoint (BERT's
    WordPiece vocabulary included, e.g. the packaged all-MiniLM-L6-v2)."""
    from albert_tf.tokenizer import load_preset_tokenizer

    backbone = keras_hub.models.Backbone.from_preset(str(preset))
    return load_preset_tokenizer(preset), backbone


def classification_dataset(
    data: LabelledTexts,
    preprocessor,
    batch_size: int,
    num_topics: int,
    seed: int = 0,
    start_step: int = 0,
    num_steps: int | None = None,
    shuffle: bool = True,
    balance_sentiment: bool = False,
    lengths: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of `(x, {"sentiment", "topic"}, weights)`; a pure function of (seed, step).

    With `lengths` (`text_tasks.token_lengths`), training batches hold texts of similar length
    and are trimmed to their width (`text_tasks.length_grouped_order`): most review sentences
    are far shorter than the sequence length.
    """
    from albert_tf.pretraining import example_order
    from albert_tf.text_tasks import length_buckets, length_grouped_order, trim_padding

    widths = length_buckets(int(preprocessor.sequence_length))
    grouped = lengths is not None and shuffle

    sentiment = np.asarray(data.sentiment, dtype="int32")
    topic = np.asarray(data.topic, dtype="int32")
    sentiment_w = (
        balanced_weights(sentiment, len(SENTIMENT_LABELS))
        if balance_sentiment
        else (sentiment >= 0).astype("float32")
    )
    topic_w = (topic >= 0).astype("float32") if num_topics > 0 else np.zeros_like(topic, "float32")
    if grouped:
        order = length_grouped_order(lengths, seed, start_step, num_steps or 1, batch_size,
                                     widths)
    elif shuffle:
        order = example_order(len(data), seed, start_step * batch_size, (num_steps or 1) * batch_size)
    else:
        order = np.arange(len(data))
    tensors = (
        tf.constant(data.texts),
        tf.constant(np.maximum(sentiment, 0)),
        tf.constant(np.maximum(topic, 0)),
        tf.constant(sentiment_w),
        tf.constant(topic_w),
    )

    def gather(index):
        texts, s, t, sw, tw = (tf.gather(x, index) for x in tensors)
        x = preprocessor(texts)
        if grouped:
            x = trim_padding(x, widths)
        return x, {"sentiment": s, "topic": t}, {"sentiment": sw, "topic": tw}

    ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size, drop_remainder=shuffle)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def predict_probabilities(model: OpinionClassifier, preprocessor, texts: Sequence[str],
                          batch_size: int = 128) -> dict[str, np.ndarray]:
    """Softmax probabilities of both heads for `texts`, in order (the sentiment head's alone when
    the model has no topics)."""
    from albert_tf.text_tasks import length_buckets, token_lengths, trim_padding

    texts = list(texts)
    widths = length_buckets(int(preprocessor.sequence_length))
    order = np.argsort(token_lengths(preprocessor, texts), kind="stable")  # shortest first
    ds = (tf.data.Dataset.from_tensor_slices([texts[i] for i in order]).batch(batch_size)
          .map(lambda t: trim_padding(preprocessor(t), widths)))
    logits = model.predict(ds, verbose=0)
    if model.num_topics == 0:
        logits = {name: v for name, v in logits.items() if name != "topic"}
    out = {}
    for name, value in logits.items():
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(value))
        out[name] = np.empty_like(probabilities)
        out[name][order] = probabilities
    return out
