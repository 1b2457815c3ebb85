"""The "Recommendation" protocol of EVAL.md: leave-last-out split, full-catalogue ranking metrics.

Split: duplicates of a (user, item) pair are kept once (the earliest); per user, interactions are
ordered by (timestamp, position); the last is test, the one before it dev, the rest train.

Metrics: every user with a held-out interaction scores the whole catalogue; the user's train items
(and, for test, dev items) are dropped; the held-out item's rank gives Recall@k, NDCG@k (binary
relevance, one relevant item: 1 / log2(rank + 1)) and MRR (1 / rank, no cut-off), averaged over
users. Ties are broken by catalogue row, as a stable descending sort would. The cold-start slice
keeps the test interactions whose item has no train interaction.

Any scorer `f(user_rows) -> [len(user_rows), num_items] scores` plugs into the same harness, so the
model and the baselines are measured identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Split:
    """Train / dev / test interactions (same columns as the input frame)."""

    train: pd.DataFrame
    dev: pd.DataFrame
    test: pd.DataFrame


def split_interactions(interactions: pd.DataFrame) -> Split:
    """Leave-last-out split of interactions with `user`, `item`, `timestamp`, `position` columns."""
    ordered = interactions.sort_values(["user", "timestamp", "position"], kind="stable")
    ordered = ordered.drop_duplicates(["user", "item"], keep="first")
    # 0 for the last interaction of each user, 1 for the one before it, ...
    from_end = ordered.groupby("user", sort=False).cumcount(ascending=False)
    return Split(
        train=ordered[from_end >= 2].reset_index(drop=True),
        dev=ordered[from_end == 1].reset_index(drop=True),
        test=ordered[from_end == 0].reset_index(drop=True),
    )


def target_ranks(scores: np.ndarray, targets: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """1-based rank of each row's target among its non-excluded items.

    Args:
      scores: [U, N] scores.
      targets: [U] column of the held-out item in each row.
      excluded: [U, N] bool, True for items dropped from the ranking (never the target).
    """
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets][:, None]
    columns = np.arange(scores.shape[1])[None, :]
    ahead = (scores > target_scores) | ((scores == target_scores) & (columns < targets[:, None]))
    return 1 + np.sum(ahead & ~excluded, axis=1)


def ranking_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """Recall@k, NDCG@k and MRR from 1-based ranks of a single relevant item per user."""
    ranks = np.asarray(ranks, dtype="float64")
    if len(ranks) == 0:
        return {f"recall@{k}": float("nan"), f"ndcg@{k}": float("nan"), "mrr": float("nan"),
                "users": 0}
    hit = ranks <= k
    return {
        f"recall@{k}": float(hit.mean()),
        f"ndcg@{k}": float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()),
        "mrr": float((1.0 / ranks).mean()),
        "users": int(len(ranks)),
    }


def exclusion_lists(frames: Sequence[pd.DataFrame]) -> dict[int, np.ndarray]:
    pairs = pd.concat([f[["user_row", "item_row"]] for f in frames], ignore_index=True)
    return {int(u): g.to_numpy() for u, g in pairs.groupby("user_row")["item_row"]}


def held_out_ranks(
    scorer: Scorer,
    held_out: pd.DataFrame,
    exclude: Sequence[pd.DataFrame],
    num_items: int,
    chunk: int = 1024,
) -> np.ndarray:
    """Rank of each held-out interaction's item for its user (rows of `held_out`, in order)."""
    excluded_items = exclusion_lists(exclude) if exclude else {}
    user_rows = held_out["user_row"].to_numpy()
    targets = held_out["item_row"].to_numpy()
    ranks = np.empty(len(held_out), dtype="int64")
    for start in range(0, len(held_out), chunk):
        users = user_rows[start:start + chunk]
        scores = np.asarray(scorer(users), dtype="float64")
        if scores.shape != (len(users), num_items):
            raise ValueError(f"A scorer must return [{len(users)}, {num_items}] scores. "
                             f"Received {scores.shape}.")
        mask = np.zeros(scores.shape, dtype=bool)
        for i, user in enumerate(users):
            mask[i, excluded_items.get(int(user), [])] = True
        ranks[start:start + chunk] = target_ranks(scores, targets[start:start + chunk], mask)
    return ranks


def part_ranks(scorer: Scorer, split: Split, num_items: int, part: str = "test") -> np.ndarray:
    """Rank of each held-out item of `part` ("dev": train excluded; "test": train and dev)."""
    if part == "test":
        held_out, exclude = split.test, [split.train, split.dev]
    elif part == "dev":
        held_out, exclude = split.dev, [split.train]
    else:
        raise ValueError(f"`part` must be 'dev' or 'test'. Received: {part!r}")
    return held_out_ranks(scorer, held_out, exclude, num_items)


def ndcg_difference(ranks_a: np.ndarray, ranks_b: np.ndarray, k: int = 10, samples: int = 2000,
                    seed: int = 0) -> dict:
    """Mean per-user NDCG@k of a minus b on the same held-out users, with a paired bootstrap 95%
    interval: whether a gap is more than the noise of a few hundred held-out users."""
    gains = lambda r: np.where(r <= k, 1.0 / np.log2(r + 1.0), 0.0)  # noqa: E731
    diff = gains(np.asarray(ranks_a, "float64")) - gains(np.asarray(ranks_b, "float64"))
    if not len(diff):
        return {"mean": 0.0, "ci95": [0.0, 0.0]}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "ci95": [float(low), float(high)]}


def evaluate(scorer: Scorer, split: Split, num_items: int, part: str = "test", k: int = 10
             ) -> dict[str, dict[str, float]]:
    """Metrics of a scorer on `part` ("dev" or "test"): all users and the cold-start slice."""
    return part_metrics(part_ranks(scorer, split, num_items, part), split, part, k)


def part_metrics(ranks: np.ndarray, split: Split, part: str = "test", k: int = 10
                 ) -> dict[str, dict[str, float]]:
    """`evaluate`'s metrics from `part_ranks` already computed."""
    held_out = split.test if part == "test" else split.dev
    cold = ~held_out["item_row"].isin(set(split.train["item_row"])).to_numpy()
    return {"all": ranking_metrics(ranks, k), "cold_start": ranking_metrics(ranks[cold], k)}


# === Baselines ===


def popularity_scorer(train: pd.DataFrame, num_items: int) -> Scorer:
    """Most-popular: every user gets the items' train interaction counts."""
    counts = np.bincount(train["item_row"].to_numpy(), minlength=num_items).astype("float64")
    return lambda users: np.broadcast_to(counts, (len(users), num_items))


def item_knn_scorer(train: pd.DataFrame, num_users: int, num_items: int, neighbours: int = 50
                    ) -> Scorer:
    """Item-kNN: sum of cosine similarities (top `neighbours` per item) to the user's items."""
    from recommender.signals import history_matrix, knn_weights

    matrix = history_matrix(train, num_users, num_items).astype("float64")
    weights = knn_weights(matrix, neighbours).astype("float64")
    return lambda users: matrix[users] @ weights
