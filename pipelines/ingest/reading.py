"""Reading inputs as raw records with their source positions, whatever the format."""

from __future__ import annotations

from typing import Iterator, Sequence

import apache_beam as beam

from pipelines.ingest.formats import REGISTRY
from pipelines.ingest.metrics import CountingDoFn

BOM = b"\xef\xbb\xbf"


class ReadRecordsFn(CountingDoFn):
    """Input path -> (path, source_position, raw bytes, member) per record, counting "read".

    The format's `split` opens the input (through FileSystems: any installed scheme, compression by
    extension) and yields its records in order. A leading BOM is dropped, a header record (if the
    format has a test for one) is skipped, blank records are counted as "blank_lines"; the others
    are numbered 0, 1, 2, ... in file order.
    """

    def __init__(self, format_name: str) -> None:
        self._format_name = format_name

    def process(self, path: str) -> Iterator[tuple[str, int, bytes, str | None]]:
        fmt = REGISTRY[self._format_name]
        position = 0
        first = True
        for record in fmt.split(path):
            raw, member = record if isinstance(record, tuple) else (record, None)
            if first:
                first = False
                raw = raw.removeprefix(BOM)
                if fmt.is_header is not None and fmt.is_header(raw):
                    continue
            if not raw.strip():
                self.counters.inc("blank_lines", path)
                continue
            self.counters.inc("read", path)
            yield path, position, raw, member
            position += 1


class ReadRecords(beam.PTransform):
    """PBegin -> (source, position, raw bytes, member) for every record of `paths`, reshuffled.

    One DoFn call reads a whole input (inputs are not split); the Reshuffle spreads the records so
    that parsing runs in parallel on runners with several workers. `reshuffle=False` skips it where
    nothing runs in parallel (the in-memory DirectRunner), which saves a serialisation round trip.
    """

    def __init__(self, paths: Sequence[str], format_name: str, reshuffle: bool = True) -> None:
        super().__init__()
        self._paths = list(paths)
        self._format_name = format_name
        self._reshuffle = reshuffle

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        records = (
            pbegin
            | "Paths" >> beam.Create(self._paths)
            | "Read records" >> beam.ParDo(ReadRecordsFn(self._format_name))
        )
        return records | "Reshuffle" >> beam.Reshuffle() if self._reshuffle else records
