"""Explanations grounded in real review sentences: one line per recommended (user, item).

Rule (the same in numpy and in-graph):
  - An aspect is *quotable* for an item when the item has a praising sentence for it and positive
    support, support = aspect_score * count / (count + 1) (mean polarity, discounted when few
    reviews mention it).
  - Personal: among quotable aspects the user writes about, take the argmax of
    `personal_weight * support`, personal_weight = aspect_weight + 0.01 * the share of the user's
    reviews that mention the aspect (so an aspect the user brings up more than others do comes
    first) -> `You care about <aspect>: "<sentence>" (praised in P of C mentions)` when its
    aspect_weight > 0, else `You wrote about <aspect>: ...` (`(mentioned C times)` when the
    features lack `aspect_positive`).
  - Because you liked (when the tables carry `contribution`, the item-kNN weights of the served
    model): among the items the user liked (rated 4 or more, or unrated), the one that adds most
    to this item's score, if any does -> `Because you liked <title>; reviewers praise its
    <aspect>: "<sentence>"` (or `Because you liked <title>. <plain line>` with nothing to quote).
  - Fallback (unknown user, or one who weights none of the quotable aspects and liked nothing
    related): the quotable aspect with the largest support -> `Reviewers praise its <aspect>:
    "<sentence>"`.
  - Plain: no quotable aspect -> `N reviews, average rating R.` (`N reviews so far.` without
    ratings).
  - Caveat, appended for a known user: of the aspects the user weights that the item's reviews
    criticise (support < 0 over 2 or more mentions), the worst by weight * support ->
    ` Note: reviewers criticise its <aspect>.`
  - Padding (no item, row -1) -> "".
Ties go to the first aspect (and the first liked item). The sentence is quoted verbatim. Only IEEE-exact float operations
(multiply, divide, add, compare) enter the choice, so numpy and TensorFlow pick the same aspect.

`explain_reference` is the readable numpy/Python version the tests trust; `GraphExplainer` is the
tf.Module the SavedModel runs (gathers, argmax-by-mask, `tf.strings.join`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from recommender.data import FeatureSet, padded_rows

PERSONAL = 'You care about {aspect}: "{sentence}" ({support})'
MENTIONED = 'You wrote about {aspect}: "{sentence}" ({support})'
MENTION_WEIGHT = np.float32(0.01)  # an aspect the user only mentioned ranks below a preference
FALLBACK = 'Reviewers praise its {aspect}: "{sentence}"'
LIKED = 'Because you liked {liked}; reviewers praise its {aspect}: "{sentence}"'
LIKED_PLAIN = "Because you liked {liked}. {plain}"
CAVEAT = " Note: reviewers criticise its {aspect}."
MAX_TITLE_CHARS = 60  # a liked item's title is cut to this (with "...") in the line
LIKED_RATING = 4.0  # ratings at or above this (or no rating) count as liked


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
    # [U, A] float32 share of the user's reviews mentioning each aspect (None: unknown)
    user_mentioned: np.ndarray | None = None
    # "Because you liked": optional; [N, N] float32 contribution[x, c] of liked item x to item c
    contribution: np.ndarray | None = None
    liked: np.ndarray | None = None  # [U, W] int32 item rows each user liked, -1 padded
    liked_name: np.ndarray | None = None  # [N] str, how a liked item is named (title or id)

    @classmethod
    def from_features(cls, features: FeatureSet, contribution: np.ndarray | None = None
                      ) -> "ExplanationTables":
        """Tables from a feature set; ratings are averaged over all of its interactions. With
        `contribution` ([N, N] item-kNN weights: a user's scores are history @ contribution), the
        "because you liked" line is on, over each user's liked interactions."""
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
            user_mentioned=None if features.users.aspect_count is None else (
                features.users.aspect_count
                / np.maximum(features.users.n_reviews, 1)[:, None]).astype("float32"),
            **(_liked_tables(features, contribution) if contribution is not None else {}),
        )


def personal_weights(tables: ExplanationTables) -> np.ndarray:
    """[U, A] float32 weight of each aspect for the personal line (see the module docstring)."""
    if tables.user_mentioned is None:
        return tables.user_weight.astype("float32")
    return (tables.user_weight + MENTION_WEIGHT * tables.user_mentioned).astype("float32")


def quotable_aspects(tables: ExplanationTables) -> np.ndarray:
    """[N, A] bool: the item has a praising sentence for the aspect and positive support."""
    sentences = np.asarray(tables.aspect_sentence, dtype=object) != ""
    return sentences & (item_support(tables.aspect_score, tables.aspect_count) > 0)


def personal_evidence(tables: ExplanationTables) -> np.ndarray:
    """[U, N] float32, 1 where the item's explanation for the user would be personal (a quotable
    aspect the user writes about, as `explain_reference` decides), else 0."""
    writes = (personal_weights(tables) > 0).astype("float32")
    return (writes @ quotable_aspects(tables).T.astype("float32") > 0).astype("float32")


def _liked_tables(features: FeatureSet, contribution: np.ndarray) -> dict:
    inter = features.interactions
    liked_rows = inter[inter["rating"].isna() | (inter["rating"] >= LIKED_RATING)]
    liked = padded_rows(liked_rows["user_row"].to_numpy(), liked_rows["item_row"].to_numpy(),
                        len(features.users), pad=-1).astype("int32")
    names = []
    for title, item_id in zip(features.items.titles, features.items.ids):
        name = str(title).strip() or str(item_id)
        if len(name) > MAX_TITLE_CHARS:
            name = name[:MAX_TITLE_CHARS - 3].rstrip() + "..."
        names.append(name)
    return {"contribution": np.asarray(contribution, dtype="float32"), "liked": liked,
            "liked_name": np.asarray(names, dtype=object)}


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


def _liked_item(tables: ExplanationTables, user_row: int, item_row: int) -> int:
    """The liked item adding most to `item_row` (first on ties), or -1."""
    if tables.contribution is None or user_row < 0:
        return -1
    liked = [int(x) for x in tables.liked[user_row] if x >= 0]
    if not liked:
        return -1
    values = tables.contribution[liked, item_row]
    best = int(np.argmax(values))
    return liked[best] if values[best] > 0 else -1


def _caveat(tables: ExplanationTables, user_row: int, support: np.ndarray, item_row: int) -> str:
    if user_row < 0 or not len(tables.aspects):
        return ""
    weight = tables.user_weight[user_row]
    criticised = (support < 0) & (tables.aspect_count[item_row] >= 2) & (weight > 0)
    if not criticised.any():
        return ""
    aspect = int(np.argmax(np.where(criticised, -(weight * support), np.float32(-1.0))))
    return CAVEAT.format(aspect=tables.aspects[aspect])


def explain_reference(tables: ExplanationTables, user_row: int, item_row: int) -> str:
    """The explanation for one pair; `user_row` -1 = unknown user, `item_row` -1 = padding."""
    if item_row < 0:
        return ""
    sentences = tables.aspect_sentence[item_row]
    support = item_support(tables.aspect_score[item_row], tables.aspect_count[item_row])
    caveat = _caveat(tables, user_row, support, item_row)
    quotable = np.array([s != "" for s in sentences], dtype=bool) & (support > 0)
    plain = _plain_line(int(tables.n_reviews[item_row]), float(tables.mean_rating[item_row]))
    liked = _liked_item(tables, user_row, item_row)
    if not quotable.any():
        if liked >= 0:
            return LIKED_PLAIN.format(liked=tables.liked_name[liked], plain=plain) + caveat
        return plain + caveat
    weight = (personal_weights(tables)[user_row] if user_row >= 0
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
        template = PERSONAL if tables.user_weight[user_row, aspect] > 0 else MENTIONED
        return template.format(aspect=tables.aspects[aspect], sentence=sentences[aspect],
                               support=phrase) + caveat
    aspect = int(np.argmax(np.where(quotable, support, np.float32(-1.0))))
    if liked >= 0:
        return LIKED.format(liked=tables.liked_name[liked], aspect=tables.aspects[aspect],
                            sentence=sentences[aspect]) + caveat
    return FALLBACK.format(aspect=tables.aspects[aspect], sentence=sentences[aspect]) + caveat


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
        self.personal_weight = variable(
            np.concatenate([personal_weights(tables), np.zeros((1, num_aspects), "float32")]),
            tf.float32, "personal_weight")
        self.quotable = variable(quotable_aspects(tables).astype("float32"), tf.float32,
                                 "quotable")  # [N, A]
        self.has_liked = tables.contribution is not None
        if self.has_liked:
            num_items = len(tables.n_reviews)
            contribution = np.zeros((num_items + 1, num_items + 1), "float32")
            contribution[:num_items, :num_items] = tables.contribution
            self.contribution = variable(contribution, tf.float32, "contribution")
            liked = np.where(tables.liked < 0, num_items, tables.liked)  # padding -> empty row
            self.liked = variable(np.concatenate(
                [liked, np.full((1, liked.shape[1]), num_items)]).astype("int32"), tf.int32,
                "liked")
            self.liked_name = variable(padded(tables.liked_name, ""), tf.string, "liked_name")

    def __call__(self, user_rows: tf.Tensor, item_rows: tf.Tensor) -> tf.Tensor:
        """[B] int user rows (-1 unknown), [B, K] int item rows (-1 padding) -> [B, K] strings."""
        user_rows = tf.where(user_rows < 0, tf.shape(self.user_weight, tf.int32)[0] - 1,
                             tf.cast(user_rows, tf.int32))
        pad_item = item_rows < 0
        item_rows = tf.where(pad_item, tf.shape(self.n_reviews, tf.int32)[0] - 1,
                             tf.cast(item_rows, tf.int32))
        plain = self._plain_line(item_rows)
        line = plain
        has_liked, liked_name = self._liked(user_rows, item_rows)
        line = tf.where(has_liked, tf.strings.join(["Because you liked ", liked_name, ". ", plain]),
                        line)
        if self.num_aspects:  # otherwise nothing is quotable (and there is no aspect to gather)
            count = tf.gather(self.aspect_count, item_rows)  # [B, K, A]
            count_f = tf.cast(count, tf.float32)
            support = (tf.gather(self.aspect_score, item_rows) * count_f) / (count_f + 1.0)
            user_weight = tf.gather(self.user_weight, user_rows)[:, None, :]  # [B, 1, A]
            any_quotable, quoted_line = self._quoted_line(
                user_rows, item_rows, count, support, user_weight, has_liked, liked_name)
            line = tf.where(any_quotable, quoted_line, line)
            line = tf.strings.join([line, self._caveat(count, support, user_weight)])
        return tf.where(pad_item, "", line)

    def personal_evidence(self, user_rows: tf.Tensor) -> tf.Tensor:
        """[B] user rows (-1 unknown) -> [B, N] float32 `personal_evidence` (0 for unknown)."""
        if not self.num_aspects:
            return tf.zeros([tf.shape(user_rows)[0], tf.shape(self.quotable)[0]], tf.float32)
        user_rows = tf.where(user_rows < 0, tf.shape(self.user_weight, tf.int32)[0] - 1,
                             tf.cast(user_rows, tf.int32))
        writes = tf.cast(tf.gather(self.personal_weight, user_rows) > 0, tf.float32)
        return tf.cast(tf.matmul(writes, self.quotable, transpose_b=True) > 0, tf.float32)

    def _liked(self, user_rows: tf.Tensor, item_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """([B, K] whether a liked item adds to the item's score, [B, K] its name)."""
        if not self.has_liked:
            return tf.zeros(tf.shape(item_rows), tf.bool), tf.fill(tf.shape(item_rows), "")
        liked = tf.gather(self.liked, user_rows)  # [B, W]; the unknown user's row is all padding
        rows = tf.gather(self.contribution, liked)  # [B, W, N + 1]
        values = tf.gather(rows, item_rows, axis=2, batch_dims=1)  # [B, W, K]
        values = tf.transpose(values, [0, 2, 1])  # [B, K, W]
        best = _first_argmax(values)
        has_liked = tf.reduce_max(values, axis=-1) > 0
        liked_item = tf.gather(liked, best, batch_dims=1)  # [B, K]
        return has_liked, tf.gather(self.liked_name, liked_item)

    def _caveat(self, count: tf.Tensor, support: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
        """[B, K] " Note: reviewers criticise its <aspect>." or ""."""
        criticised = (support < 0) & (count >= 2) & (weight > 0)
        aspect = _first_argmax(tf.where(criticised, -(weight * support), -1.0))
        name = tf.gather(self.aspects, aspect)
        return tf.where(tf.reduce_any(criticised, axis=-1),
                        tf.strings.join([" Note: reviewers criticise its ", name, "."]), "")

    def _quoted_line(self, user_rows: tf.Tensor, item_rows: tf.Tensor, count: tf.Tensor,
                     support: tf.Tensor, user_weight: tf.Tensor, has_liked: tf.Tensor,
                     liked_name: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """([B, K] whether the item has a quotable aspect, [B, K] personal, liked or fallback
        line)."""
        sentences = tf.gather(self.aspect_sentence, item_rows)  # [B, K, A]
        quotable = tf.logical_and(tf.not_equal(sentences, ""), support > 0)
        weight = tf.gather(self.personal_weight, user_rows)[:, None, :]  # [B, 1, A]
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
        strong = tf.gather(user_weight + tf.zeros_like(support), aspect, batch_dims=2) > 0
        prefix = tf.where(strong, "You care about ", "You wrote about ")
        personal_line = tf.strings.join([prefix, name, ': "', sentence, '" (', phrase, ")"])
        fallback_line = tf.strings.join(["Reviewers praise its ", name, ': "', sentence, '"'])
        liked_line = tf.strings.join(["Because you liked ", liked_name,
                                      "; reviewers praise its ", name, ': "', sentence, '"'])
        other = tf.where(has_liked, liked_line, fallback_line)
        return tf.reduce_any(quotable, axis=-1), tf.where(is_personal, personal_line, other)

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
