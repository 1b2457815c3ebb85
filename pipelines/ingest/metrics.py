"""Beam counters of the ingest job: totals and per-source breakdowns that stats.json reports."""

from __future__ import annotations

from typing import Any

from apache_beam.metrics import Metrics

# Totals live in NAMESPACE; per-source counters are named "<stat>|<source>" in SOURCE_NAMESPACE.
NAMESPACE = "opinionrec.ingest"
SOURCE_NAMESPACE = "opinionrec.ingest.source"
COUNTED_STATS = ("read", "written", "rejected", "deduplicated")


class Counters:
    """Beam counters for totals ("read") and per source ("read|<source>"), created once each."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Any] = {}

    def _counter(self, namespace: str, name: str) -> Any:
        key = (namespace, name)
        if key not in self._cache:
            self._cache[key] = Metrics.counter(namespace, name)
        return self._cache[key]

    def inc(self, stat: str, source: str | None = None, n: int = 1) -> None:
        self._counter(NAMESPACE, stat).inc(n)
        if source is not None:
            self._counter(SOURCE_NAMESPACE, f"{stat}|{source}").inc(n)
