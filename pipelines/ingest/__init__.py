"""`opinionrec ingest`: a Beam job that parses, cleans, validates and de-duplicates raw inputs.

    raw files ──Read <format>──> (source, position, bytes) ──Parse <format>──> records
        records ──clean, scrub PII──> docs ──DeduplicateDocs (exact + near)──> docs/ (Parquet,
                                                                                 TFRecord)
        items, behaviours ──Deduplicate──> items/, interactions/ (Parquet)
        bad records ─────────────> rejected/ (JSON lines: source, position, reason, detail, raw)
    Beam metrics ──> stats.json:  read == written + rejected + deduplicated  (overall and per file)

Input formats live in `formats/` (one module per family, registered in `formats/__init__.py`) and
are detected per file from its name and first records, or forced with `--format`. Files may be
compressed and may live on any filesystem Beam has installed (gs://, s3://, hdfs://).

Modules: `inputs` (patterns, detection), `reading` (raw records with positions), `parsing` (the
dead-letter route, field helpers), `formats/*` (parsers), `dedup`, `transform` (the composite
`Ingest` PTransform), `sinks` (Parquet / TFRecord / JSON lines), `stats` (stats.json,
reconciliation), `command` (the CLI).

Counting: a *record* is what a format's splitter yields (a non-blank line, a CSV row, an XML
sentence, a file of a text folder; header lines are skipped and not counted); `source_position` is
its 0-based index among the records of its input. Each record is written, rejected with a reason, or
dropped as an exact or near duplicate of an earlier one, so the top-level counts of stats.json
reconcile. A MIND behaviour record becomes many `interactions` rows (one per candidate
and one per distinct history click); `by_output` counts rows, the top level counts records.

De-duplication keeps the first occurrence by (input order, source_position) of: documents with the
same (kind, user, item, case-folded title + text), labelled documents excepted (evaluation sets
count every row); reviews and news of 20+ words whose MinHash Jaccard to an earlier one reaches
`--near-duplicates`; items with the same id; behaviour lines with identical parsed content (and,
within a line, identical interaction rows).
"""

from pipelines.ingest.command import (
    STAGE,
    add_arguments,
    print_summary,
    run,
    run_pipeline,
)
from pipelines.ingest.dedup import (
    Deduplicate,
    DeduplicateDocs,
    KeepFirstFn,
    behavior_dedup_key,
    doc_dedup_key,
    item_dedup_key,
)
from pipelines.ingest.formats import FORMAT_NAMES, REGISTRY, InputFormat
from pipelines.ingest.formats.amazon import ParseMetaFn, ParseReviewFn
from pipelines.ingest.formats.mind import ParseBehaviorFn, ParseNewsFn, explode_behavior
from pipelines.ingest.inputs import (
    IngestError,
    InputFile,
    detect_format,
    resolve_inputs,
)
from pipelines.ingest.metrics import COUNTED_STATS, NAMESPACE, SOURCE_NAMESPACE
from pipelines.ingest.parsing import (
    DEFAULT_MAX_TEXT_CHARS,
    REJECTED_TAG,
    ParseFn,
    ParseOptions,
    Rejected,
    make_document,
    rejected_row,
)
from pipelines.ingest.stats import NotReconciled, build_stats, counter_values, reconcile
from pipelines.ingest.transform import OUTPUTS, Ingest

__all__ = [
    "COUNTED_STATS", "DEFAULT_MAX_TEXT_CHARS", "FORMAT_NAMES", "NAMESPACE", "OUTPUTS", "REGISTRY",
    "REJECTED_TAG", "SOURCE_NAMESPACE", "STAGE", "Deduplicate", "DeduplicateDocs", "Ingest",
    "IngestError", "InputFile", "InputFormat", "KeepFirstFn", "NotReconciled", "ParseBehaviorFn",
    "ParseFn", "ParseMetaFn", "ParseNewsFn", "ParseOptions", "ParseReviewFn", "Rejected",
    "add_arguments", "behavior_dedup_key", "build_stats", "counter_values", "detect_format",
    "doc_dedup_key", "explode_behavior", "item_dedup_key", "make_document", "print_summary",
    "reconcile", "rejected_row", "resolve_inputs", "run", "run_pipeline",
]
