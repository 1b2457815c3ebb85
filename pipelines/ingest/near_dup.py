"""Near-duplicate removal: MinHash signatures of word 3-gram shingles, LSH banding, keep the first.

Two documents are near-duplicates when the Jaccard similarity of their shingle sets, estimated
from 64 MinHash values, reaches the threshold (`--near-duplicates`, 0.9 by default). LSH bands are
as long as they can be while a pair at the threshold still becomes a candidate with probability
>= 0.98 (at 0.9: 8 bands of 8 rows, candidates with probability 0.99 at Jaccard 0.9 and 0.03 at
0.5); candidates are then verified on the whole signature. The earliest document (input order, then
source position) of a near-duplicate group is kept, as exact de-duplication does.

Scope: reviews and news of at least `min_words` (20) words, title included. Short texts ("Love it!",
"Great sound. Shipping was quick.") are legitimately repeated by many reviewers, and exact
de-duplication already handles a user repeating one for the same item. Labelled documents are never
near-deduplicated: evaluation sets count every row. The candidate search runs over all
signatures in one place: 64 uint32 per document, ~300 MB for 10^6 documents.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipelines.records import normalise_for_dedup

NUM_PERM = 64
SHINGLE = 3
DEFAULT_MIN_WORDS = 20
NEAR_DUP_KINDS = ("review", "news")
_PRIME = np.uint64((1 << 61) - 1)
_RNG = np.random.default_rng(20240611)  # fixed: signatures must agree across workers and runs
# Permutations (a * h + b) mod p as datasketch draws them: a, b over the whole field, so that the
# uint64 product wraps and mixes (a < 2^32 would order shingles by h in every permutation alike).
_A = _RNG.integers(1, (1 << 61) - 1, NUM_PERM, dtype=np.uint64)
_B = _RNG.integers(0, (1 << 61) - 1, NUM_PERM, dtype=np.uint64)


def shingles(text: str, min_words: int = DEFAULT_MIN_WORDS) -> set[str] | None:
    """Word 3-grams of the normalised text (character 3-grams for unspaced Chinese); None when the
    text is too short to judge (fewer than `min_words` words, or characters for Chinese)."""
    norm = normalise_for_dedup(text)
    words = norm.split()
    if len(words) < min_words:
        chars = norm.replace(" ", "")
        if len(words) > 3 or len(chars) < 2 * min_words or chars.isascii():
            return None
        words = list(chars)  # Chinese: characters stand in for words
    return {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


def minhash(tokens: Iterable[str]) -> np.ndarray:
    """64 MinHash values (uint32) of a shingle set, from stable CRC32 hashes (not `hash()`, which
    differs between processes)."""
    hashes = np.fromiter((zlib.crc32(t.encode("utf-8")) for t in tokens), dtype=np.uint64)
    with np.errstate(over="ignore"):
        values = (_A[:, None] * hashes[None, :] + _B[:, None]) % _PRIME
    return (values & np.uint64(0xFFFFFFFF)).min(axis=1).astype(np.uint32)


def lsh_rows(threshold: float, min_recall: float = 0.98) -> int:
    """Rows per LSH band: the most (fewest false candidates) that keep the recall at threshold."""
    best = 1
    for rows in (1, 2, 4, 8, 16, 32, 64):
        if 1.0 - (1.0 - threshold**rows) ** (NUM_PERM // rows) >= min_recall:
            best = rows
    return best


def find_near_duplicates(
    signatures: Iterable[tuple[tuple, str, bytes]], threshold: float
) -> dict[str, str]:
    """{duplicate doc id: the id of the earlier document it repeats} from (rank, id, signature).

    Documents are visited in rank order; each is compared with the kept documents that share an
    LSH band with it, and kept unless one of them reaches `threshold` estimated Jaccard.
    """
    rows = lsh_rows(threshold)
    buckets: dict[bytes, list[int]] = {}
    kept: list[np.ndarray] = []
    kept_ids: list[str] = []
    duplicates: dict[str, str] = {}
    for _, doc_id, raw in sorted(signatures, key=lambda s: s[0]):
        signature = np.frombuffer(raw, dtype=np.uint32)
        keys = [bytes([band]) + signature[band * rows : (band + 1) * rows].tobytes()
                for band in range(NUM_PERM // rows)]
        candidates = {index for key in keys for index in buckets.get(key, ())}
        match = next((i for i in sorted(candidates)
                      if np.mean(kept[i] == signature) >= threshold), None)
        if match is not None:
            duplicates[doc_id] = kept_ids[match]
            continue
        index = len(kept)
        kept.append(signature)
        kept_ids.append(doc_id)
        for key in keys:
            buckets.setdefault(key, []).append(index)
    return duplicates


def signature_mark(doc: Mapping[str, Any], source_order: Mapping[str, int],
                   min_words: int = DEFAULT_MIN_WORDS) -> tuple[tuple, str, bytes] | None:
    """(rank, id, MinHash signature bytes) of a document in near-duplicate scope, else None."""
    if doc["kind"] not in NEAR_DUP_KINDS:
        return None
    tokens = shingles(f"{doc.get('title') or ''} {doc['text']}", min_words)
    if not tokens:
        return None
    rank = (source_order.get(doc["source"], 0), doc["source_position"])
    return rank, doc["id"], minhash(tokens).tobytes()


def near_duplicate_ids(docs: Sequence[Mapping[str, Any]], threshold: float,
                       source_order: Mapping[str, int] | None = None,
                       min_words: int = DEFAULT_MIN_WORDS) -> dict[str, str]:
    """The decision of the Beam job (dedup.DeduplicateDocs) without Beam: tests and the
    benchmark's bare loop."""
    marks = (signature_mark(doc, source_order or {}, min_words) for doc in docs)
    return find_near_duplicates([m for m in marks if m is not None], threshold)
