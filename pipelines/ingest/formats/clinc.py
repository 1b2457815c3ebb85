"""CLINC150 intent data (data_full.json: splits of [text, intent] pairs)."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
