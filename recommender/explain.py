"""Explanations grounded in real review sentences: one line per recommended (user, item).

Rule (the same in numpy and in-graph):
  - An aspect is *quotable* for an item when the item has a praising sentence for it and positive
    support, support = aspect_score * count / (count + 1) (mean polarity, discounted when few
    reviews mention it).
  - Personal: among quotable aspects the user weights (> 0), take the argmax of
    `aspect_weight * support` -> `You care about <aspect>: "<sentence>" (praised in P of C
    mentions)` (`(mentioned C times)` when the features lack `aspect_positive`).
  - Fallback (unknown user, or one who weights none of the quotable aspects): the quotable aspect
    with the largest support -> `Reviewers praise its <aspect>: "<sentence>"`.
  - Plain: no quotable aspect -> `N reviews, average rating R.` (`N reviews so far.` without
    ratings).
  - Padding (no item, row -1) -> "".
Ties go to the first aspect. The sentence is quoted verbatim. Only IEEE-exact float operations
(multiply, divide, add, compare) enter the choice, so numpy and TensorFlow pick the same aspect.

`explain_reference` is the readable numpy/Python version the tests trust; `GraphExplainer` is the
tf.Module the SavedModel runs (gathers, argmax-by-mask, `tf.strings.join`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from recommender.data import FeatureSet

PERSONAL = 'You care about {aspect}: "{sentence}" ({support})'
FALLBACK = 'Reviewers praise its {aspect}: "{sentence}"'


@dataclass(frozen=True)
class ExplanationTables:
    """The per-aspect item and user facts explanations are made of (rows as in `FeatureSet`)."""

    aspects: np.ndarray  # [A] str
    aspect_score: np.ndarray  # [N, A] float32
    aspect_count: np.ndarray  # [N, A] int32
    aspect_positive: np.ndarray | None  # [N, A] int32
    aspect_sentence: np.ndarray  # [N, A] str
    n_reviews: np.ndarray  # [N] int64
    mean_rating: np.ndarray  # [N] float32, NaN when the item has no rating
    user_weight: np.ndarray  # [U, A] float32

    @classmethod
    def from_features(cls, features: FeatureSet) -> "ExplanationTables":
        """Tables from a feature set; ratings are averaged over all of its interactions."""
        items = features.items
        ratings = features.interactions[["item_row", "rating"]].dropna()
        mean = ratings.groupby("item_row")["rating"].mean()
        mean_rating = np.full(len(items), np.nan, dtype="float32")
        mean_rating[mean.index.to_numpy()] = mean.to_numpy(dtype="float32")
        return cls(
            aspects=np.asarray(features.aspects, dtype=object),
            aspect_score=items.aspect_score.astype("float32"),
            aspect_count=items.aspect_count.astype("int32"),
            aspect_positive=None if items.aspect_positive is None
            else items.aspect_positive.astype("int32"),
            aspect_sentence=items.aspect_sentence,
            n_reviews=items.n_reviews.astype("int64"),
            mean_rating=mean_rating,
            user_weight=features.users.aspect_weight.astype("float32"),
        )


# === Reference (numpy / Python) ===


def item_support(score: np.ndarray, count: np.ndarray) -> np.ndarray:
    """score * count / (count + 1), float32, elementwise."""
    count = count.astype("float32")
    return (score.astype("float32") * count) / (count + np.float32(1.0))


def _plain_line(n_reviews: int, mean_rating: float) -> str:
    noun = "review" if n_reviews == 1 else "reviews"
    if np.isnan(mean_rating):
        return f"{n_reviews} {noun} so far."
    return f"{n_reviews} {noun}, average rating {np.float32(mean_rating):.1f}."


def explain_reference(tables: ExplanationTables, user_row: int, item_row: int) -> str:
    """The explanation for one pair; `user_row` -1 = unknown user, `item_row` -1 = padding."""
    if item_row < 0:
        return ""
    sentences = tables.aspect_sentence[item_row]
    support = item_support(tables.aspect_score[item_row], tables.aspect_count[item_row])
    quotable = np.array([s != "" for s in sentences], dtype=bool) & (support > 0)
    if not quotable.any():
        return _plain_line(int(tables.n_reviews[item_row]), float(tables.mean_rating[item_row]))
    weight = (tables.user_weight[user_row] if user_row >= 0
              else np.zeros(len(tables.aspects), dtype="float32"))
    personal = np.where(quotable, weight * support, np.float32(-1.0))
    if personal.max() > 0:
        aspect = int(np.argmax(personal))  # numpy's argmax returns the first maximum
        count = int(tables.aspect_count[item_row, aspect])
        if tables.aspect_positive is not None:
            phrase = f"praised in {int(tables.aspect_positive[item_row, aspect])} of {count} " \
                     "mentions"
        else:
            phrase = f"mentioned {count} times"
        return PERSONAL.format(aspect=tables.aspects[aspect], sentence=sentences[aspect],
                               support=phrase)
    aspect = int(np.argmax(np.where(quotable, support, np.float32(-1.0))))
    return FALLBACK.format(aspect=tables.aspects[aspect], sentence=sentences[aspect])


def explain_reference_batch(tables: ExplanationTables, user_rows: np.ndarray,
                            item_rows: np.ndarray) -> np.ndarray:
    """[B] user rows x [B, K] item rows -> [B, K] explanations (object array of str)."""
    out = np.empty(item_rows.shape, dtype=object)
    for b, user in enumerate(user_rows):
        for j, item in enumerate(item_rows[b]):
            out[b, j] = explain_reference(tables, int(user), int(item))
    return out


# === In-graph ===


def _first_argmax(values: tf.Tensor) -> tf.Tensor:
    """Index of the first maximum along the last axis (tf.argmax leaves ties unspecified)."""
    size = tf.shape(values)[-1]
    is_max = tf.equal(values, tf.reduce_max(values, axis=-1, keepdims=True))
    positions = tf.broadcast_to(tf.range(size), tf.shape(values))
    return tf.reduce_min(tf.where(is_max, positions, size), axis=-1)


class GraphExplainer(tf.Module):
    """The explanation rule as TensorFlow ops over tables held in (non-trainable) variables.

    Row -1 (unknown user / padding item) maps to an extra empty row appended to each table.
    """

    def __init__(self, tables: ExplanationTables, name: str = "explainer"):
        super().__init__(name=name)
        num_aspects = len(tables.aspects)
        self.num_aspects = num_aspects

        def padded(array: np.ndarray, fill) -> np.ndarray:
            pad = np.full((1,) + array.shape[1:], fill, dtype=array.dtype)
            return np.concatenate([array, pad])

        def variable(array: np.ndarray, dtype: tf.DType, name: str) -> tf.Variable:
            return tf.Variable(np.asarray(array), dtype=dtype, trainable=False, name=name)

        self.aspects = variable(tables.aspects, tf.string, "aspects")
        self.aspect_score = variable(padded(tables.aspect_score, 0.0), tf.float32, "aspect_score")
        self.aspect_count = variable(padded(tables.aspect_count, 0), tf.int32, "aspect_count")
        self.has_positive = tables.aspect_positive is not None
        positive = (tables.aspect_positive if self.has_positive
                    else np.zeros_like(tables.aspect_count))
        self.aspect_positive = variable(padded(positive, 0), tf.int32, "aspect_positive")
        self.aspect_sentence = variable(padded(tables.aspect_sentence, ""), tf.string,
                                        "aspect_sentence")
        self.n_reviews = variable(padded(tables.n_reviews, 0), tf.int64, "n_reviews")
        self.mean_rating = variable(padded(tables.mean_rating, np.nan), tf.float32, "mean_rating")
        self.user_weight = variable(
            np.concatenate([tables.user_weight, np.zeros((1, num_aspects), "float32")]),
            tf.float32, "user_weight")

    def __call__(self, user_rows: tf.Tensor, item_rows: tf.Tensor) -> tf.Tensor:
        """[B] int user rows (-1 unknown), [B, K] int item rows (-1 padding) -> [B, K] strings."""
        user_rows = tf.where(user_rows < 0, tf.shape(self.user_weight, tf.int32)[0] - 1,
                             tf.cast(user_rows, tf.int32))
        pad_item = item_rows < 0
        item_rows = tf.where(pad_item, tf.shape(self.n_reviews, tf.int32)[0] - 1,
                             tf.cast(item_rows, tf.int32))
        line = self._plain_line(item_rows)
        if self.num_aspects:  # otherwise nothing is quotable (and there is no aspect to gather)
            any_quotable, quoted_line = self._quoted_line(user_rows, item_rows)
            line = tf.where(any_quotable, quoted_line, line)
        return tf.where(pad_item, "", line)

    def _quoted_line(self, user_rows: tf.Tensor, item_rows: tf.Tensor
                     ) -> tuple[tf.Tensor, tf.Tensor]:
        """([B, K] whether the item has a quotable aspect, [B, K] personal or fallback line)."""
        score = tf.gather(self.aspect_score, item_rows)  # [B, K, A]
        count = tf.gather(self.aspect_count, item_rows)
        sentences = tf.gather(self.aspect_sentence, item_rows)
        count_f = tf.cast(count, tf.float32)
        support = (score * count_f) / (count_f + 1.0)
        quotable = tf.logical_and(tf.not_equal(sentences, ""), support > 0)
        weight = tf.gather(self.user_weight, user_rows)[:, None, :]  # [B, 1, A]
        personal = tf.where(quotable, weight * support, -1.0)
        is_personal = tf.reduce_max(personal, axis=-1) > 0
        aspect = tf.where(is_personal, _first_argmax(personal),
                          _first_argmax(tf.where(quotable, support, -1.0)))  # [B, K]

        name = tf.gather(self.aspects, aspect)
        sentence = tf.gather(sentences, aspect, batch_dims=2)
        chosen_count = tf.strings.as_string(tf.gather(count, aspect, batch_dims=2))
        if self.has_positive:
            positive = tf.gather(tf.gather(self.aspect_positive, item_rows), aspect, batch_dims=2)
            phrase = tf.strings.join(
                ["praised in ", tf.strings.as_string(positive), " of ", chosen_count, " mentions"])
        else:
            phrase = tf.strings.join(["mentioned ", chosen_count, " times"])
        personal_line = tf.strings.join(
            ["You care about ", name, ': "', sentence, '" (', phrase, ")"])
        fallback_line = tf.strings.join(["Reviewers praise its ", name, ': "', sentence, '"'])
        return tf.reduce_any(quotable, axis=-1), tf.where(is_personal, personal_line,
                                                          fallback_line)

    def _plain_line(self, item_rows: tf.Tensor) -> tf.Tensor:
        """[B, K] `N reviews, average rating R.` (or `N reviews so far.` without ratings)."""
        n = tf.gather(self.n_reviews, item_rows)
        noun = tf.where(tf.equal(n, 1), "review", "reviews")
        rating = tf.gather(self.mean_rating, item_rows)
        return tf.where(
            tf.math.is_nan(rating),
            tf.strings.join([tf.strings.as_string(n), " ", noun, " so far."]),
            tf.strings.join([tf.strings.as_string(n), " ", noun, ", average rating ",
                             tf.strings.as_string(rating, precision=1), "."]))
