"""The `recommender` SavedModel: user id -> top-k items, scores, explanations and titles.

A `tf.Module` wraps a TFRS `BruteForce` index built from the trained query tower and the catalogue's
candidate embeddings, plus lookup tables (user profiles, each user's seen items, titles, the
explanation facts), so the whole request runs in one graph:

  user_id -> profile lookup -> query tower -> BruteForce.query_with_exclusions(seen items)
          -> (unknown user: most-popular items instead) -> in-graph explanations and titles

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
import tensorflow_recommenders as tfrs

from recommender.data import FeatureSet
from recommender.explain import ExplanationTables, GraphExplainer
from recommender.model import RetrievalModel
from recommender.train import embed, item_inputs

PAD_ID = ""  # pads the seen-items table; item ids are never empty (checked by data.read_items)


class CatalogueBruteForce(tfrs.layers.factorized_top_k.BruteForce):
    """BruteForce whose k never exceeds the catalogue size.

    `query_with_exclusions` asks for k + (number of exclusion columns) candidates, which on a small
    catalogue is more than it holds; clamping here keeps every k valid.
    """

    def call(self, queries, k=None):
        k = self._k if k is None else k
        return super().call(queries, k=tf.minimum(k, tf.shape(self._candidates)[0]))

    def get_config(self) -> dict:
        # The query model is a tracked child, not config; saying so keeps saving quiet.
        return {"k": self._k, "name": self.name}


def _lookup_table(keys: np.ndarray, name: str) -> tf.lookup.StaticHashTable:
    """string key -> int64 row, -1 when absent."""
    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys.astype(str), tf.string), tf.range(len(keys), dtype=tf.int64))
    return tf.lookup.StaticHashTable(initializer, default_value=-1, name=name)


def seen_table(user_rows: np.ndarray, item_ids: np.ndarray, num_users: int) -> np.ndarray:
    """[num_users + 1, W] ids of the items each user interacted with, PAD_ID-padded (last row
    empty, for unknown users)."""
    per_user: list[list[str]] = [[] for _ in range(num_users + 1)]
    for user, item in zip(user_rows, item_ids):
        if item not in per_user[user]:
            per_user[user].append(item)
    width = max(1, max(len(items) for items in per_user))
    table = np.full((num_users + 1, width), PAD_ID, dtype=object)
    for user, items in enumerate(per_user):
        table[user, :len(items)] = items
    return table


class RecommenderModule(tf.Module):
    """Serving module; see the module docstring for the signatures.

    Args:
      query_tower: trained query tower (user_id, aspect_weight, embedding -> [B, E]).
      candidate_embeddings: [N, E] candidate-tower outputs of the catalogue, in item row order.
      features: the feature set (ids, profiles, titles, interactions = the seen items).
      popularity: [N] score of each item for unknown users.
      k: default number of recommendations (clamped to the catalogue size).
    """

    def __init__(self, query_tower: tf.keras.Model, candidate_embeddings: np.ndarray,
                 features: FeatureSet, popularity: np.ndarray, k: int = 10):
        super().__init__(name="recommender")
        items, users = features.items, features.users
        item_ids = tf.constant(items.ids.astype(str), tf.string)
        self.num_items = len(items)
        self.num_users = len(users)
        self.default_k = max(0, min(int(k), self.num_items))
        # === Indexes ===
        self.index = CatalogueBruteForce(query_tower, k=self.default_k)
        self.index.index(tf.constant(candidate_embeddings, tf.float32), item_ids)
        self.popular = CatalogueBruteForce(k=self.default_k)
        self.popular.index(tf.constant(popularity.reshape(-1, 1), tf.float32), item_ids)
        # === Tables (last row: unknown user / padding item) ===
        self.user_rows = _lookup_table(users.ids, "user_rows")
        self.item_rows = _lookup_table(items.ids, "item_rows")
        zero_user = lambda width: np.zeros((1, width), "float32")  # noqa: E731
        self.user_aspect_weight = tf.Variable(
            np.concatenate([users.aspect_weight, zero_user(users.aspect_weight.shape[1])]),
            trainable=False, name="user_aspect_weight")
        self.user_embedding = tf.Variable(
            np.concatenate([users.embedding, zero_user(users.embedding.shape[1])]),
            trainable=False, name="user_embedding")
        inter = features.interactions
        self.seen = tf.Variable(
            seen_table(inter["user_row"].to_numpy(), inter["item"].to_numpy(), len(users)),
            dtype=tf.string, trainable=False, name="seen_items")
        self.titles = tf.Variable(np.concatenate([items.titles, np.array([""], dtype=object)]),
                                  dtype=tf.string, trainable=False, name="titles")
        self.explainer = GraphExplainer(ExplanationTables.from_features(features))

    def _recommend(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = self.user_rows.lookup(user_id)
        known = rows >= 0
        safe_rows = tf.where(known, rows, self.num_users)
        queries = {"user_id": user_id,
                   "aspect_weight": tf.gather(self.user_aspect_weight, safe_rows),
                   "embedding": tf.gather(self.user_embedding, safe_rows)}
        exclusions = tf.gather(self.seen, safe_rows)  # [B, W], unknown users: all padding
        k = tf.clip_by_value(tf.cast(k, tf.int32), 0, self.num_items)

        scores, ids = self.index.query_with_exclusions(queries, exclusions, k=k)
        popular_scores, popular_ids = self.popular.query_with_exclusions(
            tf.ones([tf.shape(user_id)[0], 1]), exclusions, k=k)
        ids = tf.where(known[:, None], ids, popular_ids)
        scores = tf.where(known[:, None], scores, popular_scores)

        # Fewer unseen items than k: query_with_exclusions fills the tail with seen ones.
        real_exclusion = tf.not_equal(exclusions, PAD_ID)[:, None, :]
        leaked = tf.reduce_any(
            tf.logical_and(tf.equal(ids[:, :, None], exclusions[:, None, :]), real_exclusion),
            axis=-1)
        ids = tf.where(leaked, PAD_ID, ids)
        scores = tf.where(leaked, 0.0, scores)

        item_rows = self.item_rows.lookup(ids)  # -1 for padding
        explanations = self.explainer(tf.where(known, rows, -1), item_rows)
        padding_row = tf.constant(self.num_items, tf.int64)
        titles = tf.gather(self.titles, tf.where(item_rows < 0, padding_row, item_rows))
        return {"item_ids": ids, "scores": scores, "explanations": explanations,
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


def build_serving_module(model: RetrievalModel, features: FeatureSet, k: int = 10
                         ) -> RecommenderModule:
    """Serving module of a trained model: embeds the catalogue; popularity = share of all
    interactions (what a cold-start user is served)."""
    candidates = embed(model.candidate_tower, item_inputs(features, np.arange(len(features.items))))
    counts = np.bincount(features.interactions["item_row"].to_numpy(),
                         minlength=len(features.items)).astype("float64")
    popularity = counts / max(counts.sum(), 1.0)
    return RecommenderModule(model.query_tower, candidates, features, popularity, k)


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
