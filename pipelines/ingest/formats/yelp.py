"""Yelp review JSON lines (review_id, user_id, business_id, stars, text, date)."""

from __future__ import annotations

from pipelines.ingest.formats.base import InputFormat

FORMATS: list[InputFormat] = []
