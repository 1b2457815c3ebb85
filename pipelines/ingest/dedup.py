"""Exact de-duplication: keep the first record (by input order, position) of each key."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterable, Iterator, Mapping

import apache_beam as beam

from pipelines.ingest.metrics import CountingDoFn
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
