"""Inputs of the ingest job: expanding `--input` patterns and detecting each file's format."""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
from pathlib import Path
from typing import Sequence

from apache_beam.io.filesystems import FileSystems

from pipelines.ingest.formats import REGISTRY, open_input

log = logging.getLogger("opinionrec")


class IngestError(Exception):
    """A problem with the inputs or options, found before the pipeline starts."""


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file, its format and the prefix of its document ids."""

    path: str
    format: str
    id_prefix: str


def _strip_compression(name: str) -> str:
    for suffix in (".gz", ".bz2", ".zst", ".deflate", ".lzma", ".xz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_head(path: str, max_lines: int = 5) -> list[bytes]:
    """The first `max_lines` non-blank lines of a (possibly compressed) file, newlines removed."""
    lines: list[bytes] = []
    with open_input(path) as handle:
        while len(lines) < max_lines:
            line = handle.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf")
            if line.strip():
                lines.append(line)
    return lines


def detect_format(path: str) -> str | None:
    """The name of the first registered format that claims `path`, or None."""
    if "://" not in path and os.path.isdir(path):
        return next((f.name for f in REGISTRY.values()
                     if f.detect_folder is not None and f.detect_folder(path)), None)
    name = _strip_compression(posixpath.basename(path).lower())
    head = read_head(path)
    return next((f.name for f in REGISTRY.values() if f.detect(name, head)), None)


def _expand(pattern: str) -> tuple[list[str], bool]:
    """Files named by `pattern` (a path, a glob or a local folder); True if from a folder."""
    if "://" not in pattern and os.path.isdir(pattern):
        if detect_format(pattern) is not None:  # a folder that is one input (one doc per file)
            return [pattern.rstrip("/")], False
        files = sorted(
            os.path.join(pattern, name)
            for name in os.listdir(pattern)
            if not name.startswith((".", "_")) and os.path.isfile(os.path.join(pattern, name))
        )
        return files, True
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise IngestError(f"No input file matches {pattern!r}.")
    return sorted(m.path for m in matches), False


def id_prefixes(paths: Sequence[str]) -> dict[str, str]:
    """Document-id prefix per input: the file name, or the whole path if two names collide."""
    names = [posixpath.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return dict(zip(paths, names))
    return {p: p for p in paths}


def resolve_inputs(
    patterns: Sequence[str] | None, forced_format: str | None, default_dir: Path
) -> list[InputFile]:
    """Expand `--input` (default: every ingestible file in `default_dir`) and detect formats.

    A file the user named explicitly must be in a known format; files found by listing a folder are
    skipped (with a log line) when they are not, so `raw/truth.json` and notes can sit beside data.
    """
    if not patterns:
        if not default_dir.is_dir():
            raise IngestError(
                f"No --input given and {default_dir} does not exist: run `opinionrec "
                "sample-data` first or pass --input PATH."
            )
        patterns = [str(default_dir)]
    found: list[tuple[str, str]] = []
    for pattern in patterns:
        files, from_folder = _expand(pattern)
        for path in files:
            forced = forced_format if forced_format != "auto" else None
            fmt = forced or detect_format(path)
            if fmt is None and from_folder:
                log.info("ingest: skipping %s (not a known input format)", path)
                continue
            if fmt is None:
                raise IngestError(
                    f"Cannot tell the format of {path}. Supported formats:\n"
                    + "\n".join(f"  {f.name}: {f.description}" for f in REGISTRY.values())
                    + "\nName the file accordingly or pass --format."
                )
            found.append((path, fmt))
    if not found:
        raise IngestError(f"No ingestible input found in {', '.join(patterns)}.")
    paths = list(dict.fromkeys(path for path, _ in found))
    prefixes = id_prefixes(paths)
    formats = dict(found)
    return [InputFile(path, formats[path], prefixes[path]) for path in paths]
