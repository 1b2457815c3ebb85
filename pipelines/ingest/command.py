"""`opinionrec ingest`: options, the run, and the summary printed at the end."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from typing import Any, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import beam_options, workspace
from pipelines.ingest.formats import FORMAT_NAMES
from pipelines.ingest.formats.table import FIELDS as TABLE_FIELDS
from pipelines.ingest.inputs import IngestError, InputFile, resolve_inputs
from pipelines.ingest.metrics import COUNTED_STATS
from pipelines.ingest.parsing import DEFAULT_MAX_TEXT_CHARS, ParseOptions
from pipelines.ingest.pii import PII_KINDS
from pipelines.ingest.sinks import clear_outputs, write_outputs
from pipelines.ingest.stats import NotReconciled, build_stats, counter_values, reconcile
from pipelines.ingest.transform import Ingest

log = logging.getLogger("opinionrec")

STAGE = "ingest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `opinionrec ingest` (Beam options pass through, see beam_options.py)."""
    workspace.add_workspace_argument(parser)
    parser.add_argument(
        "--input", action="append", metavar="PATH",
        help="input file, glob or folder; repeatable (default: every ingestible file in "
        "<workspace>/raw). gs:// and other Beam filesystems work where installed.",
    )
    parser.add_argument(
        "--format", choices=("auto", *FORMAT_NAMES), default="auto",
        help="input format for every --input (default: detect per file from name and first line)",
    )
    parser.add_argument(
        "--num-shards", type=int, default=1,
        help="files per output (default: %(default)s; 0 lets the runner choose for Parquet/JSON)",
    )
    parser.add_argument(
        "--max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS,
        help="reject documents whose cleaned text is longer (default: %(default)s)",
    )
    parser.add_argument(
        "--min-text-chars", type=int, default=1,
        help="reject documents whose cleaned text is shorter (default: %(default)s)",
    )
    parser.add_argument(
        "--columns", metavar="FIELD=COLUMN,...", default="",
        help="for CSV/TSV/JSON lines/Parquet: which source column holds each canonical field, by "
        "header name or 0-based index, e.g. text=review_body,user=customer_id,label=category",
    )
    parser.add_argument(
        "--kind", choices=("review", "news", "labelled"), default=None,
        help="for CSV/TSV/JSON lines/Parquet: read every row as this kind of document (default: "
        "decided per file: review when user and item are mapped, labelled with a label, news "
        "with a title or item); `--kind review --columns item=COL` takes rows without a user as "
        "reviews of their item, their label (e.g. 0/1) as the sentiment finetune learns",
    )
    parser.add_argument(
        "--near-duplicates", type=float, default=0.0, metavar="JACCARD",
        help="drop a review or news document of 20+ words whose word 3-gram Jaccard similarity "
        "(MinHash estimate) to an earlier one reaches this, e.g. 0.9 when building a "
        "pretraining corpus; labelled documents are never dropped; off by default, because a "
        "review repeated for another item is still an interaction (default: %(default)s)",
    )
    parser.add_argument(
        "--keep-pii", dest="scrub_pii", action="store_false",
        help="keep e-mail addresses, phone numbers and URLs (default: replace them with "
        "[EMAIL], [PHONE], [URL], counted per kind in stats.json `steps`)",
    )


def parse_columns(spec: str) -> dict[str, str]:
    """"text=review_body,user=0" -> {"text": "review_body", "user": "0"}."""
    columns: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise IngestError(f"`--columns` wants FIELD=COLUMN pairs. Received: {part!r}")
        if field.strip() not in TABLE_FIELDS:
            raise IngestError(
                f"`--columns` maps the fields {', '.join(TABLE_FIELDS)}. Received: {field!r}")
        columns[field.strip()] = column.strip()
    return columns


def parse_options(args: argparse.Namespace) -> ParseOptions:
    """The parsers' options from the command line (raises IngestError on bad values)."""
    if args.num_shards < 0 or args.max_text_chars < 1 or args.min_text_chars < 0:
        raise IngestError(
            "`--num-shards` must be >= 0, `--max-text-chars` >= 1 and `--min-text-chars` >= 0. "
            f"Received: {args.num_shards}, {args.max_text_chars}, {args.min_text_chars}"
        )
    if not 0.0 <= args.near_duplicates <= 1.0:
        raise IngestError(
            f"`--near-duplicates` must be within 0-1. Received: {args.near_duplicates}"
        )
    return ParseOptions(
        max_text_chars=args.max_text_chars,
        min_text_chars=args.min_text_chars,
        columns=parse_columns(args.columns),
        scrub_pii=args.scrub_pii,
        kind=getattr(args, "kind", None),
    )


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Run the ingest job; 2 for bad inputs/options, 1 if the counts fail to reconcile."""
    ws = workspace.workspace_from_args(args)
    try:
        parse_opts = parse_options(args)
        inputs = resolve_inputs(args.input, args.format, ws.raw)
    except IngestError as error:
        log.error("ingest: %s", error)
        return 2
    for spec in inputs:
        log.info("ingest: %s as %s", spec.path, spec.format)
    params = {
        "inputs": [[i.path, i.format] for i in inputs],
        "num_shards": args.num_shards,
        "options": dataclasses.asdict(parse_opts),
        "near_duplicates": args.near_duplicates,
    }
    fingerprints = {i.path: i.path for i in inputs}
    if ws.ingest_stats.exists() and workspace.skip_if_fresh(args, ws, STAGE, params, fingerprints):
        return 0
    options = beam_options.pipeline_options(beam_args)
    try:
        with workspace.stage_run(ws, STAGE, params, fingerprints) as record:
            stats = run_pipeline(inputs, ws, options, args.num_shards, parse_opts,
                                 args.near_duplicates)
            record["summary"] = {k: stats[k] for k in COUNTED_STATS}
            print_summary(stats, ws)
            problems = reconcile(stats, ws)
            if problems:  # leaving the block by an exception keeps the stage marked stale
                raise NotReconciled(problems)
    except NotReconciled as error:
        for problem in error.problems:
            log.error("ingest: counts do not reconcile: %s", problem)
        return 1
    return 0


def run_pipeline(
    inputs: Sequence[InputFile],
    ws: workspace.Workspace,
    options: PipelineOptions,
    num_shards: int = 1,
    parse_options: ParseOptions | None = None,
    near_duplicates: float = 0.0,
) -> dict[str, Any]:
    """Build and run the pipeline, wait for it, write and return stats.json."""
    clear_outputs(ws)
    log.info("ingest: running on %s", beam_options.describe(options))
    start = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    reshuffle = not beam_options.is_single_process(options)
    outputs = pipeline | "Ingest" >> Ingest(inputs, parse_options, near_duplicates, reshuffle)
    write_outputs(outputs, ws, num_shards)
    result = pipeline.run()
    result.wait_until_finish()
    stats = build_stats(
        counter_values(result), inputs, beam_options.runner_name(options),
        time.perf_counter() - start,
    )
    ws.ingest_stats.write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def print_summary(stats: Mapping[str, Any], ws: workspace.Workspace) -> None:
    """A few lines for the terminal: the reconciling counts and where the outputs are."""
    out = stats["by_output"]
    reasons = ", ".join(f"{k} {v}" for k, v in stats["rejected_by_reason"].items()) or "none"
    dedup = stats["deduplicated_by_kind"]
    steps = stats["steps"]
    pii = ", ".join(f"{kind} {steps[f'pii.{kind}']}" for kind in PII_KINDS
                    if steps.get(f"pii.{kind}")) or "none"
    print(
        f"ingest: read {stats['read']} records = written {stats['written']} + rejected "
        f"{stats['rejected']} ({reasons}) + deduplicated {stats['deduplicated']} "
        f"(exact {dedup['exact']}, near {dedup['near']}) [{stats['runner']}, "
        f"{stats['wall_s']:.1f} s]\n"
        f"  docs          {out['docs']:>9}  {ws.docs}/docs-*.parquet, docs-*.tfrecord\n"
        f"  items         {out['items']:>9}  {ws.items}\n"
        f"  interactions  {out['interactions']:>9}  {ws.interactions}\n"
        f"  rejected      {stats['rejected']:>9}  {ws.rejected}\n"
        f"  stats         {ws.ingest_stats}\n"
        f"  PII scrubbed: {pii}"
    )
