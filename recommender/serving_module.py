"""The `recommender` SavedModel: user id -> top-k items, scores, explanations and titles.

A `tf.Module` holds the exported first-stage signals (`recommender.signals.Signals`, refitted on
every interaction), the trained DCN ranker and lookup tables (user rows, each user's seen items,
titles, the explanation facts), so the whole request runs in one graph:

  user_id -> user row -> signals against the catalogue (two-tower cosine, EASE, item-kNN, text and
          aspect match, popularity, mean rating; standardised per user as in training)
          -> DCN ranker scores -> (re-ranking: standardised per user, minus a popularity
          penalty, plus a boost where the item's reviews praise an aspect the user writes about,
          minus the exposure cap's per-item offsets) -> seen items masked -> top-k
          -> (unknown user: most-popular items instead) -> in-graph explanations and titles

The catalogue is scored whole (one [B, N, F] feature tensor): right for catalogues up to tens of
thousands of items. When training chose a single signal over the ranker (`fallback`), that
signal's raw score ranks instead.

Signatures (names as `serving/` and `pipelines/recommend.py` expect):
  serving_default: user_id string [B] -> item_ids string [B, K], scores float32 [B, K],
                   explanations string [B, K], titles string [B, K]   (K = min(k, catalogue))
  recommend:       the same plus `k` int32 scalar, chosen at query time.
Unknown users get the most popular items, scored by their share of all interactions, with the
non-personal explanation. When a user has seen so much of the catalogue that fewer than K unseen
items remain, the tail is padded with item id "" (score 0, empty explanation and title).

Functions are plain `tf.function`s (TF Serving runs without XLA). The saved graph needs only
TensorFlow's own ops: loading it imports neither TFRS nor tf-keras.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from recommender.data import FeatureSet, padded_rows
from recommender.explain import ExplanationTables, GraphExplainer
from recommender.ranking import DCNRanker, RankerEnsemble
from recommender.rerank import Rerank, candidates_of, exposure_offsets, standardised
from recommender.signals import FEATURES, PER_USER, Signals

PAD_ID = ""  # pads the recommended ids; item ids are never empty (checked by data.read_items)


def _lookup_table(keys: np.ndarray, name: str) -> tf.lookup.StaticHashTable:
    """string key -> int64 row, -1 when absent."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys.astype(str), tf.string), tf.range(len(keys), dtype=tf.int64))
    return tf.lookup.StaticHashTable(initializer, default_value=-1, name=name)


class RecommenderModule(tf.Module):
    """Serving module; see the module docstring for the signatures.

    Args:
      signals: the first-stage signals fitted on every interaction.
      ranker: the trained ranker ([B, N, F] -> [B, N]).
      features: the feature set (ids, titles, explanation facts; its interactions are the seen
        items and must be those `signals` were fitted on).
      popularity: [N] score of each item for unknown users.
      k: default number of recommendations (clamped to the catalogue size).
      choice: "ranker", or the `signals.FEATURES` name that ranks alone (the dev fallback).
      rerank: a known user's scores are re-ranked with it (`recommender.rerank.rerank`: personal
        boost, popularity penalty); None or zeros rank by the scores alone.
      capped: the known users' scores are standardised and `item_offsets` (the exposure cap's,
        set by `cap_exposure`) subtracted.
    """

    def __init__(self, signals: Signals, ranker: DCNRanker | RankerEnsemble, features: FeatureSet,
                 popularity: np.ndarray, k: int = 10, choice: str = "ranker",
                 rerank: Rerank | None = None, capped: bool = False):
        super().__init__(name="recommender")
        if choice != "ranker" and choice not in FEATURES:
            raise ValueError(f"`choice` must be 'ranker' or one of {FEATURES}. Received {choice!r}")
        items, users = features.items, features.users
        self.num_items = len(items)
        self.num_users = len(users)
        self.default_k = max(0, min(int(k), self.num_items))
        self.choice = choice
        self.ranker = ranker
        self.rerank = rerank or Rerank()
        self.capped = bool(capped)

        def table(array: np.ndarray, name: str, pad_row: bool = False) -> tf.Variable:
            array = np.asarray(array, dtype="float32")
            if pad_row:  # the extra last row: unknown users
                array = np.concatenate([array, np.zeros((1,) + array.shape[1:], "float32")])
            return tf.Variable(array, trainable=False, name=name)

        # === Signals (last user row: unknown user) ===
        self.user_vectors = table(signals.user_vectors, "user_vectors", pad_row=True)
        self.item_vectors = table(signals.item_vectors, "item_vectors")
        self.ease = table(signals.ease, "ease")
        self.item_knn = table(signals.item_knn, "item_knn")
        self.user_text = table(signals.user_text, "user_text", pad_row=True)
        self.item_text = table(signals.item_text, "item_text")
        self.user_aspects = table(signals.user_aspects, "user_aspects", pad_row=True)
        self.item_aspects = table(signals.item_aspects, "item_aspects")
        self.log_popularity = table(signals.popularity, "log_popularity")
        self.mean_rating = table(signals.mean_rating, "mean_rating")
        # Constant per export: standardised once here, not on every request.
        self.standardised_popularity = table(standardised(signals.popularity),
                                             "standardised_popularity")
        self.popularity = table(popularity, "popularity")
        self.item_offsets = table(np.zeros(self.num_items), "item_offsets")  # `cap_exposure`
        # === Tables ===
        self.user_rows = _lookup_table(users.ids, "user_rows")
        self.item_rows = _lookup_table(items.ids, "item_rows")
        # Each user's seen item rows, padded with num_items (an extra one-hot column dropped in
        # `signal_features`); the last row, all padding, is the unknown user's.
        inter = features.interactions
        seen_rows = padded_rows(inter["user_row"].to_numpy(), inter["item_row"].to_numpy(),
                                len(users) + 1, pad=self.num_items)
        self.seen_rows = tf.Variable(seen_rows, trainable=False, name="seen_rows")
        self.item_ids = tf.constant(items.ids.astype(str), tf.string)
        self.titles = tf.Variable(np.concatenate([items.titles, np.array([""], dtype=object)]),
                                  dtype=tf.string, trainable=False, name="titles")
        self.explainer = GraphExplainer(
            ExplanationTables.from_features(features, contribution=signals.item_knn))

    def signal_features(self, rows: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """Raw signals of user rows [B] against the catalogue (name -> [B, N]), and the seen mask.

        Mirrors `Signals.raw`; `rows` of unknown users point at the empty last row."""
        seen_rows = tf.gather(self.seen_rows, rows)  # [B, W], padding = num_items
        history = tf.reduce_max(tf.one_hot(seen_rows, self.num_items + 1), axis=1)[:, :-1]
        batch = tf.shape(rows)[0]
        broadcast = lambda v: tf.broadcast_to(v[None, :], [batch, self.num_items])  # noqa: E731
        raw = {
            "two_tower": tf.matmul(tf.gather(self.user_vectors, rows), self.item_vectors,
                                   transpose_b=True),
            "ease": tf.matmul(history, self.ease),
            "item_knn": tf.matmul(history, self.item_knn),
            "content": tf.matmul(tf.gather(self.user_text, rows), self.item_text,
                                 transpose_b=True),
            "aspect_match": tf.matmul(tf.gather(self.user_aspects, rows), self.item_aspects,
                                      transpose_b=True),
            "popularity": broadcast(self.log_popularity),
            "mean_rating": broadcast(self.mean_rating),
            "history": tf.broadcast_to(
                tf.math.log1p(tf.reduce_sum(history, axis=1, keepdims=True)),
                [batch, self.num_items]),
        }
        return raw, history > 0

    def score(self, rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Ranking scores [B, N] of user rows (the ranker's, or the chosen signal's) and the seen
        mask [B, N]."""
        raw, seen = self.signal_features(rows)
        if self.choice != "ranker":
            return raw[self.choice], seen
        columns = []
        for name in FEATURES:
            value = raw[name]
            if name in PER_USER:
                mean, variance = tf.nn.moments(value, axes=[1], keepdims=True)
                value = (value - mean) / (tf.sqrt(variance) + 1e-6)
            columns.append(value)
        return self.ranker(tf.stack(columns, axis=-1)), seen

    def served_scores(self, rows: tf.Tensor, safe_rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """`score` re-ranked (as `recommender.rerank.rerank`) and under the exposure cap, for
        user rows (-1: unknown) and their `safe_rows`; with the seen mask."""
        personal, seen = self.score(safe_rows)
        if self.rerank.active or self.capped:
            mean, variance = tf.nn.moments(personal, axes=[1], keepdims=True)
            personal = (personal - mean) / (tf.sqrt(variance) + 1e-6)
            if self.rerank.boost:
                personal += self.rerank.boost * self.explainer.personal_evidence(rows)
            if self.rerank.popularity_penalty:
                personal -= (self.rerank.popularity_penalty
                             * self.standardised_popularity[None, :])
            if self.capped:
                personal -= self.item_offsets[None, :]
        return personal, seen

    def cap_exposure(self, max_share: float, batch: int = 512) -> np.ndarray:
        """Fit and set `item_offsets` so that no item is top-1 for more than `max_share` of the
        known users' served lists (`recommender.rerank.exposure_offsets`); returns them."""
        self.item_offsets.assign(tf.zeros_like(self.item_offsets))

        def unseen_scores(rows: np.ndarray) -> np.ndarray:  # seen items -inf, as served
            rows = tf.constant(rows, tf.int64)
            scores, seen = self.served_scores(rows, rows)
            return tf.where(seen, -np.inf, scores).numpy()

        values, items = candidates_of(unseen_scores, np.arange(self.num_users), {},
                                      self.num_items, batch=batch)
        offsets = exposure_offsets(values, items, self.num_items, max_share)
        self.item_offsets.assign(offsets)
        return offsets

    def _recommend(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = self.user_rows.lookup(user_id)
        known = rows >= 0
        safe_rows = tf.where(known, rows, self.num_users)
        k = tf.cast(k, tf.int32)
        # k outside 1..catalogue size is the client's error (InvalidArgument -> 400).
        with tf.control_dependencies([
                tf.debugging.assert_positive(k, message="k must be at least 1"),
                tf.debugging.assert_less_equal(
                    k, self.num_items,
                    message=f"k must be at most the catalogue size, {self.num_items}")]):
            k = tf.identity(k)

        personal, seen = self.served_scores(rows, safe_rows)
        popular = tf.broadcast_to(self.popularity[None, :], tf.shape(personal))
        scores = tf.where(known[:, None], personal, popular)
        masked = tf.where(seen, tf.constant(-np.inf, tf.float32), scores)
        top_scores, top_rows = tf.math.top_k(masked, k=k)
        # Fewer unseen items than k: the tail is seen items (-inf) -> padding.
        padded = tf.math.is_inf(top_scores)
        ids = tf.where(padded, PAD_ID, tf.gather(self.item_ids, top_rows))
        # Padding scores lowest of all, so every list stays sorted (real scores may be negative).
        top_scores = tf.where(padded, tf.float32.min, top_scores)
        item_rows = tf.where(padded, tf.constant(-1, tf.int64), tf.cast(top_rows, tf.int64))
        explanations = self.explainer(tf.where(known, rows, -1), item_rows)
        padding_row = tf.constant(self.num_items, tf.int64)
        titles = tf.gather(self.titles, tf.where(item_rows < 0, padding_row, item_rows))
        return {"item_ids": ids, "scores": top_scores, "explanations": explanations,
                "titles": titles}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def serve(self, user_id):
        """Default signature: the top `default_k` unseen items per user."""
        return self._recommend(user_id, tf.constant(self.default_k, tf.int32))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([], tf.int32, name="k")])
    def recommend(self, user_id, k):
        """Top-k unseen items per user, k chosen at query time."""
        return self._recommend(user_id, k)


def build_serving_module(signals: Signals, ranker: DCNRanker | RankerEnsemble,
                         features: FeatureSet, k: int = 10, choice: str = "ranker",
                         rerank: Rerank | None = None, max_top1_share: float | None = None
                         ) -> RecommenderModule:
    """Serving module of a fitted recommender; popularity = share of all interactions (what a
    cold-start user is served). With `max_top1_share`, the exposure cap is fitted on every known
    user's served list."""
    counts = np.bincount(features.interactions["item_row"].to_numpy(),
                         minlength=len(features.items)).astype("float64")
    popularity = counts / max(counts.sum(), 1.0)
    module = RecommenderModule(signals, ranker, features, popularity, k, choice, rerank,
                               capped=max_top1_share is not None)
    if max_top1_share is not None:
        module.cap_exposure(max_top1_share)
    return module


def export_recommender(module: RecommenderModule, path: Path) -> Path:
    """Save the module as a SavedModel with the `serving_default` and `recommend` signatures."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    signatures = {"serving_default": module.serve.get_concrete_function(),
                  "recommend": module.recommend.get_concrete_function()}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return path
