"""Ingest throughput: Beam against a bare Python loop of the same per-record functions.

Side by side in one run, on generated Amazon-format reviews:
  - bare loop: the ingest job's own per-record functions (read, parse + clean + PII scrubbing +
    validate, exact and near de-duplication, tf.train.Example encoding and TFRecord framing,
    Parquet writing) in a plain Python loop: the floor that Beam's overhead is measured against;
  - Beam, DirectRunner in memory (the default of `opinionrec ingest`);
  - Beam, DirectRunner multi-processing with 2 workers;
  - the per-stage cost inside Beam (pipelines cut after read, parse, de-duplication, full job);
  - scaling of the in-memory DirectRunner from 10^4 to 10^5 (to 10^6 with --sizes);
  - `pretraining-data` on the documents ingested at the detail size: bare loop of its per-document
    functions (reading the Parquet included), in memory, 2 processes.

    python benchmarks/ingest.py                       # 10^4 and 10^5 reviews, ~5 minutes
    python benchmarks/ingest.py --sizes 10000 100000 1000000   # adds 10^6 (~25 minutes more)

Writes benchmarks/results/ingest.json and ingest.md.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import apache_beam as beam  # noqa: E402

from benchmarks._common import markdown_table, write_results  # noqa: E402
from pipelines import beam_options  # noqa: E402
from pipelines.cli import main as cli_main  # noqa: E402
from pipelines.ingest import (  # noqa: E402
    REJECTED_TAG,
    InputFile,
    ParseOptions,
    ParseReviewFn,
    doc_dedup_key,
    run_pipeline,
)
from pipelines.ingest.dedup import DeduplicateDocs  # noqa: E402
from pipelines.ingest.near_dup import near_duplicate_ids  # noqa: E402
from pipelines.ingest.reading import ReadRecords  # noqa: E402
from pipelines.records import DOC_SCHEMA, document_to_bytes  # noqa: E402
from pipelines.workspace import Workspace  # noqa: E402

log = logging.getLogger("benchmark")
# Near-duplicate removal on (`--near-duplicates 0.9`, the heavier configuration), in the bare loop
# and in Beam alike.
NEAR_DUPLICATES = 0.9


def generate(reviews: int, folder: Path) -> Path:
    """`reviews` generated reviews (Amazon 2018 format, gzipped); returns the file."""
    code = cli_main(["sample-data", "--output", str(folder), "--reviews", str(reviews),
                     "--news", "12", "--impressions", "12", "--seed", "1"])
    if code:
        raise SystemExit(f"sample-data failed with exit code {code}")
    return folder / "reviews.json.gz"


def bare_loop(path: Path, out_dir: Path, near_duplicates: float) -> dict[str, Any]:
    """The job's per-record functions in one Python loop; seconds per stage and documents."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from apache_beam.io.tfrecordio import (
        _TFRecordUtil,  # the framing Beam's TFRecord sink uses
    )

    parser = ParseReviewFn({str(path): path.name}, ParseOptions())
    parser.setup()
    seconds = {"read": 0.0, "parse": 0.0, "deduplicate": 0.0, "write": 0.0}
    clock = time.perf_counter
    start = clock()
    with gzip.open(path, "rb") as handle:
        lines = [line.rstrip(b"\n") for line in handle]
    seconds["read"] = clock() - start

    start = clock()
    docs = []
    for position, raw in enumerate(line for line in lines if line.strip()):
        for out in parser.process((str(path), position, raw)):
            if not isinstance(out, beam.pvalue.TaggedOutput):
                docs.append(out)
    seconds["parse"] = clock() - start

    start = clock()
    first: dict[str, dict] = {}
    for doc in docs:
        first.setdefault(doc_dedup_key(doc), doc)
    kept = list(first.values())
    if near_duplicates:
        near = near_duplicate_ids(kept, near_duplicates, {str(path): 0})
        kept = [doc for doc in kept if doc["id"] not in near]
    seconds["deduplicate"] = clock() - start

    start = clock()
    with open(out_dir / "bare.tfrecord", "wb") as handle:
        for doc in kept:
            _TFRecordUtil.write_record(handle, document_to_bytes(doc))
    table = pa.Table.from_pylist(
        [{name: doc.get(name) for name in DOC_SCHEMA.names} for doc in kept], schema=DOC_SCHEMA)
    pq.write_table(table, out_dir / "bare.parquet")
    seconds["write"] = clock() - start
    return {"records": len(lines), "docs": len(kept), "seconds": seconds,
            "total_s": sum(seconds.values())}


def beam_job(path: Path, ws_dir: Path, beam_args: list[str], near_duplicates: float
             ) -> dict[str, Any]:
    """The real ingest job, as `opinionrec ingest --near-duplicates 0.9` runs it."""
    shutil.rmtree(ws_dir, ignore_errors=True)
    ws = Workspace(ws_dir)
    inputs = [InputFile(str(path), "amazon", path.name)]
    start = time.perf_counter()
    stats = run_pipeline(inputs, ws, beam_options.pipeline_options(beam_args), 1,
                         ParseOptions(), near_duplicates)
    return {"records": stats["read"], "docs": stats["written"],
            "total_s": time.perf_counter() - start}


def beam_prefix(path: Path, stop_after: str) -> float:
    """Seconds of an in-memory pipeline cut after `stop_after` (read, parse or deduplicate)."""
    options = beam_options.pipeline_options([])
    start = time.perf_counter()
    with beam.Pipeline(options=options) as pipeline:
        reshuffle = not beam_options.is_single_process(options)
        records = pipeline | "Read" >> ReadRecords([str(path)], "amazon", reshuffle)
        tail = records
        if stop_after in ("parse", "deduplicate"):
            parsed = records | "Parse" >> beam.ParDo(
                ParseReviewFn({str(path): path.name})).with_outputs(REJECTED_TAG, main="docs")
            tail = parsed.docs
        if stop_after == "deduplicate":
            tail = tail | "Dedup" >> DeduplicateDocs({str(path): 0}, NEAR_DUPLICATES)
        _ = tail | "Count" >> beam.combiners.Count.Globally()
    return time.perf_counter() - start


def _total(counts: int | dict[str, int]) -> int:
    """A count, or the sum of a count per split."""
    return sum(counts.values()) if isinstance(counts, dict) else counts


def pretraining_data(ws_dir: Path, work: Path) -> dict[str, Any]:
    """The pretraining-data job on the ingested docs: bare loop, in memory, 2 processes.

    Needs the SentencePiece model, so `vocab` runs first (not timed).
    """
    from pipelines.pretraining_data import InstanceOptions, run_pretraining_data_bare
    from pipelines.pretraining_data import run_pipeline as run_instances
    from pipelines.records import read_table

    code = cli_main(["vocab", "--workspace", str(ws_dir)])
    if code:
        raise SystemExit(f"vocab failed with exit code {code}")
    ws = Workspace(ws_dir)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    docs = read_table(ws.docs, DOC_SCHEMA).select(
        ["id", "kind", "text", "sentences", "split"]).to_pylist()
    read_s = time.perf_counter() - start
    bare = run_pretraining_data_bare(docs, ws.spm_model, out_dir=work / "bare-instances")
    total = read_s + sum(bare.seconds.values())
    out["bare_loop"] = {"docs": len(docs), "total_s": total,
                        "seconds": {"read": read_s, **bare.seconds},
                        "instances": _total(bare.stats["instances"])}
    for name, args in (("direct_in_memory", []),
                       ("direct_multi_processing_2", ["--direct_running_mode",
                                                      "multi_processing",
                                                      "--direct_num_workers", "2"])):
        start = time.perf_counter()
        stats = run_instances(str(ws.docs / "*.parquet"), ws.spm_model, work / f"inst-{name}",
                              InstanceOptions(), args)
        out[name] = {"docs": stats["documents_read"], "instances": _total(stats["instances"]),
                     "total_s": time.perf_counter() - start}
    for result in out.values():
        result["docs_per_s"] = result["docs"] / result["total_s"]
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: int, work: Path, variants: bool) -> dict[str, Any]:
    data = generate(size, work / f"data-{size}")
    out: dict[str, Any] = {"reviews": size}
    bare = bare_loop(data, work, NEAR_DUPLICATES)
    out["bare_loop"] = {**bare, "docs_per_s": bare["records"] / bare["total_s"]}
    log.info("%d: bare loop %.1f s", size, bare["total_s"])
    runs: dict[str, Callable[[], dict]] = {
        "direct_in_memory": lambda: beam_job(data, work / "ws", [], NEAR_DUPLICATES),
    }
    if variants:
        runs["direct_multi_processing_2"] = lambda: beam_job(
            data, work / "ws-2-processes",
            ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
            NEAR_DUPLICATES)
    for name, run in runs.items():
        result = run()
        out[name] = {**result, "docs_per_s": result["records"] / result["total_s"]}
        log.info("%d: %s %.1f s", size, name, result["total_s"])
    if variants:
        out["beam_prefixes_s"] = {stage: beam_prefix(data, stage)
                                  for stage in ("read", "parse", "deduplicate")}
        # The in-memory run's workspace (the 2-process run wrote its own) holds the docs.
        out["pretraining_data"] = pretraining_data(work / "ws", work)
        log.info("%d: pretraining-data %s", size, {k: round(v["total_s"], 1)
                                                   for k, v in out["pretraining_data"].items()})
    out["peak_rss_mb"] = peak_rss_mb()
    shutil.rmtree(work / f"data-{size}", ignore_errors=True)
    return out


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for name in ("bare_loop", "direct_in_memory", "direct_multi_processing_2"):
            if name in r:
                rows.append([r["reviews"], name, r[name]["total_s"], r[name]["docs_per_s"],
                             r[name]["docs_per_s"] / r["bare_loop"]["docs_per_s"]])
    text = markdown_table(["reviews", "variant", "seconds", "records/s", "vs bare loop"], rows)
    detailed = [r for r in results if "beam_prefixes_s" in r]
    if detailed:
        r = detailed[-1]
        bare = r["bare_loop"]["seconds"]
        prefixes = r["beam_prefixes_s"]
        full = r["direct_in_memory"]["total_s"]
        stage_rows = [
            ["read", bare["read"], prefixes["read"]],
            ["parse + clean + validate", bare["parse"], prefixes["parse"] - prefixes["read"]],
            ["de-duplication (exact + near)", bare["deduplicate"],
             prefixes["deduplicate"] - prefixes["parse"]],
            ["write Parquet + TFRecord (+ rejected, stats)", bare["write"],
             full - prefixes["deduplicate"]],
        ]
        text += (f"\n\nPer-stage seconds at {r['reviews']:,} reviews (Beam: differences between "
                 "pipelines cut after each stage):\n\n")
        text += markdown_table(["stage", "bare loop", "Beam in memory"], stage_rows)
    if detailed and "pretraining_data" in detailed[-1]:
        r = detailed[-1]
        runs = r["pretraining_data"]
        text += (f"\n\n`pretraining-data` on the {runs['bare_loop']['docs']:,} documents ingested "
                 f"from {r['reviews']:,} reviews ({runs['bare_loop']['instances']:,} instances of "
                 "128 tokens):\n\n")
        text += markdown_table(
            ["variant", "seconds", "docs/s", "vs bare loop"],
            [[name, run["total_s"], run["docs_per_s"],
              run["docs_per_s"] / runs["bare_loop"]["docs_per_s"]] for name, run in runs.items()])
    sizes = [r for r in results if "direct_in_memory" in r]
    if len(sizes) > 1:
        base = sizes[0]
        text += "\n\nScaling of the in-memory DirectRunner (time ratio vs size ratio):\n\n"
        text += markdown_table(
            ["reviews", "seconds", "size x", "time x", "peak RSS MB"],
            [[r["reviews"], r["direct_in_memory"]["total_s"], r["reviews"] / base["reviews"],
              r["direct_in_memory"]["total_s"] / base["direct_in_memory"]["total_s"],
              r["peak_rss_mb"]] for r in sizes])
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--detail-size", type=int, default=100_000,
                        help="size at which the variants and per-stage costs are measured")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("apache_beam", "opinionrec", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    minutes = sum(s for s in args.sizes) / 100_000 * 2.5
    print(f"ingest benchmark: sizes {args.sizes}; expect about {minutes:.0f} minutes")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for size in args.sizes:
            results.append(measure(size, Path(tmp), variants=size == args.detail_size))
    markdown = report(results)
    print(markdown)
    path = write_results("ingest", {"results": results}, markdown)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
