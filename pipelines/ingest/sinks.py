"""Writing the ingest outputs: Parquet, docs as TFRecord of tf.train.Example, rejected JSON lines."""

from __future__ import annotations

import json
from typing import Any, Iterator, Mapping

import apache_beam as beam

from pipelines import workspace
from pipelines.fspath import remove_tree
from pipelines.ingest.metrics import CountingDoFn
from pipelines.records import DOC_SCHEMA, INTERACTION_SCHEMA, ITEM_SCHEMA, document_to_bytes


class ToExampleFn(CountingDoFn):
    """Document -> serialized tf.train.Example (no TensorFlow import), counted."""

    def process(self, doc: Mapping[str, Any]) -> Iterator[bytes]:
        self.counters.inc("rows.docs_tfrecord")
        yield document_to_bytes(doc)


class WriteDocsTFRecord(beam.PTransform):
    """Docs -> `<prefix>-SSSSS-of-NNNNN.tfrecord` files of tf.train.Example (Beam's TFRecord sink;
    `num_shards` 0 lets the runner choose)."""

    def __init__(self, prefix: str, num_shards: int) -> None:
        super().__init__()
        self._prefix = prefix
        self._num_shards = max(0, num_shards)

    def expand(self, docs: beam.PCollection) -> beam.pvalue.PDone:
        return (
            docs
            | "To tf.train.Example" >> beam.ParDo(ToExampleFn())
            | "Write TFRecord" >> beam.io.WriteToTFRecord(
                self._prefix, file_name_suffix=".tfrecord", num_shards=self._num_shards)
        )


def _to_json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)


def write_outputs(
    outputs: Mapping[str, beam.PCollection], ws: workspace.Workspace, num_shards: int
) -> None:
    """Attach the sinks: Parquet for docs/items/interactions, TFRecord for docs, JSONL rejects."""
    shards = max(0, num_shards)
    for name, folder, schema in (
        ("docs", ws.docs, DOC_SCHEMA),
        ("items", ws.items, ITEM_SCHEMA),
        ("interactions", ws.interactions, INTERACTION_SCHEMA),
    ):
        _ = outputs[name] | f"Write {name} Parquet" >> beam.io.WriteToParquet(
            str(folder / name), schema=schema, file_name_suffix=".parquet", num_shards=shards
        )
    _ = outputs["docs"] | "Write docs TFRecord" >> WriteDocsTFRecord(str(ws.docs / "docs"), shards)
    _ = (
        outputs["rejected"]
        | "Rejected to JSON" >> beam.Map(_to_json_line)
        | "Write rejected" >> beam.io.WriteToText(
            str(ws.rejected / "rejected"), file_name_suffix=".jsonl", num_shards=shards
        )
    )


def clear_outputs(ws: workspace.Workspace) -> None:
    """Remove the previous run's outputs so that no stale shard survives beside new ones."""
    for folder in (ws.docs, ws.items, ws.interactions, ws.rejected):
        remove_tree(folder)
        folder.mkdir(parents=True, exist_ok=True)
    ws.ingest_stats.unlink(missing_ok=True)
