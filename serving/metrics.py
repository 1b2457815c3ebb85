"""Request counts and latencies in Prometheus' text format, under TF Serving's metric names.

TF Serving (with `prometheus_config { enable: true }`) exports, among others,
`:tensorflow:serving:request_count{model_name, status}` and the histogram
`:tensorflow:serving:request_latency{model_name, API, entrypoint}` in microseconds with
exponential buckets (10 us x 1.8^i); dashboards and alerts written for it read these too.
This server adds `:opinionrec:serving:request_latency_by_signature` (per version and
signature). `GET /monitoring/prometheus/metrics` serves them.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

METRICS_PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# TF Serving's request_latency buckets: Exponential(10, 1.8, 33), in microseconds.
LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))

_REQUEST_COUNT = ":tensorflow:serving:request_count"
_REQUEST_LATENCY = ":tensorflow:serving:request_latency"
_BY_SIGNATURE = ":opinionrec:serving:request_latency_by_signature"


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_US) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_US, value)] += 1
        self.sum += value
        self.count += 1


class ServingMetrics:
    """Thread-safe counters and latency histograms of the requests a server answered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str, str], _Histogram] = defaultdict(_Histogram)
        self._by_signature: dict[tuple[str, str, str], _Histogram] = defaultdict(_Histogram)

    def observe(self, model: str, api: str, entrypoint: str, status: str, seconds: float,
                version: int | None = None, signature: str = "") -> None:
        """One request to `model` (`api`: predict, classify, ...; `entrypoint`: REST or GRPC)
        that ended with canonical `status` ("OK", "INVALID_ARGUMENT", ...) after `seconds`."""
        micros = seconds * 1e6
        with self._lock:
            self._counts[(model, status)] += 1
            self._latency[(model, api, entrypoint)].observe(micros)
            if version is not None:
                self._by_signature[(model, str(version), signature)].observe(micros)

    def exposition(self) -> str:
        """The Prometheus text format (version 0.0.4) of every metric."""
        with self._lock:
            counts = dict(self._counts)
            latency = {k: _copy(h) for k, h in self._latency.items()}
            by_signature = {k: _copy(h) for k, h in self._by_signature.items()}
        lines = [f"# TYPE {_REQUEST_COUNT} counter"]
        for (model, status), count in sorted(counts.items()):
            lines.append(f"{_REQUEST_COUNT}{_labels(model_name=model, status=status)} {count}")
        lines.append(f"# TYPE {_REQUEST_LATENCY} histogram")
        for (model, api, entrypoint), histogram in sorted(latency.items()):
            lines += _histogram_lines(_REQUEST_LATENCY, histogram,
                                      model_name=model, API=api, entrypoint=entrypoint)
        lines.append(f"# TYPE {_BY_SIGNATURE} histogram")
        for (model, version, signature), histogram in sorted(by_signature.items()):
            lines += _histogram_lines(_BY_SIGNATURE, histogram, model_name=model,
                                      model_version=version, signature_name=signature)
        return "\n".join(lines) + "\n"


def _copy(histogram: _Histogram) -> _Histogram:
    copy = _Histogram()
    copy.buckets, copy.sum, copy.count = list(histogram.buckets), histogram.sum, histogram.count
    return copy


def _histogram_lines(name: str, histogram: _Histogram, **labels: str) -> list[str]:
    lines, cumulative = [], 0
    for bound, count in zip([*LATENCY_BUCKETS_US, float("inf")], histogram.buckets):
        cumulative += count
        le = "+Inf" if bound == float("inf") else f"{bound:g}"
        lines.append(f"{name}_bucket{_labels(**labels, le=le)} {cumulative}")
    lines.append(f"{name}_sum{_labels(**labels)} {histogram.sum:g}")
    lines.append(f"{name}_count{_labels(**labels)} {histogram.count}")
    return lines


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"
