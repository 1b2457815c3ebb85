"""What an input format is: how to recognise a file, split it into raw records, parse a record."""

from __future__ import annotations

import dataclasses
from typing import IO, Callable, Iterator, Sequence

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# A raw record: its bytes, and optionally where inside the source it came from (a file inside a
# folder, a split of a JSON file) for parsers that need it.
RawRecord = bytes | tuple[bytes, str]


def open_input(path: str) -> IO[bytes]:
    """Open a file on any Beam filesystem, decompressing by extension (.gz, .bz2, ...)."""
    return FileSystems.open(path, compression_type=CompressionTypes.AUTO)


def split_lines(path: str) -> Iterator[RawRecord]:
    """One record per line (newline removed); blank lines are yielded and counted as blank."""
    with open_input(path) as handle:  # Beam's CompressedFile reads lines, but is not iterable
        while line := handle.readline():
            yield line.rstrip(b"\n").removesuffix(b"\r")


@dataclasses.dataclass(frozen=True)
class InputFormat:
    """An input format of `opinionrec ingest`.

    Attributes:
        name: the `--format` value.
        description: one line for `--help` and error messages.
        parser: the `ParseFn` subclass that turns one raw record into an output row.
        output: where parsed rows go: "docs", "items" or "behaviors" (exploded to interactions).
        detect: (file name lower-cased without compression suffix, first non-blank lines) -> bool.
        split: path -> raw records in file order (default: lines).
        is_header: the first record is a header to skip (not counted).
        detect_folder: for formats whose input is a folder (one document per file): path -> bool.
    """

    name: str
    description: str
    parser: type
    output: str
    detect: Callable[[str, Sequence[bytes]], bool]
    split: Callable[[str], Iterator[RawRecord]] = split_lines
    is_header: Callable[[bytes], bool] | None = None
    detect_folder: Callable[[str], bool] | None = None
