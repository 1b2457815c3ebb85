"""Folders of plain-text documents, one per file, the folder name the label (BBC News layout).

`<root>/<label>/<name>.txt` (or `<root>/<one folder>/<label>/<name>.txt`, e.g. the BBC download
with its README and checksums beside `bbc/`): every `.txt` file in a leaf folder is one record,
in sorted path order (EVAL.md's `i`), with `member` its path under the root. The first non-empty
line is the title, the rest the text (the title again when nothing follows it); `label` is the
leaf folder's name. Files are UTF-8, or Latin-1 when they are not (BBC's sport/199.txt has a
Latin-1 pound sign), counted as step `decode.latin1`. Documents are kind "labelled": a topic
classification set whose every file counts.
"""

from __future__ import annotations

import os
import posixpath
from typing import Iterator, Sequence

from pipelines.ingest.formats.base import InputFormat, RawRecord
from pipelines.ingest.parsing import ParseFn, Rejected, make_document
from pipelines.records import REJECT_MISSING_FIELD, Document, clean_text

TEXTDIR = "textdir"
SUFFIX = ".txt"


def _visible(names: Sequence[str]) -> list[str]:
    return [n for n in names if not n.startswith((".", "_"))]


def _label_folders(root: str) -> list[str] | None:
    """The label folders of a text-document root, or None when `root` is not one.

    A root's sub-folders must all be leaves holding only `.txt` files (at least one); files
    beside them (a README) are allowed. A root with a single sub-folder that is such a root
    (the BBC download: bbc/ beside SOURCE.md) counts too.
    """
    try:
        entries = _visible(sorted(os.listdir(root)))
    except OSError:
        return None
    folders = [e for e in entries if os.path.isdir(os.path.join(root, e))]
    if not folders:
        return None
    leaves = []
    for folder in folders:
        path = os.path.join(root, folder)
        names = _visible(os.listdir(path))
        if any(os.path.isdir(os.path.join(path, n)) for n in names):
            if len(folders) == 1:
                inner = _label_folders(path)
                return [os.path.join(folder, f) for f in inner] if inner else None
            return None
        if not names or not all(n.lower().endswith(SUFFIX) for n in names):
            return None
        leaves.append(folder)
    return leaves


def is_text_folder(path: str) -> bool:
    return "://" not in path and os.path.isdir(path) and bool(_label_folders(path))


def is_text_file(name: str, head: Sequence[bytes]) -> bool:
    return False  # only whole folders are this format


def document_paths(root: str) -> list[str]:
    """Paths of the documents under `root`, relative to it, sorted."""
    paths = []
    for folder in _label_folders(root) or []:
        for name in _visible(os.listdir(os.path.join(root, folder))):
            paths.append(posixpath.join(folder.replace(os.sep, "/"), name))
    return sorted(paths)


def split_folder(root: str) -> Iterator[RawRecord]:
    """(file bytes, path under the root) per document, in sorted path order."""
    for relative in document_paths(root):
        with open(os.path.join(root, relative), "rb") as handle:
            yield handle.read(), relative


class ParseTextFileFn(ParseFn):
    """A text file -> Document(kind="labelled", title=first line, label=its folder)."""

    def decode(self, raw: bytes) -> str:
        """UTF-8, else Latin-1 (every byte string decodes, so nothing is rejected here)."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.counters.inc("step.decode.latin1")
            return raw.decode("latin-1")

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        if not member:
            raise Rejected(REJECT_MISSING_FIELD, "no file name to take the label from")
        lines = text.lstrip("\ufeff").splitlines()
        body_start = 0
        title = ""
        for n, line in enumerate(lines):
            if line.strip():
                title, body_start = clean_text(line), n + 1
                break
        body = "\n".join(lines[body_start:])
        label = posixpath.basename(posixpath.dirname(member))
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="labelled",
            text=self.clean_body(body if body.strip() else title, member),
            source=source,
            position=position,
            title=title or None,
            label=label,
            labels=[label],
        )


FORMATS = [
    InputFormat(
        name=TEXTDIR,
        description="folder of .txt documents, <label>/<name>.txt (first line = title)",
        parser=ParseTextFileFn,
        output="docs",
        detect=is_text_file,
        split=split_folder,
        detect_folder=is_text_folder,
    ),
]
