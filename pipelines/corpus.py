"""Read the ingested canonical documents (Parquet) that later stages train on."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import pandas as pd


def read_parquet_dir(directory: Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """All `*.parquet` shards of a folder as one DataFrame (empty if there are none)."""
    import pyarrow.parquet as pq

    files = sorted(Path(directory).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files in {directory}: run the stage that writes it")
    tables = [pq.read_table(f, columns=list(columns) if columns else None) for f in files]
    import pyarrow as pa

    return pa.concat_tables(tables).to_pandas()


def read_docs(docs_dir: Path, kinds: Sequence[str] | None = None,
              columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Canonical documents, optionally only some kinds, in a stable order (by id)."""
    needed = None if columns is None else sorted(set(columns) | {"id", "kind"})
    docs = read_parquet_dir(docs_dir, needed)
    if kinds is not None:
        docs = docs[docs["kind"].isin(list(kinds))]
    return docs.sort_values("id", kind="stable").reset_index(drop=True)


def split_key(text: str) -> str:
    """What held-out splits hash: the text, case-folded with its whitespace collapsed. Copies of one
    text then fall on one side (Amazon repeats a review on every variant of a product: split by
    document id, 330 of 334 held-out reviews of a category had their exact text in training)."""
    return " ".join(str(text).casefold().split())


def held_out(ids: Sequence[str], fraction: float, salt: str = "held-out") -> list[bool]:
    """A deterministic split by key (a `split_key`, or an id): True for about `fraction` of them."""
    threshold = int(fraction * 10_000)
    return [
        int(hashlib.sha1(f"{salt}:{i}".encode()).hexdigest()[:8], 16) % 10_000 < threshold
        for i in ids
    ]

