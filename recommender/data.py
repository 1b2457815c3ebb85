"""Reading the `features` stage's output into aligned numpy arrays.

The `features` stage writes `aspects.json`, `items.parquet`, `users.parquet` and
`interactions.parquet` (see `pipelines/features.py`). Everything downstream (training, evaluation,
explanations, export) indexes items and users by their row in these arrays, so this module fixes
that order once: items and users in file order, users that only occur in the interactions appended
with empty profiles, and interactions with items missing from the catalogue dropped (and counted).

Item groups: Amazon copies a review onto every variant listing of a product (same user, same text,
another asin). Listings that share at least half of the smaller one's reviews (and two or more)
are one product: with `group_items`, each group is represented by its listing with the most
reviews, interactions move to it (a copied review counts once), and the other listings leave the
catalogue, so splits, evidence and recommendations see the product once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

log = logging.getLogger("opinionrec")

INTERACTION_COLUMNS = ("user", "item", "rating", "timestamp", "position")
MIN_SHARED_REVIEWS = 2
MIN_SHARED_SHARE = 0.5


@dataclass(frozen=True)
class Items:
    """The catalogue: one row per item, aspect columns in `FeatureSet.aspects` order."""

    ids: np.ndarray  # [N] str (object)
    titles: np.ndarray  # [N] str (object), "" when unknown
    n_reviews: np.ndarray  # [N] int64
    embedding: np.ndarray  # [N, D] float32, mean sentence embedding of the item's reviews
    aspect_score: np.ndarray  # [N, A] float32, mean polarity in [-1, 1], 0 where unmentioned
    aspect_count: np.ndarray  # [N, A] int32, mentions
    aspect_sentence: np.ndarray  # [N, A] str (object), best praising sentence or ""
    aspect_positive: np.ndarray | None  # [N, A] int32, positive mentions (optional column)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Users:
    """User profiles: one row per user."""

    ids: np.ndarray  # [U] str (object)
    n_reviews: np.ndarray  # [U] int64
    aspect_weight: np.ndarray  # [U, A] float32, non-negative, sums to 1 or all zero
    embedding: np.ndarray  # [U, D] float32
    aspect_count: np.ndarray | None = None  # [U, A] int32, the user's reviews mentioning each

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class FeatureSet:
    """Everything `train-recommender` reads, aligned by row."""

    aspects: list[str]
    items: Items
    users: Users
    interactions: pd.DataFrame  # user, item, rating, timestamp, position (+ item_row, user_row)
    groups: dict[str, list[str]] | None = None  # representative -> its other listings
    # Per-review features (user, item, embedding, aspects, aspect_polarity) from features/docs/:
    # what evaluation rebuilds train-only profiles from (see recommender.profiles). None: absent.
    reviews: pd.DataFrame | None = None

    @property
    def item_index(self) -> dict[str, int]:
        return {item: row for row, item in enumerate(self.items.ids)}

    @property
    def user_index(self) -> dict[str, int]:
        return {user: row for row, user in enumerate(self.users.ids)}


def padded_rows(user_rows: np.ndarray, item_rows: np.ndarray, num_users: int, pad: int
                ) -> np.ndarray:
    """[num_users, W] int64: each user's distinct item rows in first-seen order, `pad`-filled
    (W = the longest list, at least 1). The serving module's seen items and the explanations'
    liked items are such tables."""
    per_user: list[list[int]] = [[] for _ in range(num_users)]
    for user, item in zip(user_rows, item_rows):
        if int(item) not in per_user[int(user)]:
            per_user[int(user)].append(int(item))
    table = np.full((num_users, max([1] + [len(items) for items in per_user])), pad, "int64")
    for user, items in enumerate(per_user):
        table[user, :len(items)] = items
    return table


def _matrix(values: pd.Series, width: int | None, dtype: str, column: str) -> np.ndarray:
    """Stack a list column into a 2-D array; empty lists become zero rows of the common width."""
    rows = [np.asarray(v if v is not None else [], dtype=dtype) for v in values]
    lengths = {len(r) for r in rows if len(r)}
    if width is None:
        width = lengths.pop() if len(lengths) == 1 else (0 if not lengths else None)
    if width is None or any(length != width for length in lengths):
        raise ValueError(f"`{column}` rows must all have the same length. Received lengths "
                         f"{sorted({len(r) for r in rows})}.")
    out = np.zeros((len(rows), width), dtype=dtype)
    for i, row in enumerate(rows):
        if len(row):
            out[i] = row
    return out


def _strings(values: pd.Series, width: int, column: str) -> np.ndarray:
    out = np.full((len(values), width), "", dtype=object)
    for i, row in enumerate(values):
        row = list(row) if row is not None else []
        if len(row) != width:
            raise ValueError(f"`{column}` rows must have {width} entries (one per aspect). "
                             f"Received {len(row)} in row {i}.")
        out[i] = [s or "" for s in row]
    return out


def read_items(path: Path, num_aspects: int) -> Items:
    frame = pq.read_table(path).to_pandas()
    if frame["item"].duplicated().any():
        duplicate = frame["item"][frame["item"].duplicated()].iloc[0]
        raise ValueError(f"{path}: duplicate item ids, e.g. {duplicate!r}")
    if (frame["item"] == "").any():
        raise ValueError(f"{path}: empty item id (the empty string pads the serving tables)")
    embedding = _matrix(frame["embedding"], None, "float32", "items.embedding")
    positive = None
    if "aspect_positive" in frame:
        positive = _matrix(frame["aspect_positive"], num_aspects, "int32", "aspect_positive")
    return Items(
        ids=frame["item"].astype(str).to_numpy(dtype=object),
        titles=frame["title"].fillna("").astype(str).to_numpy(dtype=object)
        if "title" in frame else np.full(len(frame), "", dtype=object),
        n_reviews=frame["n_reviews"].fillna(0).to_numpy(dtype="int64"),
        embedding=embedding,
        aspect_score=_matrix(frame["aspect_score"], num_aspects, "float32", "aspect_score"),
        aspect_count=_matrix(frame["aspect_count"], num_aspects, "int32", "aspect_count"),
        aspect_sentence=_strings(frame["aspect_sentence"], num_aspects, "aspect_sentence"),
        aspect_positive=positive,
    )


def read_users(path: Path, num_aspects: int) -> Users:
    frame = pq.read_table(path).to_pandas()
    return Users(
        ids=frame["user"].astype(str).to_numpy(dtype=object),
        n_reviews=frame["n_reviews"].fillna(0).to_numpy(dtype="int64"),
        aspect_weight=_matrix(frame["aspect_weight"], num_aspects, "float32", "aspect_weight"),
        embedding=_matrix(frame["embedding"], None, "float32", "users.embedding"),
        aspect_count=_matrix(frame["aspect_count"], num_aspects, "int32", "users.aspect_count")
        if "aspect_count" in frame else None,
    )


def _with_missing_users(users: Users, interaction_users: np.ndarray, dim: int) -> Users:
    """Append users who have interactions but no profile row (empty profile), keeping file order."""
    known = set(users.ids)
    missing = [u for u in pd.unique(interaction_users) if u not in known]
    embedding = users.embedding
    if embedding.shape[1] != dim:  # all profiles empty: match the items' text dimension
        if embedding.shape[1] != 0:
            raise ValueError(f"User embeddings have {embedding.shape[1]} dims, items have {dim}.")
        embedding = np.zeros((len(users), dim), dtype="float32")
    if not missing:
        return Users(users.ids, users.n_reviews, users.aspect_weight, embedding,
                     users.aspect_count)
    log.info("train-recommender: %d users have interactions but no profile; using empty profiles",
             len(missing))
    n = len(missing)
    return Users(
        ids=np.concatenate([users.ids, np.asarray(missing, dtype=object)]),
        n_reviews=np.concatenate([users.n_reviews, np.zeros(n, dtype="int64")]),
        aspect_weight=np.concatenate(
            [users.aspect_weight, np.zeros((n, users.aspect_weight.shape[1]), "float32")]),
        embedding=np.concatenate([embedding, np.zeros((n, dim), "float32")]),
        aspect_count=None if users.aspect_count is None else np.concatenate(
            [users.aspect_count, np.zeros((n, users.aspect_count.shape[1]), "int32")]),
    )


def item_groups(interactions: pd.DataFrame) -> dict[str, str]:
    """listing -> representative for listings that share reviews (see the module docstring);
    listings in no group are absent. Needs a `text_key` column ("" = no text)."""
    import itertools

    reviews = interactions[interactions["text_key"].fillna("") != ""]
    n_reviews = interactions.groupby("item").size().to_dict()
    shared: dict[tuple[str, str], int] = {}
    for _, items in reviews.groupby(["user", "text_key"])["item"]:
        for a, b in itertools.combinations(sorted(set(items)), 2):
            shared[a, b] = shared.get((a, b), 0) + 1
    parent: dict[str, str] = {}

    def root(item: str) -> str:
        while parent.setdefault(item, item) != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for (a, b), count in sorted(shared.items()):
        if count >= max(MIN_SHARED_REVIEWS, MIN_SHARED_SHARE * min(n_reviews[a], n_reviews[b])):
            parent[root(b)] = root(a)
    members: dict[str, list[str]] = {}
    for item in parent:
        members.setdefault(root(item), []).append(item)
    mapping = {}
    for group in members.values():
        if len(group) < 2:
            continue
        representative = max(sorted(group), key=lambda item: n_reviews[item])  # first on ties
        mapping.update({item: representative for item in group})
    return mapping


def _group(items: Items, interactions: pd.DataFrame, mapping: dict[str, str]
           ) -> tuple[Items, pd.DataFrame, dict[str, list[str]]]:
    keep = np.array([mapping.get(item, item) == item for item in items.ids])
    items = Items(**{name: (value[keep] if isinstance(value, np.ndarray) else value)
                     for name, value in items.__dict__.items()})
    interactions = interactions.copy()
    interactions["item"] = interactions["item"].map(lambda item: mapping.get(item, item))
    copied = interactions.duplicated(["user", "item", "text_key"]) & (
        interactions["text_key"].fillna("") != "")
    interactions = interactions[~copied].reset_index(drop=True)
    groups: dict[str, list[str]] = {}
    for item, representative in sorted(mapping.items()):
        if item != representative:
            groups.setdefault(representative, []).append(item)
    return items, interactions, groups


def load_features(folder: Path, group_items: bool = False) -> FeatureSet:
    """Read a `features` folder; raises FileNotFoundError naming the stage to run when absent.
    `group_items` merges listings that share reviews (needs `text_key` in the interactions)."""
    folder = Path(folder)
    needed = ["aspects.json", "items.parquet", "users.parquet", "interactions.parquet"]
    absent = [name for name in needed if not (folder / name).exists()]
    if absent:
        raise FileNotFoundError(f"{folder} lacks {', '.join(absent)}: run `opinionrec features` "
                                "first")
    aspects = list(json.loads((folder / "aspects.json").read_text())["aspects"])
    items = read_items(folder / "items.parquet", len(aspects))
    interactions = pq.read_table(folder / "interactions.parquet").to_pandas()
    lacking = [c for c in INTERACTION_COLUMNS if c not in interactions]
    if lacking:
        raise ValueError(f"interactions.parquet lacks columns {lacking}")
    has_text_key = "text_key" in interactions
    interactions = interactions[list(INTERACTION_COLUMNS) + (["text_key"] if has_text_key
                                                             else [])].copy()
    interactions["user"] = interactions["user"].astype(str)
    interactions["item"] = interactions["item"].astype(str)
    groups, mapping = None, {}
    if group_items and has_text_key:
        mapping = item_groups(interactions)
        items, interactions, groups = _group(items, interactions, mapping)
        if groups:
            log.info("train-recommender: %d listings that share reviews merged into %d products "
                     "(%d items left)", sum(len(g) + 1 for g in groups.values()), len(groups),
                     len(items))
    elif group_items:
        log.warning("train-recommender: interactions.parquet has no text_key (features from an "
                    "older version); listings that share reviews are not merged")
    item_index = {item: row for row, item in enumerate(items.ids)}
    in_catalogue = interactions["item"].map(item_index.__contains__).astype(bool)
    if not in_catalogue.all():
        log.warning("train-recommender: dropped %d interactions with items absent from "
                    "items.parquet", int((~in_catalogue).sum()))
        interactions = interactions[in_catalogue].reset_index(drop=True)
    users = _with_missing_users(read_users(folder / "users.parquet", len(aspects)),
                                interactions["user"].to_numpy(), items.embedding.shape[1])
    user_index = {user: row for row, user in enumerate(users.ids)}
    interactions["item_row"] = interactions["item"].map(item_index).astype("int64")
    interactions["user_row"] = interactions["user"].map(user_index).astype("int64")
    return FeatureSet(aspects=aspects, items=items, users=users, interactions=interactions,
                      groups=groups, reviews=_read_reviews(folder / "docs", mapping))


def _read_reviews(folder: Path, mapping: dict[str, str]) -> pd.DataFrame | None:
    files = sorted(folder.glob("*.parquet")) if folder.exists() else []
    if not files:
        return None
    columns = ["kind", "user", "item", "embedding", "aspects", "aspect_polarity"]
    frame = pd.concat([pq.read_table(f, columns=columns).to_pandas() for f in files],
                      ignore_index=True)
    frame = frame[frame["kind"] == "review"].reset_index(drop=True)
    frame["user"] = frame["user"].astype(str)
    frame["item"] = frame["item"].astype(str).map(lambda item: mapping.get(item, item))
    return frame
