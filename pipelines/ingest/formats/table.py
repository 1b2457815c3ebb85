"""Tables with a column mapping: CSV, TSV, JSON lines and Parquet (also inside .zip)."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
