"""De-duplication: keep the first record (by input order, position) of each key; for documents,
also drop near-duplicates of an earlier document (see near_dup)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Iterator, Mapping

import apache_beam as beam

from pipelines.ingest.metrics import CountingDoFn
from pipelines.ingest.near_dup import DEFAULT_MIN_WORDS, find_near_duplicates, signature
from pipelines.records import normalise_for_dedup


def doc_dedup_key(doc: Mapping[str, Any]) -> str:
    """(kind, user, item, case-folded title + text), hashed to keep the shuffle small.

    Labelled documents (classification and ABSA examples) are keyed by their id, so they are never
    de-duplicated: evaluation sets count every row, repeated texts included.
    """
    if doc["kind"] == "labelled":
        return f"labelled:{doc['id']}"
    body = normalise_for_dedup(f"{doc.get('title') or ''}\n{doc['text']}")
    key = json.dumps([doc["kind"], doc.get("user"), doc.get("item"), body])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def item_dedup_key(item: Mapping[str, Any]) -> str:
    return item["item"]


def behavior_dedup_key(record: Mapping[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k not in ("source", "source_position")}
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


class KeepFirstFn(CountingDoFn):
    """(key, records) -> the first record by (input order, source_position); counts the rest."""

    def __init__(self, source_order: Mapping[str, int]) -> None:
        self._order = dict(source_order)

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        _, records = element
        ranked = sorted(
            records, key=lambda r: (self._order.get(r["source"], 0), r["source_position"])
        )
        for duplicate in ranked[1:]:
            self.counters.inc("deduplicated", duplicate["source"])
            self.counters.inc("deduplicated.exact", duplicate["source"])
        yield ranked[0]


class Deduplicate(beam.PTransform):
    """Keep one record per `key_fn` value: the first by (input order, source_position)."""

    def __init__(self, key_fn: Callable[[Any], str], source_order: Mapping[str, int]) -> None:
        super().__init__()
        self._key_fn = key_fn
        self._source_order = dict(source_order)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        key_fn = self._key_fn
        return (
            records
            | "Key" >> beam.Map(lambda r: (key_fn(r), r))
            | "Group" >> beam.GroupByKey()
            | "Keep first" >> beam.ParDo(KeepFirstFn(self._source_order))
        )


# === Documents: exact and near duplicates decided on small marks, documents filtered once ===


class DocMarkFn(beam.DoFn):
    """Document -> (exact key, (rank, id, MinHash signature or b"")): all de-duplication needs.

    The signature is computed only when near-duplicate removal is on and the document is in its
    scope (see near_dup); the rank is (input order, source position).
    """

    def __init__(self, source_order: Mapping[str, int], near_threshold: float,
                 min_words: int = DEFAULT_MIN_WORDS) -> None:
        self._order = dict(source_order)
        self._near = near_threshold > 0
        self._min_words = min_words

    def process(self, doc: Mapping[str, Any]) -> Iterator[tuple[str, tuple[tuple, str, bytes]]]:
        rank = (self._order.get(doc["source"], 0), doc["source_position"])
        sig = signature(doc, self._min_words) if self._near else b""
        yield doc_dedup_key(doc), (rank, doc["id"], sig)


def first_of_key(element: tuple[str, Iterable[tuple]]) -> Iterator[Any]:
    """(key, marks) -> the first mark by rank; ("exact" output) each later id -> the first id."""
    _, marks = element
    first, *later = sorted(marks)
    for mark in later:
        yield beam.pvalue.TaggedOutput("exact", (mark[1], first[1]))
    yield first


class DropDuplicatesFn(CountingDoFn):
    """Drops the documents the side inputs name, counting them as deduplicated (exact / near)."""

    def process(self, doc: dict[str, Any], exact: Mapping[str, str], near: Mapping[str, str]
                ) -> Iterator[dict[str, Any]]:
        kind = "exact" if doc["id"] in exact else "near" if doc["id"] in near else None
        if kind is None:
            yield doc
            return
        self.counters.inc("deduplicated", doc["source"])
        self.counters.inc(f"deduplicated.{kind}", doc["source"])


class DeduplicateDocs(beam.PTransform):
    """Docs -> docs without exact duplicates (`doc_dedup_key`) and, when `near_threshold` > 0,
    without near-duplicates of an earlier survivor; the first by (input order, position) stays.

    Only small marks (key, rank, id, signature) are shuffled and gathered; the documents cross one
    stage boundary, into the filter that takes the decisions as side inputs. Shuffling the whole
    documents through a GroupByKey, then again into a near-duplicate filter, cost twice as much.
    """

    def __init__(self, source_order: Mapping[str, int], near_threshold: float = 0.0,
                 min_words: int = DEFAULT_MIN_WORDS) -> None:
        super().__init__()
        self._source_order = dict(source_order)
        self._near_threshold = near_threshold
        self._min_words = min_words

    def expand(self, docs: beam.PCollection) -> beam.PCollection:
        threshold = self._near_threshold
        decided = (
            docs
            | "Marks" >> beam.ParDo(DocMarkFn(self._source_order, threshold, self._min_words))
            | "Group by content" >> beam.GroupByKey()
            | "First of each" >> beam.FlatMap(first_of_key).with_outputs("exact", main="first")
        )
        if threshold > 0:
            near = (
                decided.first
                | "In near scope" >> beam.Filter(lambda mark: bool(mark[2]))
                | "All signatures" >> beam.combiners.ToList()
                | "Find near-duplicates" >> beam.Map(find_near_duplicates, threshold)
            )
        else:
            near = docs.pipeline | "No near-duplicates" >> beam.Create([{}])
        return docs | "Drop duplicates" >> beam.ParDo(
            DropDuplicatesFn(), exact=beam.pvalue.AsDict(decided.exact),
            near=beam.pvalue.AsSingleton(near))
