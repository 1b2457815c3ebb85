"""The first-stage signals the ranker combines, each fitted on one frame of interactions.

A `Signals` object holds everything needed to score any (user, item) pair, as plain arrays so the
same numbers drive the numpy evaluation here and the in-graph serving module:

  two_tower     cosine of the trained query and candidate towers (collaborative + text + aspects)
  ease          EASE^R item-item weights (Steck 2019), closed form, L2 strength chosen on dev
  item_knn      item-item cosine similarity of co-interactions, top-50 neighbours per item
  content       cosine of the user's and the item's mean review-text embeddings
  aspect_match  the user's aspect weights . the item's aspect polarity
  popularity    log(1 + interactions) of the item
  mean_rating   the item's mean rating (the global mean where it has none), minus 3
  history       log(1 + items the user has interacted with)

`feature_matrix` turns them into the ranker's [users, items, F] input: user-dependent signals are
standardised per user over the catalogue (so "how much more than this user's average" is what the
ranker sees, comparable across users with long and short histories), item-only ones globally.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURES = ("two_tower", "ease", "item_knn", "content", "aspect_match", "popularity",
            "mean_rating", "history")
PER_USER = ("two_tower", "ease", "item_knn", "content", "aspect_match")  # standardised per user
MAX_EASE_ITEMS = 20_000  # EASE inverts an items x items matrix; above this it is left out


def history_matrix(frame: pd.DataFrame, num_users: int, num_items: int) -> np.ndarray:
    """[U, N] float32 0/1 matrix of who interacted with what."""
    matrix = np.zeros((num_users, num_items), dtype="float32")
    matrix[frame["user_row"].to_numpy(), frame["item_row"].to_numpy()] = 1.0
    return matrix


def ease_weights(history: np.ndarray, l2: float) -> np.ndarray:
    """EASE^R: B = I - P diagMat(1 / diag(P)), P = (X^T X + l2 I)^-1, zero diagonal; [N, N]."""
    num_items = history.shape[1]
    if num_items > MAX_EASE_ITEMS:
        return np.zeros((num_items, num_items), dtype="float32")
    gram = history.T.astype("float64") @ history.astype("float64")
    precision = np.linalg.inv(gram + l2 * np.eye(num_items))
    weights = -precision / np.diag(precision)
    np.fill_diagonal(weights, 0.0)
    return weights.astype("float32")


def knn_weights(history: np.ndarray, neighbours: int = 50) -> np.ndarray:
    """Item-item cosine of co-interactions, top `neighbours` per item, zero diagonal; [N, N]
    such that a user's scores are `history @ weights`."""
    num_items = history.shape[1]
    matrix = history.astype("float64")
    norms = np.sqrt(matrix.sum(axis=0))
    similarity = (matrix.T @ matrix) / np.maximum(np.outer(norms, norms), 1e-12)
    np.fill_diagonal(similarity, 0.0)
    if neighbours < num_items:
        cutoff = -np.sort(-similarity, axis=1)[:, neighbours - 1:neighbours]
        similarity = np.where(similarity >= cutoff, similarity, 0.0)
    return similarity.T.astype("float32")


def standardised_per_user(values: np.ndarray) -> np.ndarray:
    """[U, N] scores minus each row's mean over its standard deviation: "how much more than this
    user's average", comparable across users (the ranker's input, the re-ranking's scale)."""
    return (values - values.mean(axis=1, keepdims=True)) / (
        values.std(axis=1, keepdims=True) + 1e-6)


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype("float32")


@dataclass
class Signals:
    """Arrays every first-stage signal is computed from (rows as in the `FeatureSet`)."""

    history: np.ndarray  # [U, N] 0/1, the interactions the signals were fitted on
    user_vectors: np.ndarray  # [U, E] query-tower outputs (unit norm)
    item_vectors: np.ndarray  # [N, E] candidate-tower outputs (unit norm)
    ease: np.ndarray  # [N, N]
    item_knn: np.ndarray  # [N, N]
    user_text: np.ndarray  # [U, D] unit-norm mean review embedding (zeros when none)
    item_text: np.ndarray  # [N, D]
    user_aspects: np.ndarray  # [U, A]
    item_aspects: np.ndarray  # [N, A]
    popularity: np.ndarray  # [N] log1p(count)
    mean_rating: np.ndarray  # [N] mean rating - 3

    def raw(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """Every signal for `users` (rows) against the whole catalogue: name -> [len(users), N]."""
        history = self.history[users]
        num_items = self.history.shape[1]
        broadcast = lambda v: np.broadcast_to(v, (len(users), num_items))  # noqa: E731
        return {
            "two_tower": self.user_vectors[users] @ self.item_vectors.T,
            "ease": history @ self.ease,
            "item_knn": history @ self.item_knn,
            "content": self.user_text[users] @ self.item_text.T,
            "aspect_match": self.user_aspects[users] @ self.item_aspects.T,
            "popularity": broadcast(self.popularity),
            "mean_rating": broadcast(self.mean_rating),
            "history": np.broadcast_to(np.log1p(history.sum(axis=1, keepdims=True)),
                                       (len(users), num_items)),
        }

    def feature_matrix(self, users: np.ndarray) -> np.ndarray:
        """The ranker input for `users`: [len(users), N, F] float32, F in `FEATURES` order."""
        raw = self.raw(users)
        columns = []
        for name in FEATURES:
            value = np.asarray(raw[name], dtype="float32")
            if name in PER_USER:
                value = standardised_per_user(value)
            columns.append(value)
        return np.stack(columns, axis=-1)


def fit_signals(frame: pd.DataFrame, num_users: int, num_items: int, *, user_vectors: np.ndarray,
                item_vectors: np.ndarray, user_text: np.ndarray, item_text: np.ndarray,
                user_aspects: np.ndarray, item_aspects: np.ndarray, ease_l2: float
                ) -> Signals:
    """Fit the interaction-based signals on `frame` (user_row, item_row, rating) and bundle them
    with the tower outputs and the text/aspect profiles."""
    history = history_matrix(frame, num_users, num_items)
    counts = history.sum(axis=0)
    ratings = frame[["item_row", "rating"]].dropna()
    global_mean = float(ratings["rating"].mean()) if len(ratings) else 3.0
    mean_rating = np.full(num_items, global_mean, dtype="float32")
    per_item = ratings.groupby("item_row")["rating"].mean()
    mean_rating[per_item.index.to_numpy()] = per_item.to_numpy(dtype="float32")
    return Signals(
        history=history, user_vectors=user_vectors.astype("float32"),
        item_vectors=item_vectors.astype("float32"), ease=ease_weights(history, ease_l2),
        item_knn=knn_weights(history), user_text=unit_rows(user_text),
        item_text=unit_rows(item_text), user_aspects=user_aspects.astype("float32"),
        item_aspects=item_aspects.astype("float32"),
        popularity=np.log1p(counts).astype("float32"), mean_rating=mean_rating - 3.0)
