"""A Beam filesystem for "diskfs://" URLs kept under a local folder, for the remote-workspace tests.

It routes every call through Beam's `FileSystems` by scheme, exactly as gs:// or s3:// would be, so
the code under test cannot fall back on pathlib or local paths; the bytes just live on this disk.
"""

from __future__ import annotations

import os
import posixpath

from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.localfilesystem import LocalFileSystem

PREFIX = "diskfs://"


class DiskFileSystem(FileSystem):
    """`diskfs://a/b` is the file `<DiskFileSystem.root>/a/b`."""

    root = "/tmp/diskfs"

    def __init__(self, pipeline_options) -> None:
        super().__init__(pipeline_options)
        self._disk = LocalFileSystem(pipeline_options)

    @classmethod
    def scheme(cls) -> str:
        return "diskfs"

    def _local(self, url: str) -> str:
        return os.path.join(self.root, url[len(PREFIX):].lstrip("/"))

    def _url(self, path: str) -> str:
        return PREFIX + os.path.relpath(path, self.root)

    def _meta(self, metadata: FileMetadata) -> FileMetadata:
        return FileMetadata(self._url(metadata.path), metadata.size_in_bytes,
                            metadata.last_updated_in_seconds)

    def join(self, basepath, *paths):
        return posixpath.join(basepath, *(p.lstrip("/") for p in paths))

    def split(self, path):
        head, tail = posixpath.split(path[len(PREFIX):])
        return PREFIX + head, tail

    def mkdirs(self, path):
        os.makedirs(self._local(path), exist_ok=True)

    def has_dirs(self):
        return True

    def _list(self, dir_or_prefix):
        for metadata in self._disk._list(self._local(dir_or_prefix)):
            yield self._meta(metadata)

    def create(self, path, mime_type="application/octet-stream",
               compression_type=CompressionTypes.AUTO):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return self._disk.create(self._local(path), mime_type, compression_type)

    def open(self, path, mime_type="application/octet-stream",
             compression_type=CompressionTypes.AUTO):
        return self._disk.open(self._local(path), mime_type, compression_type)

    def copy(self, source_file_names, destination_file_names):
        self._disk.copy([self._local(p) for p in source_file_names],
                        [self._local(p) for p in destination_file_names])

    def rename(self, source_file_names, destination_file_names):
        self._disk.rename([self._local(p) for p in source_file_names],
                          [self._local(p) for p in destination_file_names])

    def exists(self, path):
        return self._disk.exists(self._local(path))

    def size(self, path):
        return self._disk.size(self._local(path))

    def last_updated(self, path):
        return self._disk.last_updated(self._local(path))

    def checksum(self, path):
        return self._disk.checksum(self._local(path))

    def metadata(self, path):
        return self._meta(self._disk.metadata(self._local(path)))

    def delete(self, paths):
        self._disk.delete([self._local(p) for p in paths])
