"""Hu & Liu (2004) annotated customer reviews: feature[+n]##sentence lines."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
