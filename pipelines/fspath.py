"""Paths on any filesystem Beam has installed (gs://, s3://, hdfs://, ...), with the small part of
the `pathlib.Path` interface the workspace and the Beam stages use.

`as_path("gs://bucket/ws")` gives a `RemotePath`; a plain path gives a `pathlib.Path`, so local
workspaces keep using pathlib. Object stores have no directories: `mkdir` does nothing, a "folder"
exists when some object lies under it, and removing one deletes the objects under its prefix.
"""

from __future__ import annotations

import io
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator


def _filesystems():
    """Beam's FileSystems, imported on first use: importing Beam configures the root logger, and
    every command (serve, --help) would pay for it."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _uncompressed():
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def is_url(path: str | Path) -> bool:
    """True for "scheme://..." paths (a Beam filesystem other than the local one)."""
    return "://" in str(path)


def as_path(path: str | Path) -> Path | RemotePath:
    """`RemotePath` for a URL, `pathlib.Path` otherwise."""
    if isinstance(path, (Path, RemotePath)):
        return path
    return RemotePath(path.rstrip("/")) if is_url(path) else Path(path)


@dataclass(frozen=True)
class Stat:
    st_size: int
    st_mtime_ns: int


def _stat(metadata) -> Stat:
    seconds = getattr(metadata, "last_updated_in_seconds", 0) or 0
    return Stat(metadata.size_in_bytes, int(seconds * 1e9))


@dataclass(frozen=True)
class RemotePath:
    """A file or "folder" (object prefix) on a Beam filesystem, named by its URL."""

    url: str

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:  # lets pyarrow and friends take it where they accept URLs
        return self.url

    def __truediv__(self, part: str) -> RemotePath:
        return RemotePath(f"{self.url}/{str(part).strip('/')}")

    @property
    def name(self) -> str:
        return posixpath.basename(self.url)

    @property
    def parent(self) -> RemotePath:
        return RemotePath(posixpath.dirname(self.url))

    def _metadata(self, pattern: str) -> list:
        result = _filesystems().match([pattern])[0]
        return list(result.metadata_list)

    def is_file(self) -> bool:
        return _filesystems().exists(self.url) and not self.is_dir()

    def is_dir(self) -> bool:
        return bool(self._metadata(f"{self.url}/**"))

    def exists(self) -> bool:
        return _filesystems().exists(self.url) or self.is_dir()

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Files matching `pattern` under this folder (Beam's match syntax: *, ?, **)."""
        for metadata in sorted(self._metadata(f"{self.url}/{pattern}"), key=lambda m: m.path):
            yield RemotePath(metadata.path)

    def rglob(self, pattern: str) -> Iterator[RemotePath]:
        return self.glob(f"**/{pattern}" if pattern != "*" else "**")

    def stat(self) -> Stat:
        metadata = self._metadata(self.url)
        if not metadata:
            raise FileNotFoundError(self.url)
        return _stat(metadata[0])

    def listing(self) -> list[tuple[RemotePath, Stat]]:
        """Every file under this folder (or this file) with its size and time, from one listing
        (two for a single file) instead of a request per file."""
        metadata = self._metadata(f"{self.url}/**") or self._metadata(self.url)
        return [(RemotePath(m.path), _stat(m)) for m in sorted(metadata, key=lambda m: m.path)]

    def relative_to(self, other: RemotePath) -> str:
        return self.url[len(other.url):].lstrip("/")

    def open(self, mode: str = "rb") -> IO:
        if mode == "rb":
            return _filesystems().open(self.url, compression_type=_uncompressed())
        if mode == "wb":
            return _filesystems().create(self.url, compression_type=_uncompressed())
        raise ValueError(f"RemotePath opens files in 'rb' or 'wb' mode. Received: {mode!r}")

    def read_bytes(self) -> bytes:
        with self.open("rb") as handle:
            return handle.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        with self.open("wb") as handle:
            handle.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores need no folders; a filesystem with real ones gets them."""
        try:
            _filesystems().mkdirs(self.url)
        except OSError:
            pass  # exists already, or the store has no folders

    def unlink(self, missing_ok: bool = False) -> None:
        if not _filesystems().exists(self.url):
            if missing_ok:
                return
            raise FileNotFoundError(self.url)
        _filesystems().delete([self.url])


def remove_tree(path: Path | RemotePath) -> None:
    """Delete a folder and everything under it (nothing happens when it is missing)."""
    if isinstance(path, RemotePath):
        files = [p.url for p in path.glob("**")]
        if files:
            _filesystems().delete(files)
        return
    shutil.rmtree(path, ignore_errors=True)


def open_binary(path: Path | RemotePath) -> IO[bytes]:
    """A readable binary file object for either kind of path (pyarrow reads from it)."""
    if isinstance(path, RemotePath):
        return io.BytesIO(path.read_bytes())
    return open(path, "rb")
