"""Export the fine-tuned encoder as `text_features`: a raw-text SavedModel for TF Serving.

One call on a batch of strings returns the sentence embedding, sentiment and topic probabilities
and the aspect terms found in each text with their polarity. Tokenization runs in-graph with
SentencePiece (TF Serving links the TF Text ops); nothing is jit-compiled (TF Serving runs without
XLA). Aspect terms come from a lexicon of surface terms -> aspect names: the text is split into
clauses ("but", "however", ";", ...), each term is matched with one regular expression (longest
alternative first, so "battery life" wins over "battery"), and each match takes the polarity
P(positive) - P(negative) of its own clause, so "great sound but the battery dies" is positive on
sound and negative on battery.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import tensorflow as tf

# Clause boundaries: contrastive conjunctions and ; : , — a comma also separates list-like praise.
CLAUSE_BOUNDARY = (r"\b(?:but|however|although|though|whereas|while|yet|except)\b|[;:,!?.]"
                   r"|[，。！？；：、]|但是|不过|可是")
_CLAUSE_MARK = "\x1e"
_MATCH_MARK = "\x1f"
_TERM_RE = re.compile(r"^[\w][\w' \-&]*$")
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")


def aspect_pattern(terms: Sequence[str]) -> str:
    """One RE2 alternation of lexicon terms, longest first, on word boundaries. RE2's `\\b` is
    ASCII-only, so a Chinese term ("质量"), which has no spaces around it, is matched anywhere."""
    clean = sorted({t.strip().lower() for t in terms if t and _TERM_RE.match(t.strip())},
                   key=lambda t: (-len(t), t))
    if not clean:
        return "(" + _MATCH_MARK * 3 + ")"  # never occurs: marks are stripped from the input

    def bounded(term: str) -> str:
        start = r"\b" if _ASCII_WORD.match(term[0]) else ""
        end = r"\b" if _ASCII_WORD.match(term[-1]) else ""
        return start + re.escape(term) + end

    return "(" + "|".join(bounded(t) for t in clean) + ")"


class TextFeatures(tf.Module):
    """Raw text -> embedding, sentiment, topic, aspect terms with polarity (see module doc).

    Args:
        classifier: a trained `OpinionClassifier` (Keras 3).
        preprocessor: an `AlbertTextClassifierPreprocessor` (SentencePiece inside).
        sentiment_labels, topic_labels: class names, in head order.
        aspect_terms: surface term -> aspect name.
        max_aspects: width of the padded aspect outputs.
    """

    def __init__(
        self,
        classifier,
        preprocessor,
        sentiment_labels: Sequence[str],
        topic_labels: Sequence[str],
        aspect_terms: Mapping[str, str],
        max_aspects: int = 8,
    ):
        super().__init__(name="text_features")
        self.classifier = classifier
        self.preprocessor = preprocessor
        self.max_aspects = max_aspects
        self.num_topics = len(topic_labels)
        self.sentiment_labels = tf.constant(list(sentiment_labels))
        self.topic_labels = tf.constant(list(topic_labels) or [""])
        terms = {t.strip().lower(): a for t, a in aspect_terms.items() if t and a}
        self.pattern = aspect_pattern(list(terms))
        keys = list(terms) or [_MATCH_MARK]
        values = [terms[k] for k in keys] if terms else [""]
        self.term_to_aspect = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys), tf.constant(values)),
            default_value="",
        )

    def _encode(self, texts):
        x = self.preprocessor(texts)
        # Trim the batch to its longest text: sentences are far shorter than the packed length.
        longest = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(x["padding_mask"], tf.int32), 1)), 1)
        x = {name: value[:, :longest] for name, value in x.items()}
        sequence = self.classifier.backbone(x, training=False)["sequence_output"]
        embedding = self.classifier.pooling(sequence, x["padding_mask"])
        sentiment = tf.nn.softmax(self.classifier.sentiment_head(embedding, training=False))
        topic = tf.nn.softmax(self.classifier.topic_head(embedding, training=False))
        return tuple(tf.cast(t, tf.float32) for t in (embedding, sentiment, topic))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(self, text):
        batch = tf.shape(text)[0]
        clean = tf.strings.regex_replace(text, f"[{_CLAUSE_MARK}{_MATCH_MARK}]", " ")
        lowered = tf.strings.lower(clean, encoding="utf-8")
        clauses = tf.strings.split(
            tf.strings.regex_replace(lowered, CLAUSE_BOUNDARY, _CLAUSE_MARK), _CLAUSE_MARK
        )
        flat_clauses = clauses.flat_values
        clause_text = clauses.value_rowids()
        marked = tf.strings.regex_replace(
            flat_clauses, self.pattern, _MATCH_MARK + r"\1" + _MATCH_MARK
        )
        parts = tf.strings.split(marked, _MATCH_MARK)
        # Splitting on the marks alternates non-match, match, non-match, ...: odd parts matched.
        is_match = tf.math.floormod(tf.ragged.range(parts.row_lengths()), 2) == 1
        matches = tf.ragged.boolean_mask(parts, is_match)
        match_clause = matches.value_rowids()
        match_aspect = self.term_to_aspect.lookup(matches.flat_values)

        has_match = matches.row_lengths() > 0
        aspect_clauses = tf.boolean_mask(flat_clauses, has_match)
        clause_rank = tf.cumsum(tf.cast(has_match, tf.int64)) - 1

        # One encoder call for the texts and the clauses that mention an aspect.
        embedding, sentiment, topic = self._encode(tf.concat([clean, aspect_clauses], axis=0))
        clause_sentiment = sentiment[batch:]
        embedding, sentiment, topic = embedding[:batch], sentiment[:batch], topic[:batch]

        clause_polarity = clause_sentiment[:, -1] - clause_sentiment[:, 0]
        match_polarity = tf.gather(clause_polarity, tf.gather(clause_rank, match_clause))
        match_text = tf.gather(clause_text, match_clause)
        width = self.max_aspects
        aspect_terms = tf.RaggedTensor.from_value_rowids(
            match_aspect, match_text, nrows=tf.cast(batch, tf.int64)
        )
        aspect_polarity = tf.RaggedTensor.from_value_rowids(
            match_polarity, match_text, nrows=tf.cast(batch, tf.int64)
        )
        outputs = {
            "embedding": embedding,
            "sentiment": sentiment,
            "sentiment_label": tf.gather(self.sentiment_labels, tf.argmax(sentiment, axis=-1)),
            "aspect_terms": aspect_terms[:, :width].to_tensor("", shape=[None, width]),
            "aspect_polarity": aspect_polarity[:, :width].to_tensor(0.0, shape=[None, width]),
            "aspect_count": tf.cast(tf.minimum(aspect_terms.row_lengths(), width), tf.int32),
        }
        if self.num_topics:
            outputs["topic"] = topic[:, : self.num_topics]
            outputs["topic_label"] = tf.gather(
                self.topic_labels, tf.argmax(topic[:, : self.num_topics], axis=-1)
            )
        return outputs


def export_text_features(module: TextFeatures, export_dir: Path) -> Path:
    """Save `module.serve` as the `serving_default` signature of a SavedModel at `export_dir`."""
    export_dir = Path(export_dir)
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return export_dir
