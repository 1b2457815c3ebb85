"""User and item profiles rebuilt from one frame of interactions: no held-out review leaks in.

The `features` stage profiles every user and item from all of their reviews, which is what serving
wants. For evaluation that leaks: a user's mean review embedding and aspect counts would include the
very review whose item is held out, and the item's profile holds the same review (on All_Beauty the
text-embedding cosine alone then ranked held-out items at NDCG@10 0.31, above every collaborative
method). `profiles_from` rebuilds the profiles from the per-review features of `features/docs/`,
keeping only the reviews of the given (user, item) pairs, with the same rules as the stage
(mean embedding; per-aspect mean polarity; user weights beyond the chance band).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd

# A mention praises its aspect when P(positive) - P(negative) of its clause is at least this. On
# the demo data it marks a majority of mentions as praise for 96% of the item aspects planted good,
# 28% of the neutral and 11% of the bad ones (0.3: 26%, 0%, 3%).
PRAISE = 0.1


def user_aspect_weights(counts: Sequence[int], n_reviews: int, aspect_rate: Sequence[float]
                        ) -> list[float]:
    """How much a user cares about each aspect: mentions beyond what an average reviewer makes.

    `aspect_rate[a]` is the share of all reviews that mention aspect a, so a user with n reviews
    would mention it `n * rate` times by chance, give or take `sqrt(n * rate)` (Poisson). The
    weight is the excess beyond that chance band, `count - n * rate - sqrt(n * rate)` (at least 0),
    normalised to sum to 1; all zero when the user stands out on no aspect. Counting excess
    mentions, not their ratio, keeps one mention of a rare word from outweighing an aspect the user
    brings up in most of their reviews; discounting by the chance band keeps a user's few incidental
    mentions of a common word from reading as a preference.
    """
    excess = []
    for count, rate in zip(counts, aspect_rate):
        expected = n_reviews * rate
        excess.append(max(count - expected - math.sqrt(expected), 0.0))
    total = sum(excess)
    return [e / total for e in excess] if total > 0 else [0.0] * len(excess)


def profiles_from(features, docs: pd.DataFrame, frame: pd.DataFrame):
    """A copy of `features` whose user and item embeddings, item aspect scores, mentions and
    praising mentions, and user aspect weights and mentions come only from the reviews of
    `frame`'s (user, item) pairs.

    Args:
      features: a `recommender.data.FeatureSet` (ids, aspects; its interactions stay as they are).
      docs: per-review features (`user`, `item`, `embedding`, `aspects`, `aspect_polarity`) with
        items already mapped to their groups.
      frame: the interactions allowed to shape profiles (e.g. the train split).
    """
    pairs = set(zip(frame["user"], frame["item"]))
    kept = docs[[pair in pairs for pair in zip(docs["user"], docs["item"])]]
    aspects = {a: i for i, a in enumerate(features.aspects)}
    num_aspects = len(aspects)
    dim = features.items.embedding.shape[1]

    def mean_embeddings(ids: np.ndarray, key: str) -> np.ndarray:
        out = np.zeros((len(ids), dim), "float32")
        index = {value: row for row, value in enumerate(ids)}
        sums, counts = {}, {}
        for owner, vector in zip(kept[key], kept["embedding"]):
            if owner in index and vector is not None and len(vector) == dim:
                sums[owner] = sums.get(owner, 0.0) + np.asarray(vector, "float64")
                counts[owner] = counts.get(owner, 0) + 1
        for owner, total in sums.items():
            out[index[owner]] = total / counts[owner]
        return out

    score = np.zeros((len(features.items), num_aspects), "float64")
    mentions = np.zeros((len(features.items), num_aspects), "float64")
    praising = np.zeros((len(features.items), num_aspects), "int32")
    item_index = features.item_index
    user_counts = np.zeros((len(features.users), num_aspects), "float64")
    user_reviews = np.zeros(len(features.users), "float64")
    user_index = features.user_index
    for user, item, names, polarity in zip(kept["user"], kept["item"], kept["aspects"],
                                           kept["aspect_polarity"]):
        names = list(names) if names is not None else []
        polarity = list(polarity) if polarity is not None else []
        if item in item_index:
            for name, value in zip(names, polarity):
                if name in aspects:
                    score[item_index[item], aspects[name]] += value
                    mentions[item_index[item], aspects[name]] += 1
                    praising[item_index[item], aspects[name]] += value >= PRAISE
        if user in user_index:
            user_reviews[user_index[user]] += 1
            for name in {n for n in names if n in aspects}:
                user_counts[user_index[user], aspects[name]] += 1
    aspect_score = np.where(mentions > 0, score / np.maximum(mentions, 1), 0.0).astype("float32")
    rate = user_counts.sum(axis=0) / max(user_reviews.sum(), 1.0)
    weights = np.array([user_aspect_weights(c, int(n), rate)
                        for c, n in zip(user_counts, user_reviews)], "float32").reshape(
        len(features.users), num_aspects)
    items = replace(features.items, embedding=mean_embeddings(features.items.ids, "item"),
                    aspect_score=aspect_score, aspect_count=mentions.astype("int32"),
                    aspect_positive=praising)
    users = replace(features.users, embedding=mean_embeddings(features.users.ids, "user"),
                    aspect_weight=weights, aspect_count=user_counts.astype("int32"),
                    n_reviews=user_reviews.astype("int64"))
    return replace(features, items=items, users=users)
