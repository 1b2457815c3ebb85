"""The served re-ranking: a personal boost and a popularity penalty over the chosen scores.

A user's scores (the ranker's, or the single signal exported instead) are standardised over the
catalogue, then
  + `boost` where the item has personal evidence for the user (an aspect the user writes about
    that the item's reviews praise: `explain.personal_evidence`), so of two items ranked alike
    the one the user's own words explain comes first, with a personal explanation;
  - `popularity_penalty` x the item's standardised log popularity, so the catalogue's head does
    not open every list (on Magazine_Subscriptions one item was top-1 for 25% of test users).
Both are in standard deviations of the user's scores. Dev chooses them like every other setting
(`choose_rerank`): first the largest penalty, then the largest boost, whose dev NDCG@k stays
within `TOLERANCE` of the plain ranking's. Dev and test score the boost with evidence from train
reviews only (`train_evidence`); serving uses the quotable sentences.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from recommender import evaluate as evaluation
from recommender.data import FeatureSet

BOOST_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
PENALTY_GRID = (0.0, 0.25, 0.5, 1.0)
TOLERANCE = 0.02  # share of the plain ranking's dev NDCG@k a setting may cost


@dataclass(frozen=True)
class Rerank:
    """The re-ranking settings (0 and 0: the scores as they are)."""

    boost: float = 0.0
    popularity_penalty: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.boost or self.popularity_penalty)

    def as_dict(self) -> dict:
        return asdict(self)


def standardised(values: np.ndarray) -> np.ndarray:
    """[N] values minus their mean over their standard deviation (float32)."""
    values = np.asarray(values, dtype="float32")
    return (values - values.mean()) / (values.std() + np.float32(1e-6))


def rerank(scores: np.ndarray, evidence: np.ndarray, log_popularity: np.ndarray,
           setting: Rerank) -> np.ndarray:
    """[B, N] scores -> re-ranked scores (see the module docstring); `evidence` [B, N] 0/1,
    `log_popularity` [N]."""
    scores = np.asarray(scores, dtype="float32")
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return ((scores - mean) / (std + np.float32(1e-6))
            + np.float32(setting.boost) * evidence
            - np.float32(setting.popularity_penalty) * standardised(log_popularity)[None, :])


def reranked_scorer(base: evaluation.Scorer, evidence: np.ndarray, log_popularity: np.ndarray,
                    setting: Rerank) -> evaluation.Scorer:
    """`base` re-ranked with `setting`; `base` itself when the setting does nothing."""
    if not setting.active:
        return base
    return lambda users: rerank(base(users), evidence[users], log_popularity, setting)


def train_evidence(features: FeatureSet) -> np.ndarray:
    """[U, N] personal evidence from train-only profiles (`profiles.profiles_from`), for dev and
    test: the user mentions the aspect in a train review, and the item's train reviews praise it
    (a praising mention, positive mean polarity). Features without per-review rows use the
    stage's profiles as they are."""
    users, items = features.users, features.items
    writes = users.aspect_weight > 0
    if users.aspect_count is not None:
        writes = writes | (users.aspect_count > 0)
    praised = items.aspect_score > 0
    if items.aspect_positive is not None:  # without the column: positive mean polarity alone
        praised = praised & (items.aspect_positive > 0)
    return (writes.astype("float32") @ praised.T.astype("float32") > 0).astype("float32")


def _dev_figures(scorer: evaluation.Scorer, evidence: np.ndarray, split: evaluation.Split,
                 num_items: int, k: int) -> dict:
    """Dev NDCG@k, the share of dev users' top-k items with personal evidence, and the largest
    share of dev users one item is top-1 for."""
    users = split.dev["user_row"].to_numpy()
    ndcg = evaluation.evaluate(scorer, split, num_items, "dev", k)["all"][f"ndcg@{k}"]
    if not len(users):
        return {f"dev_ndcg@{k}": ndcg, "dev_personal_share": 0.0, "dev_max_top1_share": 0.0}
    seen = evaluation.exclusion_lists([split.train])
    scores = np.asarray(scorer(users), dtype="float64")
    for i, user in enumerate(users):
        scores[i, seen.get(int(user), [])] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {f"dev_ndcg@{k}": ndcg,
            "dev_personal_share": float(evidence[users[:, None], top].mean()),
            "dev_max_top1_share": float(np.bincount(top[:, 0]).max() / len(users))}


def choose_rerank(base: evaluation.Scorer, evidence: np.ndarray, log_popularity: np.ndarray,
                  split: evaluation.Split, num_items: int, k: int = 10,
                  progress: Callable[[str], None] = lambda message: None) -> tuple[Rerank, dict]:
    """The largest penalty of `PENALTY_GRID` (no boost), then the largest boost of `BOOST_GRID`
    (with that penalty), whose dev NDCG@k is within `TOLERANCE` of the plain ranking's; with the
    dev figures of every setting tried."""
    key = f"dev_ndcg@{k}"
    grid: dict[str, dict] = {}

    def figures(setting: Rerank) -> dict:
        name = f"boost {setting.boost}, penalty {setting.popularity_penalty}"
        if name not in grid:
            scorer = reranked_scorer(base, evidence, log_popularity, setting)
            grid[name] = _dev_figures(scorer, evidence, split, num_items, k)
        return grid[name]

    floor = (1.0 - TOLERANCE) * figures(Rerank())[key]
    penalty = max(p for p in PENALTY_GRID if figures(Rerank(0.0, p))[key] >= floor)
    boost = max(b for b in BOOST_GRID if figures(Rerank(b, penalty))[key] >= floor)
    chosen = Rerank(boost, penalty)
    return chosen, {"chosen": chosen.as_dict(), "tolerance": TOLERANCE, "grid": grid}
