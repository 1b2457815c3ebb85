"""The composite `Ingest` transform: read, parse, de-duplicate and count every input."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterator, Sequence

import apache_beam as beam

from pipelines.ingest.dedup import (
    Deduplicate,
    DeduplicateDocs,
    behavior_dedup_key,
    item_dedup_key,
)
from pipelines.ingest.formats import REGISTRY
from pipelines.ingest.formats.mind import explode_behavior
from pipelines.ingest.inputs import InputFile
from pipelines.ingest.metrics import CountingDoFn
from pipelines.ingest.parsing import REJECTED_TAG, ParseOptions
from pipelines.ingest.reading import ReadRecords

OUTPUTS = ("docs", "items", "interactions")


class CountFn(CountingDoFn):
    """Pass-through that counts rows of an output and, optionally, records written per source."""

    def __init__(self, output: str, count_written: bool = True) -> None:
        self._output = output
        self._count_written = count_written

    def process(self, record: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if self._count_written:
            self.counters.inc("written", record["source"])
        self.counters.inc(f"rows.{self._output}")
        yield record


# === The composite transform ===


class Ingest(beam.PTransform):
    """PBegin -> {"docs", "items", "interactions", "rejected"} PCollections for `inputs`.

    One labelled Read/Parse pair per format present; records are de-duplicated per output and
    counted (Beam metrics in NAMESPACE / SOURCE_NAMESPACE) so that the run's stats reconcile.
    """

    def __init__(self, inputs: Sequence[InputFile], options: ParseOptions | None = None,
                 near_duplicates: float = 0.0, reshuffle: bool = True) -> None:
        super().__init__()
        self._reshuffle = reshuffle  # spread records over workers after reading (see ReadRecords)
        self._inputs = list(inputs)
        self._options = options or ParseOptions()
        # Jaccard threshold of near-duplicate removal (0 = off); see dedup.DeduplicateDocs.
        self._near_duplicates = near_duplicates

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        prefixes = {i.path: i.id_prefix for i in self._inputs}
        order = {i.path: n for n, i in enumerate(self._inputs)}
        parsed: dict[str, list[beam.PCollection]] = defaultdict(list)
        rejected: list[beam.PCollection] = []
        for fmt in REGISTRY.values():
            paths = [i.path for i in self._inputs if i.format == fmt.name]
            if not paths:
                continue
            records = pbegin | f"Read {fmt.name}" >> ReadRecords(paths, fmt.name, self._reshuffle)
            parser = fmt.parser(prefixes, self._options)
            outputs = records | f"Parse {fmt.name}" >> beam.ParDo(parser).with_outputs(
                REJECTED_TAG, main="parsed"
            )
            parsed[fmt.output].append(outputs.parsed)
            rejected.append(outputs[REJECTED_TAG])

        def gather(name: str, pcolls: list[beam.PCollection]) -> beam.PCollection:
            if not pcolls:
                return pbegin | f"No {name}" >> beam.Create([])
            return pcolls | f"Gather {name}" >> beam.Flatten()

        docs = (
            gather("docs", parsed["docs"])
            | "Deduplicate docs" >> DeduplicateDocs(order, self._near_duplicates)
            | "Count docs" >> beam.ParDo(CountFn("docs"))
        )
        items = (
            gather("items", parsed["items"])
            | "Deduplicate items" >> Deduplicate(item_dedup_key, order)
            | "Count items" >> beam.ParDo(CountFn("items"))
        )
        interactions = (
            gather("behaviors", parsed["behaviors"])
            | "Deduplicate behaviors" >> Deduplicate(behavior_dedup_key, order)
            | "Count behaviors" >> beam.ParDo(CountFn("behaviors"))
            | "Explode behaviors" >> beam.FlatMap(explode_behavior)
            | "Count interactions" >> beam.ParDo(CountFn("interactions", count_written=False))
        )
        return {
            "docs": docs,
            "items": items,
            "interactions": interactions,
            "rejected": gather("rejected", rejected),
        }
