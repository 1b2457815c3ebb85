"""The ranking stage: a deep & cross network (TFRS `Cross` + a small MLP) over first-stage signals.

Each (user, item) pair is described by the `signals.FEATURES` vector (two-tower cosine, EASE,
item-kNN, text and aspect match, popularity, mean rating, history length). The ranker is trained
listwise, TFRS-style: one list per user holds the held-out next item and the items the user has not
interacted with (the whole catalogue when it is small, else the hardest and some random ones), and
`tfrs.tasks.Ranking` applies a softmax cross-entropy over the list. Its training lists come from an
inner leave-last-out split of the train interactions, so dev and test stay unseen; dev picks the
epoch. Several such splits, each peeling one more item off the end of the histories, give one
list per user each (Gift_Cards: 458 lists from one split, 1,159 from three; with three, the ranker
beat EASE on dev as it does on test).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recommender.signals import FEATURES, Signals

log = logging.getLogger("opinionrec")

MAX_LIST = 200  # candidates per training list on catalogues larger than this


class DCNRanker(tfrs.Model):
    """[B, L, F] signal vectors -> [B, L] logits: Cross layer, Dense(relu), Dense(1).

    Args:
      hidden: width of the dense layer after the cross layer.
      seed: initializer seed.
    """

    def __init__(self, hidden: int = 32, seed: int = 0):
        super().__init__()
        glorot = lambda offset: tf.keras.initializers.GlorotUniform(seed=seed + offset)  # noqa
        # === Layers ===
        self.cross = tfrs.layers.dcn.Cross(kernel_initializer=glorot(0))
        self.hidden = tf.keras.layers.Dense(hidden, activation="relu", kernel_initializer=glorot(1))
        self.logit = tf.keras.layers.Dense(1, kernel_initializer=glorot(2))
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True))

    def call(self, features: tf.Tensor) -> tf.Tensor:
        crossed = self.cross(features)
        return tf.squeeze(self.logit(self.hidden(crossed)), axis=-1)

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        logits = self(inputs["features"])
        logits = tf.where(inputs["mask"], logits, tf.fill(tf.shape(logits), -1e9))
        return self.task(labels=inputs["label"], predictions=logits)


class RankerEnsemble(tf.keras.Model):
    """[B, L, F] -> [B, L]: the mean of its rankers' logits (rankers of several seeds: the
    ranking of one swings with its seed on a few hundred dev users)."""

    def __init__(self, rankers: list[DCNRanker]):
        super().__init__()
        self.rankers = list(rankers)

    def call(self, features: tf.Tensor) -> tf.Tensor:
        return tf.add_n([ranker(features) for ranker in self.rankers]) / len(self.rankers)


@dataclass
class RankingLists:
    """Training lists: features [B, L, F], one-hot labels [B, L], valid-entry mask [B, L]."""

    features: np.ndarray
    label: np.ndarray
    mask: np.ndarray

    @classmethod
    def concatenate(cls, parts: list["RankingLists"]) -> "RankingLists":
        """One set of lists from several (same list length and features)."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("features", "label", "mask")))

    def dataset(self, batch_size: int, seed: int) -> tf.data.Dataset:
        data = {"features": self.features, "label": self.label, "mask": self.mask}
        return (tf.data.Dataset.from_tensor_slices(data)
                .shuffle(len(self.label), seed=seed, reshuffle_each_iteration=True)
                .batch(batch_size))


def inner_split(train: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-last-out inside `train` (already ordered per user by the EVAL.md split): each user's
    last train interaction becomes a ranker target when the user keeps at least one other."""
    from_end = train.groupby("user", sort=False).cumcount(ascending=False)
    size = train.groupby("user", sort=False)["item"].transform("size")
    is_target = (from_end == 0) & (size >= 2)
    return train[~is_target].reset_index(drop=True), train[is_target].reset_index(drop=True)


def ranking_lists(signals: Signals, targets: pd.DataFrame, seed: int = 0,
                  max_list: int = MAX_LIST) -> RankingLists:
    """One list per target row: the target first, then unseen items (all of them when the
    catalogue fits in `max_list`, else half the highest by summed signals and half at random)."""
    users = targets["user_row"].to_numpy()
    positives = targets["item_row"].to_numpy()
    num_items = signals.history.shape[1]
    size = min(num_items, max_list)
    rng = np.random.default_rng(seed)
    features = np.zeros((len(users), size, len(FEATURES)), dtype="float32")
    label = np.zeros((len(users), size), dtype="float32")
    mask = np.zeros((len(users), size), dtype=bool)
    for start in range(0, len(users), 256):
        chunk = slice(start, start + 256)
        matrix = signals.feature_matrix(users[chunk])
        for offset, (user, positive) in enumerate(zip(users[chunk], positives[chunk])):
            row = start + offset
            seen = signals.history[user] > 0
            candidates = np.flatnonzero(~seen)
            candidates = candidates[candidates != positive]
            if len(candidates) > size - 1:
                order = np.argsort(-matrix[offset, candidates].sum(axis=1), kind="stable")
                hard = candidates[order[:(size - 1) // 2]]
                rest = np.setdiff1d(candidates, hard)
                candidates = np.concatenate(
                    [hard, rng.choice(rest, size - 1 - len(hard), replace=False)])
            chosen = np.concatenate([[positive], candidates])
            features[row, :len(chosen)] = matrix[offset, chosen]
            label[row, 0] = 1.0
            mask[row, :len(chosen)] = True
    return RankingLists(features, label, mask)


def ranker_scorer(ranker: DCNRanker | RankerEnsemble, signals: Signals, chunk: int = 256
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """Scores of users (rows) against the whole catalogue, as `evaluate.Scorer`."""

    def score(users: np.ndarray) -> np.ndarray:
        parts = [ranker(tf.constant(signals.feature_matrix(users[i:i + chunk]))).numpy()
                 for i in range(0, len(users), chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, signals.history.shape[1]))

    return score


def train_ranker(lists: RankingLists, dev_metric: Callable[[DCNRanker], float], *,
                 epochs: int = 30, patience: int = 4, learning_rate: float = 0.01,
                 batch_size: int = 32, seed: int = 0) -> tuple[DCNRanker, list[float]]:
    """Fit the ranker on `lists`; after each epoch `dev_metric(ranker)` (higher is better) picks
    the weights kept. Returns the ranker and the metric per epoch."""
    tf.keras.utils.set_random_seed(seed)
    ranker = DCNRanker(seed=seed)
    ranker.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    dataset = lists.dataset(batch_size, seed)
    history: list[float] = []
    best, best_weights = -np.inf, None
    for epoch in range(epochs):
        result = ranker.fit(dataset, epochs=1, verbose=0)
        loss = float(result.history["loss"][-1])
        if not np.isfinite(loss):
            log.warning("train-recommender: ranker loss is %s at epoch %d; keeping epoch %d",
                        loss, epoch + 1, int(np.argmax(history)) + 1 if history else 0)
            break
        metric = dev_metric(ranker)
        history.append(metric)
        if metric > best:
            best, best_weights = metric, ranker.get_weights()
        elif epoch - int(np.argmax(history)) >= patience:
            break
    if best_weights is not None:
        ranker.set_weights(best_weights)
    return ranker, history


def train_rankers(lists: RankingLists, dev_metric: Callable[[DCNRanker], float], *,
                  seeds: int = 1, seed: int = 0, **options
                  ) -> tuple[RankerEnsemble, list[list[float]]]:
    """`train_ranker` with seeds `seed` .. `seed + seeds - 1` (dev picks each one's epoch), as one
    ensemble; with each ranker's dev metric per epoch."""
    rankers, histories = [], []
    for offset in range(max(seeds, 1)):
        ranker, history = train_ranker(lists, dev_metric, seed=seed + offset, **options)
        rankers.append(ranker)
        histories.append(history)
    return RankerEnsemble(rankers), histories
