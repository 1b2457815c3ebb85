"""stats.json: the four reconciling counts (read = written + rejected + deduplicated) and their
breakdowns, taken from the job's Beam metrics and checked against the files on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from pipelines import beam_counts, workspace
from pipelines.beam_counts import NotReconciled  # noqa: F401 (re-exported for the command)
from pipelines.fspath import RemotePath, open_binary
from pipelines.ingest.inputs import InputFile
from pipelines.ingest.metrics import COUNTED_STATS, NAMESPACE, SOURCE_NAMESPACE


def counter_values(result: Any) -> dict[tuple[str, str], int]:
    """{(namespace, name): value} of the ingest counters (totals and per source)."""
    return beam_counts.counter_values(result, [NAMESPACE, SOURCE_NAMESPACE])


def build_stats(
    counters: Mapping[tuple[str, str], int], inputs: Sequence[InputFile], runner: str, wall_s: float
) -> dict[str, Any]:
    """stats.json: the four reconciling counts on top, then their breakdowns."""
    total = {stat: counters.get((NAMESPACE, stat), 0) for stat in COUNTED_STATS}
    by_reason = {
        name.removeprefix("rejected."): value
        for (ns, name), value in sorted(counters.items())
        if ns == NAMESPACE and name.startswith("rejected.")
    }
    by_source = {}
    for spec in inputs:
        entry: dict[str, Any] = {"format": spec.format}
        for stat in (*COUNTED_STATS, "blank_lines"):
            entry[stat] = counters.get((SOURCE_NAMESPACE, f"{stat}|{spec.path}"), 0)
        entry["rejected_by_reason"] = {
            name.split("|", 1)[0].removeprefix("rejected."): value
            for (ns, name), value in sorted(counters.items())
            if ns == SOURCE_NAMESPACE and name.startswith("rejected.")
            and name.split("|", 1)[1] == spec.path
        }
        by_source[spec.path] = entry
    steps = {
        name.removeprefix("step."): value
        for (ns, name), value in sorted(counters.items())
        if ns == NAMESPACE and name.startswith("step.")
    }
    return {
        **total,
        "rejected_by_reason": by_reason,
        "deduplicated_by_kind": {
            kind: counters.get((NAMESPACE, f"deduplicated.{kind}"), 0) for kind in ("exact", "near")
        },
        "steps": steps,
        "by_output": {
            "docs": counters.get((NAMESPACE, "rows.docs"), 0),
            "items": counters.get((NAMESPACE, "rows.items"), 0),
            "interactions": counters.get((NAMESPACE, "rows.interactions"), 0),
            "behavior_records": counters.get((NAMESPACE, "rows.behaviors"), 0),
            "docs_tfrecord": counters.get((NAMESPACE, "rows.docs_tfrecord"), 0),
        },
        "by_source": by_source,
        "runner": runner,
        "wall_s": round(wall_s, 2),
    }


def parquet_rows(folder: Path | RemotePath) -> int:
    """Rows in a folder's Parquet shards, from their footers."""
    import pyarrow.parquet as pq

    rows = 0
    for path in sorted(folder.glob("*.parquet"), key=str):
        with open_binary(path) as handle:
            rows += pq.ParquetFile(handle).metadata.num_rows
    return rows


def _jsonl_rows(folder: Path | RemotePath) -> int:
    count = 0
    for path in sorted(folder.glob("*.jsonl"), key=str):
        with open_binary(path) as handle:
            count += sum(1 for line in handle if line.strip())
    return count


def reconcile(stats: Mapping[str, Any], ws: workspace.Workspace | None = None) -> list[str]:
    """Everything that does not add up (empty when the run reconciles)."""
    problems = []

    def check(label: str, counts: Mapping[str, Any]) -> None:
        rhs = counts["written"] + counts["rejected"] + counts["deduplicated"]
        if counts["read"] != rhs:
            problems.append(
                f"{label}: read {counts['read']} != written {counts['written']} + rejected "
                f"{counts['rejected']} + deduplicated {counts['deduplicated']} (= {rhs})"
            )

    check("total", stats)
    for source, counts in stats["by_source"].items():
        check(source, counts)
    for stat in COUNTED_STATS:
        summed = sum(c[stat] for c in stats["by_source"].values())
        if summed != stats[stat]:
            problems.append(f"{stat}: total {stats[stat]} != sum over sources {summed}")
    if sum(stats["rejected_by_reason"].values()) != stats["rejected"]:
        problems.append("rejected_by_reason does not sum to rejected")
    by_output = stats["by_output"]
    if by_output["docs"] + by_output["items"] + by_output["behavior_records"] != stats["written"]:
        problems.append("written != docs + items + behaviour records")
    if by_output["docs_tfrecord"] != by_output["docs"]:
        problems.append(
            f"TFRecord docs {by_output['docs_tfrecord']} != Parquet docs {by_output['docs']}"
        )
    if ws is not None:
        on_disk = {
            "docs": parquet_rows(ws.docs),
            "items": parquet_rows(ws.items),
            "interactions": parquet_rows(ws.interactions),
        }
        for name, rows in on_disk.items():
            if rows != by_output[name]:
                problems.append(f"{name}: {rows} rows on disk, counters say {by_output[name]}")
        if _jsonl_rows(ws.rejected) != stats["rejected"]:
            problems.append("rejected/ rows on disk differ from the rejected counter")
    return problems
