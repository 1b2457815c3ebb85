"""Writing the ingest outputs: Parquet, docs as TFRecord of tf.train.Example, rejected JSON lines."""

from __future__ import annotations

import json
import os
import shutil
import zlib
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam

from pipelines import workspace
from pipelines.ingest.metrics import Counters
from pipelines.records import DOC_SCHEMA, INTERACTION_SCHEMA, ITEM_SCHEMA, document_to_example


class ToExampleFn(beam.DoFn):
    """Document -> (shard, serialized tf.train.Example): bytes are cheap to shuffle, dicts not."""

    def __init__(self, num_shards: int) -> None:
        self._num_shards = num_shards

    def setup(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF's first import
        import tensorflow  # noqa: F401  heavy: imported once per worker, only for TFRecords

    def process(self, doc: Mapping[str, Any]) -> Iterator[tuple[int, bytes]]:
        shard = zlib.crc32(doc["id"].encode("utf-8")) % self._num_shards
        yield shard, document_to_example(doc).SerializeToString()


class WriteTFRecordShardFn(beam.DoFn):
    """(shard, serialized examples) -> `<prefix>-SSSSS-of-NNNNN.tfrecord`, via tf.io.

    Beam's WriteToTFRecord needs a crc32c package (google-crc32c, crcmod or snappy) that the stack
    does not pin; TensorFlow's writer has its own. A retried shard rewrites the same file. Empty
    values are the placeholders that make every shard exist.
    """

    def __init__(self, prefix: str, num_shards: int) -> None:
        self._prefix = prefix
        self._num_shards = num_shards
        self._counters: Counters | None = None

    def setup(self) -> None:
        self._counters = Counters()

    def process(self, element: tuple[int, Iterable[bytes]]) -> Iterator[str]:
        import tensorflow as tf

        shard, examples = element
        path = f"{self._prefix}-{shard:05d}-of-{self._num_shards:05d}.tfrecord"
        written = 0
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples:
                if example:
                    writer.write(example)
                    written += 1
        self._counters.inc("rows.docs_tfrecord", n=written)
        yield path


class WriteDocsTFRecord(beam.PTransform):
    """Docs -> `num_shards` TFRecord files of tf.train.Example (empty shards are written too)."""

    def __init__(self, prefix: str, num_shards: int) -> None:
        super().__init__()
        self._prefix = prefix
        self._num_shards = max(1, num_shards)

    def expand(self, docs: beam.PCollection) -> beam.PCollection:
        n = self._num_shards
        examples = docs | "To tf.train.Example" >> beam.ParDo(ToExampleFn(n))
        placeholders = docs.pipeline | "Every shard" >> beam.Create([(s, b"") for s in range(n)])
        return (
            (examples, placeholders)
            | "With placeholders" >> beam.Flatten()
            | "Group shards" >> beam.GroupByKey()
            | "Write shards" >> beam.ParDo(WriteTFRecordShardFn(self._prefix, n))
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
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    ws.ingest_stats.unlink(missing_ok=True)
