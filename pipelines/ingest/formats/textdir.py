"""Folders of plain-text documents, one per file, labelled by their folder (BBC layout)."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
