"""Reading a finished Beam job's counters, and the error a job raises when they do not add up."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


class NotReconciled(Exception):
    """A run's counts do not add up (a bug, never a bad record): the stage stays stale."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def counter_values(result: Any, namespaces: Iterable[str]) -> dict[tuple[str, str], int]:
    """{(namespace, name): value} of the job's counters in `namespaces`, summed over steps
    (committed values where the runner reports them, attempted otherwise)."""
    from apache_beam.metrics.metric import MetricsFilter

    values: dict[tuple[str, str], int] = defaultdict(int)
    query = result.metrics().query(MetricsFilter().with_namespaces(list(namespaces)))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        values[(counter.key.metric.namespace, counter.key.metric.name)] += int(value or 0)
    return dict(values)


def distribution_sums(result: Any, name: str) -> tuple[int, int]:
    """(sum, count) of every distribution called `name` in the job, over steps and namespaces:
    e.g. RunInference's `inference_batch_latency_micro_secs` (the time spent in model calls)."""
    from apache_beam.metrics.metric import MetricsFilter

    total = count = 0
    for distribution in result.metrics().query(MetricsFilter().with_name(name))["distributions"]:
        value = distribution.committed or distribution.attempted
        if value is not None:
            total += int(value.sum)
            count += int(value.count)
    return total, count
