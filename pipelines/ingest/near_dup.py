"""Near-duplicate removal: MinHash signatures of word 3-gram shingles, LSH banding, keep the first.

Two documents are near-duplicates when the Jaccard similarity of their shingle sets, estimated
from 64 MinHash values, reaches the threshold (`--near-duplicates`, e.g. 0.9; off by default).
LSH bands are as long as they can be while a pair at the threshold still becomes a candidate with
probability >= 0.98 (at 0.9: 8 bands of 8 rows, candidates with probability 0.99 at Jaccard 0.9
and 0.03 at 0.5); candidates are then verified on the whole signature. The earliest document
(input order, then source position) of a near-duplicate group is kept, as exact de-duplication
does.

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

NUM_PERM = 64
SHINGLE = 3
DEFAULT_MIN_WORDS = 20
NEAR_DUP_KINDS = ("review", "news")
_RNG = np.random.default_rng(20240611)  # fixed: signatures must agree across workers and runs
# Permutations as multiply-shift hashes with odd 64-bit multipliers, fixed by the seed above.
_A = _RNG.integers(0, 1 << 63, NUM_PERM, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _RNG.integers(0, 1 << 63, NUM_PERM, dtype=np.uint64)
_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))


def shingle_words(text: str, min_words: int = DEFAULT_MIN_WORDS) -> list[str] | None:
    """The case-folded words whose consecutive triples are the shingles (characters for unspaced
    Chinese); None when the text is too short to judge (fewer than `min_words` words, or
    2 * `min_words` characters for Chinese)."""
    words = text.casefold().split()
    if len(words) < min_words:
        chars = "".join(words)
        if len(words) > 3 or len(chars) < 2 * min_words or chars.isascii():
            return None
        words = list(chars)  # Chinese: characters stand in for words
    return words


def shingles(text: str, min_words: int = DEFAULT_MIN_WORDS) -> set[str] | None:
    """The word 3-grams themselves (for reading and tests; signatures hash them numerically)."""
    words = shingle_words(text, min_words)
    if words is None:
        return None
    return {" ".join(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


_WORD_CODES: dict[str, int] = {}  # word -> CRC32; words repeat across documents (Zipf)
_MAX_CACHED_WORDS = 1 << 20


def _word_code(word: str) -> int:
    code = _WORD_CODES.get(word)
    if code is None:
        if len(_WORD_CODES) >= _MAX_CACHED_WORDS:
            _WORD_CODES.clear()
        code = _WORD_CODES[word] = zlib.crc32(word.encode("utf-8"))
    return code


def shingle_hashes(words: list[str]) -> np.ndarray:
    """A 64-bit hash per word 3-gram: the words' stable CRC32s (not `hash()`, which differs between
    processes) mixed by multiplication, all in numpy: no 3-gram strings are built."""
    codes = np.fromiter(map(_word_code, words), dtype=np.uint64, count=len(words))
    with np.errstate(over="ignore"):
        return codes[:-2] * _MIX[0] + codes[1:-1] * _MIX[1] + codes[2:]


def minhash(hashes: np.ndarray) -> np.ndarray:
    """64 MinHash values (uint32) of a set of shingle hashes: per permutation the minimum of the
    multiply-shift hashes (a * h + b) >> 32, a odd, in wrapping uint64 arithmetic (the shift is
    monotonic, so it is applied once, after the minimum)."""
    with np.errstate(over="ignore"):
        values = _A[:, None] * hashes[None, :]
        values += _B[:, None]
    return (values.min(axis=1) >> np.uint64(32)).astype(np.uint32)


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


def signature(doc: Mapping[str, Any], min_words: int = DEFAULT_MIN_WORDS) -> bytes:
    """The MinHash signature bytes of a document in near-duplicate scope, else b""."""
    if doc["kind"] not in NEAR_DUP_KINDS:
        return b""
    words = shingle_words(f"{doc.get('title') or ''} {doc['text']}", min_words)
    return b"" if words is None else minhash(shingle_hashes(words)).tobytes()


def signature_mark(doc: Mapping[str, Any], source_order: Mapping[str, int],
                   min_words: int = DEFAULT_MIN_WORDS) -> tuple[tuple, str, bytes] | None:
    """(rank, id, MinHash signature bytes) of a document in near-duplicate scope, else None."""
    sig = signature(doc, min_words)
    if not sig:
        return None
    return (source_order.get(doc["source"], 0), doc["source_position"]), doc["id"], sig


def near_duplicate_ids(docs: Sequence[Mapping[str, Any]], threshold: float,
                       source_order: Mapping[str, int] | None = None,
                       min_words: int = DEFAULT_MIN_WORDS) -> dict[str, str]:
    """The decision of the Beam job (dedup.DeduplicateDocs) without Beam: tests and the
    benchmark's bare loop."""
    marks = (signature_mark(doc, source_order or {}, min_words) for doc in docs)
    return find_near_duplicates([m for m in marks if m is not None], threshold)
