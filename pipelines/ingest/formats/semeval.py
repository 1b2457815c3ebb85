"""SemEval ABSA XML: 2014 aspectTerms and 2015/16 Opinions, one labelled document per sentence."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
