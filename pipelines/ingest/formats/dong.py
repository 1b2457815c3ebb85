"""Dong et al. (2014) Twitter target-dependent sentiment .raw files (3 lines per record)."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
