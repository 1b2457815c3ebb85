"""Shared plumbing of the benchmark scripts: machine facts, tables, results files.

Every benchmark prints a table and writes `benchmarks/results/<name>.json` (with the commit, date
and core count) and a Markdown copy. Benchmarks report medians and ratios; they never assert a
timing.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """Where and when a result was measured."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=REPO,
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "commit": commit + ("+dirty" if dirty else ""),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def median_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, list[float]]:
    """Median wall time of `fn()` over `repeats` runs, and every run's time."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def portable(value: Any) -> Any:
    """`value` with every absolute path written as one that reads the same on any machine:
    relative to the repository, `../shared/...` for the shared data, `<tmp>/...` for scratch."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    path = Path(value)
    for root, shown in ((REPO.parent / "shared", "../shared"), (REPO, "."),
                        (Path(tempfile.gettempdir()), "<tmp>")):
        if path.is_relative_to(root):
            return str(Path(shown, path.relative_to(root)))
    return value


def write_results(name: str, result: dict[str, Any], markdown: str) -> Path:
    """Write `results/<name>.json` and `results/<name>.md`; return the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = portable({"benchmark": name, **machine(), **result})
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    header = (f"# {name}\n\nMeasured {result['date']} on {result['cores']} cores, commit "
              f"{result['commit']}.\n\n")
    (RESULTS / f"{name}.md").write_text(header + markdown + "\n")
    return path
