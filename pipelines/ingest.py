"""`opinionrec ingest`: a Beam job that parses, cleans, validates and de-duplicates raw inputs.

    raw files ──Read <format>──> (source, position, bytes) ──Parse <format>──> records
        records ──Deduplicate──> docs/ (Parquet + TFRecord), items/, interactions/ (Parquet)
        bad records ─────────────> rejected/ (JSON lines: source, position, reason, detail, raw)
    Beam metrics ──> stats.json:  read == written + rejected + deduplicated  (overall and per file)

Input formats (detected per file from its name and first lines, or forced with `--format`):
`amazon` review JSON lines (2014/2018 field names; 2023 names are mapped too), `amazon-meta`
product metadata, `mind-news` (news.tsv) and `mind-behaviors` (behaviors.tsv). Files may be gzipped
and may live on any filesystem Beam has installed (gs://, s3://, hdfs://).

Counting: a *record* is one non-blank line (MIND header lines, if any, are skipped and not counted);
`source_position` is its 0-based index among the records of its file. Each record is written,
rejected with a reason, or dropped as an exact duplicate of an earlier one, so the top-level counts
of stats.json reconcile. A MIND behaviour record becomes many `interactions` rows (one per candidate
and one per distinct history click); `by_output` counts rows, the top level counts records.

De-duplication keeps the first occurrence by (input order, source_position) of: documents with the
same (kind, user, item, case-folded title + text); items with the same asin; behaviour lines with
identical parsed content (and, within a line, identical interaction rows).
"""

from __future__ import annotations

import argparse
import ast
import base64
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import posixpath
import shutil
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import beam_options, workspace
from pipelines.records import (
    DOC_SCHEMA,
    INTERACTION_SCHEMA,
    ITEM_SCHEMA,
    REJECT_EMPTY_TEXT,
    REJECT_INVALID_JSON,
    REJECT_INVALID_UTF8,
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_TEXT_TOO_LONG,
    REJECT_WRONG_COLUMN_COUNT,
    REJECT_WRONG_TYPE,
    Document,
    InteractionRecord,
    ItemRecord,
    clean_text,
    detect_language,
    document_to_example,
    normalise_for_dedup,
    split_sentences,
)

log = logging.getLogger("opinionrec")

STAGE = "ingest"
AMAZON = "amazon"
AMAZON_META = "amazon-meta"
MIND_NEWS = "mind-news"
MIND_BEHAVIORS = "mind-behaviors"
FORMATS = (AMAZON, AMAZON_META, MIND_NEWS, MIND_BEHAVIORS)
DEFAULT_MAX_TEXT_CHARS = 100_000
# Beam metric namespaces: totals and breakdowns; per-source counters are named "<stat>|<source>".
NAMESPACE = "opinionrec.ingest"
SOURCE_NAMESPACE = "opinionrec.ingest.source"
REJECTED_TAG = "rejected"
COUNTED_STATS = ("read", "written", "rejected", "deduplicated")
OUTPUTS = ("docs", "items", "interactions")
MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
_MIND_HEADERS = {"newsid", "news_id", "nid", "impressionid", "impression_id"}


class IngestError(Exception):
    """A problem with the inputs or options, found before the pipeline starts."""


class NotReconciled(Exception):
    """The run's counts do not add up (a bug, never a bad record): the stage stays stale."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


# === Inputs: expansion and format detection ===


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One input file, its format and the prefix of its document ids."""

    path: str
    format: str
    id_prefix: str


def _strip_compression(name: str) -> str:
    for suffix in (".gz", ".bz2", ".zst", ".deflate", ".lzma", ".xz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_head(path: str, max_lines: int = 5) -> list[bytes]:
    """The first `max_lines` non-blank lines of a (possibly compressed) file, newlines removed."""
    lines: list[bytes] = []
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
        while len(lines) < max_lines:
            line = handle.readline()
            if not line:
                break
            line = line.rstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf")
            if line.strip():
                lines.append(line)
    return lines


def _load_object(line: str) -> dict[str, Any] | None:
    """A JSON object, or a Python dict literal (the Amazon 2014 metadata files use those)."""
    try:
        value = json.loads(line)
    except ValueError:
        if not line.lstrip().startswith("{'"):
            return None
        try:
            value = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, dict) else None


def _json_format(keys: set[str]) -> str | None:
    if {"reviewText", "reviewerID"} & keys or {"user_id", "text", "rating"} <= keys:
        return AMAZON
    if keys & {"asin", "parent_asin"} and "title" in keys:
        return AMAZON_META
    return None


def _tsv_format(name: str, first: bytes | None) -> str | None:
    if "news" in name:
        return MIND_NEWS
    if "behavior" in name:
        return MIND_BEHAVIORS
    if first is None:
        return None
    columns = first.split(b"\t")
    if len(columns) == 8 and columns[0][:1] == b"N":
        return MIND_NEWS
    if len(columns) == 5:
        try:
            dt.datetime.strptime(columns[2].decode("utf-8", "replace"), MIND_TIME_FORMAT)
            return MIND_BEHAVIORS
        except ValueError:
            return None
    return None


def detect_format(path: str) -> str | None:
    """The format of `path` from its name and first lines, or None when it is none of FORMATS."""
    name = _strip_compression(posixpath.basename(path).lower())
    if name.endswith(".tsv"):
        head = read_head(path, 1)
        return _tsv_format(name, head[0] if head else None)
    if name.endswith(_JSON_SUFFIXES):
        for line in read_head(path):
            record = _load_object(line.decode("utf-8", "replace"))
            if record is not None:
                return _json_format(set(record))
    return None


def _expand(pattern: str) -> tuple[list[str], bool]:
    """Files named by `pattern` (a path, a glob or a local folder); True if from a folder."""
    if "://" not in pattern and os.path.isdir(pattern):
        files = sorted(
            os.path.join(pattern, name)
            for name in os.listdir(pattern)
            if not name.startswith((".", "_")) and os.path.isfile(os.path.join(pattern, name))
        )
        return files, True
    matches = FileSystems.match([pattern])[0].metadata_list
    if not matches:
        raise IngestError(f"No input file matches {pattern!r}.")
    return sorted(m.path for m in matches), False


def id_prefixes(paths: Sequence[str]) -> dict[str, str]:
    """Document-id prefix per input: the file name, or the whole path if two names collide."""
    names = [posixpath.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return dict(zip(paths, names))
    return {p: p for p in paths}


def resolve_inputs(
    patterns: Sequence[str] | None, forced_format: str | None, default_dir: Path
) -> list[InputFile]:
    """Expand `--input` (default: every ingestible file in `default_dir`) and detect formats.

    A file the user named explicitly must be in a known format; files found by listing a folder are
    skipped (with a log line) when they are not, so `raw/truth.json` and notes can sit beside data.
    """
    if not patterns:
        if not default_dir.is_dir():
            raise IngestError(
                f"No --input given and {default_dir} does not exist: run `opinionrec "
                "sample-data` first or pass --input PATH."
            )
        patterns = [str(default_dir)]
    found: list[tuple[str, str]] = []
    for pattern in patterns:
        files, from_folder = _expand(pattern)
        for path in files:
            forced = forced_format if forced_format != "auto" else None
            fmt = forced or detect_format(path)
            if fmt is None and from_folder:
                log.info("ingest: skipping %s (not a known input format)", path)
                continue
            if fmt is None:
                raise IngestError(
                    f"Cannot tell the format of {path}. Supported: {', '.join(FORMATS)} (Amazon "
                    "review/metadata JSON lines, MIND news.tsv/behaviors.tsv); name the file "
                    "accordingly or pass --format."
                )
            found.append((path, fmt))
    if not found:
        raise IngestError(f"No ingestible input found in {', '.join(patterns)}.")
    paths = list(dict.fromkeys(path for path, _ in found))
    prefixes = id_prefixes(paths)
    formats = dict(found)
    return [InputFile(path, formats[path], prefixes[path]) for path in paths]


# === Metrics ===


class _Counters:
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


# === Reading ===


class ReadRecordsFn(beam.DoFn):
    """File path -> (path, source_position, raw bytes) per non-blank line, counting "read".

    Opens through FileSystems (gzip and other compressions by extension, any installed scheme).
    MIND files get a header line skipped if their first field is a column name.
    """

    def __init__(self, skip_header: bool = False) -> None:
        self._skip_header = skip_header
        self._counters: _Counters | None = None

    def setup(self) -> None:
        self._counters = _Counters()

    def process(self, path: str) -> Iterator[tuple[str, int, bytes]]:
        position = 0
        first = True
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as handle:
            while True:
                line = handle.readline()
                if not line:
                    break
                line = line.rstrip(b"\n").removesuffix(b"\r")
                if first:
                    first = False
                    line = line.removeprefix(b"\xef\xbb\xbf")
                    if self._skip_header and _is_mind_header(line):
                        continue
                if not line.strip():
                    self._counters.inc("blank_lines", path)
                    continue
                self._counters.inc("read", path)
                yield path, position, line
                position += 1


def _is_mind_header(line: bytes) -> bool:
    return line.split(b"\t", 1)[0].strip().decode("utf-8", "replace").lower() in _MIND_HEADERS


class ReadRecords(beam.PTransform):
    """PBegin -> (source, position, raw bytes) for every record of `paths`, reshuffled.

    One DoFn call reads a whole file (files are not split); the Reshuffle spreads the records so
    that parsing runs in parallel on runners with several workers.
    """

    def __init__(self, paths: Sequence[str], skip_header: bool = False) -> None:
        super().__init__()
        self._paths = list(paths)
        self._skip_header = skip_header

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Paths" >> beam.Create(self._paths)
            | "Read lines" >> beam.ParDo(ReadRecordsFn(self._skip_header))
            | "Reshuffle" >> beam.Reshuffle()
        )


# === Parsing and validation ===


class Rejected(Exception):
    """Raised by a parser: the record goes to the dead-letter output with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def rejected_row(
    source: str, position: int, reason: str, detail: str, raw: bytes
) -> dict[str, Any]:
    """A dead-letter row; bytes that are not UTF-8 are escaped in `raw` and kept in `raw_b64`."""
    row: dict[str, Any] = {
        "source": source,
        "source_position": position,
        "reason": reason,
        "detail": detail,
        "raw": raw.decode("utf-8", "backslashreplace"),
    }
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        row["raw_b64"] = base64.b64encode(raw).decode("ascii")
    return row


class ParseFn(beam.DoFn):
    """Base of the per-format parsers: decode, `parse`, route failures to the dead-letter output.

    Subclasses implement `parse(text, source, position)` and raise `Rejected` for a bad record; the
    main output gets the parsed record, the `rejected` output a `rejected_row`. Counters: "rejected"
    and "rejected.<reason>", in total and per source. No record makes the job fail.
    """

    def __init__(
        self, id_prefixes: Mapping[str, str], max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    ) -> None:
        self._id_prefixes = dict(id_prefixes)
        self._max_text_chars = max_text_chars
        self._counters: _Counters | None = None

    def setup(self) -> None:
        self._counters = _Counters()

    def process(self, element: tuple[str, int, bytes]) -> Iterator[Any]:
        source, position, raw = element
        if self._counters is None:  # DoFn used without setup (direct call in a test)
            self.setup()
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                detail = f"byte {error.object[error.start]:#x} at offset {error.start}"
                raise Rejected(REJECT_INVALID_UTF8, detail) from None
            yield self.parse(text, source, position)
        except Rejected as rejection:
            self._counters.inc("rejected", source)
            self._counters.inc(f"rejected.{rejection.reason}", source)
            yield beam.pvalue.TaggedOutput(
                REJECTED_TAG,
                rejected_row(source, position, rejection.reason, rejection.detail, raw),
            )

    def parse(self, text: str, source: str, position: int) -> dict[str, Any]:
        raise NotImplementedError

    # --- shared helpers ---

    def doc_id(self, source: str, position: int) -> str:
        return f"{self._id_prefixes.get(source, posixpath.basename(source))}:{position}"

    def clean_body(self, value: str, field: str) -> str:
        """Cleaned text of a required text field; empty or too long is rejected."""
        text = clean_text(value)
        if not text:
            raise Rejected(REJECT_EMPTY_TEXT, f"{field} is empty after cleaning")
        if len(text) > self._max_text_chars:
            raise Rejected(
                REJECT_TEXT_TOO_LONG,
                f"{field} has {len(text)} characters (limit {self._max_text_chars})",
            )
        return text


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        value = _load_object(text) if text.lstrip().startswith("{'") else None
        if value is None:
            raise Rejected(REJECT_INVALID_JSON, str(error)) from None
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise Rejected(REJECT_WRONG_TYPE, f"a record must be a JSON object, got {kind}")
    return value


def _first_present(record: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any]:
    for name in names:
        if record.get(name) is not None:
            return name, record[name]
    return names[0], None


def _required_id(record: Mapping[str, Any], names: Sequence[str]) -> str:
    """An identifier field (first of `names` present): a non-empty string or an integer."""
    name, value = _first_present(record, names)
    if value is None:
        raise Rejected(REJECT_MISSING_FIELD, f"{name} is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Rejected(REJECT_WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise Rejected(REJECT_MISSING_FIELD, f"{name} is empty")
    return text


def _required_text(record: Mapping[str, Any], names: Sequence[str]) -> tuple[str, str]:
    name, value = _first_present(record, names)
    if value is None:
        raise Rejected(REJECT_MISSING_FIELD, f"{name} is missing")
    if not isinstance(value, str):
        raise Rejected(REJECT_WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    return name, value


def _optional_text(record: Mapping[str, Any], names: Sequence[str]) -> str | None:
    _, value = _first_present(record, names)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if isinstance(v, (str, int, float)))
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    return clean_text(str(value)) or None


def _rating(record: Mapping[str, Any]) -> float | None:
    """The star rating (`overall`, or `rating` in 2023 files): None, or a number in 1-5."""
    name, value = _first_present(record, ("overall", "rating"))
    if value is None:
        return None
    if isinstance(value, bool):
        raise Rejected(REJECT_WRONG_TYPE, f"{name} must be a number, got a boolean")
    try:
        rating = float(value)
    except (TypeError, ValueError):
        raise Rejected(REJECT_WRONG_TYPE, f"{name} must be a number, got {value!r:.40}") from None
    if rating != rating:  # NaN
        raise Rejected(REJECT_WRONG_TYPE, f"{name} is NaN")
    if not 1.0 <= rating <= 5.0:
        raise Rejected(REJECT_OUT_OF_RANGE, f"{name} must be within 1-5, got {rating:g}")
    return rating


def _review_timestamp(record: Mapping[str, Any]) -> int | None:
    """Seconds since the epoch from `unixReviewTime`, 2023's `timestamp` (ms) or `reviewTime`."""
    for name, scale in (("unixReviewTime", 1), ("timestamp", 1000)):
        value = record.get(name)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                seconds = int(float(value))
            except ValueError:
                continue
            return seconds // scale if scale > 1 and seconds > 10**11 else seconds
    value = record.get("reviewTime")
    if isinstance(value, str):
        try:
            date = dt.datetime.strptime(value.strip(), "%m %d, %Y")
        except ValueError:
            return None
        return int(date.replace(tzinfo=dt.timezone.utc).timestamp())
    return None


def make_document(
    *,
    doc_id: str,
    kind: str,
    text: str,
    source: str,
    position: int,
    user: str | None = None,
    item: str | None = None,
    rating: float | None = None,
    timestamp: int | None = None,
    title: str | None = None,
    label: str | None = None,
    labels: Sequence[str] = (),
) -> Document:
    """A canonical document with the derived fields (`language`, `sentences`) filled in."""
    return Document(
        id=doc_id,
        kind=kind,
        user=user,
        item=item,
        rating=rating,
        timestamp=timestamp,
        title=title,
        text=text,
        label=label,
        labels=list(labels),
        language=detect_language(f"{title or ''} {text}"),
        source=source,
        source_position=position,
        sentences=split_sentences(text),
    )


class ParseReviewFn(ParseFn):
    """Amazon review JSON line -> Document(kind="review").

    Required: reviewerID, asin, reviewText (2023 names user_id, asin, text are accepted too);
    `overall` must be a number within 1-5 when present.
    """

    def parse(self, text: str, source: str, position: int) -> Document:
        record = _json_object(text)
        user = _required_id(record, ("reviewerID", "user_id"))
        item = _required_id(record, ("asin", "parent_asin"))
        field, body = _required_text(record, ("reviewText", "text"))
        rating = _rating(record)
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="review",
            text=self.clean_body(body, field),
            source=source,
            position=position,
            user=user,
            item=item,
            rating=rating,
            timestamp=_review_timestamp(record),
            title=_optional_text(record, ("summary", "title")),
        )


def _price(value: Any) -> float | None:
    """"$12.99" -> 12.99; ranges, empty strings and HTML snippets -> None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip().removeprefix("$").replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


class ParseMetaFn(ParseFn):
    """Amazon metadata JSON line (or 2014 Python literal) -> ItemRecord. Required: asin."""

    def parse(self, text: str, source: str, position: int) -> ItemRecord:
        record = _json_object(text)
        item = _required_id(record, ("asin", "parent_asin"))
        _, categories = _first_present(record, ("category", "categories"))
        if not isinstance(categories, list):
            categories = []
        flat = [c for c in categories if isinstance(c, str)]
        # 2014 metadata nests the category paths: [["Beauty", "Skin Care"], ...]
        nested = [path for path in categories if isinstance(path, list)]
        flat += [c for path in nested for c in path if isinstance(c, str)]
        return ItemRecord(
            item=item,
            title=_optional_text(record, ("title",)),
            brand=_optional_text(record, ("brand", "store")),
            categories=[c for c in dict.fromkeys(clean_text(c) for c in flat) if c],
            description=_optional_text(record, ("description",)),
            price=_price(record.get("price")),
            source=source,
            source_position=position,
        )


def _tsv_fields(text: str, expected: int) -> list[str]:
    fields = text.split("\t")
    if len(fields) != expected:
        raise Rejected(
            REJECT_WRONG_COLUMN_COUNT,
            f"expected {expected} tab-separated columns, found {len(fields)}",
        )
    return fields


class ParseNewsFn(ParseFn):
    """MIND news.tsv line -> Document(kind="news"). Required: NewsID and Title.

    `text` is the abstract, or the title when the abstract is empty (5% of MIND), so every document
    has body text; `label` is the category and `labels` [category, subcategory].
    """

    def parse(self, text: str, source: str, position: int) -> Document:
        news_id, category, subcategory, title, abstract, *_ = _tsv_fields(text, 8)
        news_id = news_id.strip()
        if not news_id:
            raise Rejected(REJECT_MISSING_FIELD, "NewsID is empty")
        clean_title = clean_text(title)
        if not clean_title:
            raise Rejected(REJECT_MISSING_FIELD, "Title is empty")
        body = clean_text(abstract) or clean_title
        category, subcategory = category.strip(), subcategory.strip()
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="news",
            text=self.clean_body(body, "Abstract"),
            source=source,
            position=position,
            item=news_id,
            title=clean_title,
            label=category or None,
            labels=[c for c in (category, subcategory) if c],
        )


def _impression(token: str) -> tuple[str, bool | None]:
    """"N123-1" -> ("N123", True); "N123" (unlabelled test impressions) -> ("N123", None)."""
    news_id, sep, label = token.rpartition("-")
    if not sep:
        return token, None
    if label not in ("0", "1") or not news_id:
        raise Rejected(REJECT_WRONG_TYPE, f"impression {token!r:.40} is not NEWSID-0/1")
    return news_id, label == "1"


class ParseBehaviorFn(ParseFn):
    """MIND behaviors.tsv line -> a behaviour record (exploded into interactions after dedup).

    Required: ImpressionID, UserID, a Time like "11/12/2019 2:14:46 PM" (read as UTC), and a
    non-empty History or Impressions column.
    """

    def parse(self, text: str, source: str, position: int) -> dict[str, Any]:
        impression_id, user, when, history, impressions = (
            f.strip() for f in _tsv_fields(text, 5)
        )
        if not impression_id or not user:
            raise Rejected(REJECT_MISSING_FIELD, "ImpressionID or UserID is empty")
        try:
            moment = dt.datetime.strptime(when, MIND_TIME_FORMAT)
        except ValueError:
            detail = f"Time {when!r:.40} is not M/D/YYYY h:mm:ss AM/PM"
            raise Rejected(REJECT_WRONG_TYPE, detail) from None
        if not history and not impressions:
            raise Rejected(REJECT_MISSING_FIELD, "History and Impressions are both empty")
        return {
            "impression_id": impression_id,
            "user": user,
            "timestamp": int(moment.replace(tzinfo=dt.timezone.utc).timestamp()),
            "history": history.split(),
            "impressions": [_impression(t) for t in impressions.split()],
            "source": source,
            "source_position": position,
        }


def explode_behavior(record: Mapping[str, Any]) -> Iterator[InteractionRecord]:
    """One interaction row per distinct history click (clicked, history=True) and candidate."""
    rows = [(news_id, True, True) for news_id in record["history"]]
    rows += [(news_id, clicked, False) for news_id, clicked in record["impressions"]]
    for news_id, clicked, from_history in dict.fromkeys(rows):
        yield InteractionRecord(
            impression_id=record["impression_id"],
            user=record["user"],
            item=news_id,
            timestamp=record["timestamp"],
            clicked=clicked,
            history=from_history,
            source=record["source"],
            source_position=record["source_position"],
        )


PARSERS: dict[str, type[ParseFn]] = {
    AMAZON: ParseReviewFn,
    AMAZON_META: ParseMetaFn,
    MIND_NEWS: ParseNewsFn,
    MIND_BEHAVIORS: ParseBehaviorFn,
}


# === De-duplication and counting ===


def doc_dedup_key(doc: Mapping[str, Any]) -> str:
    """(kind, user, item, case-folded title + text), hashed to keep the shuffle small."""
    body = normalise_for_dedup(f"{doc.get('title') or ''}\n{doc['text']}")
    key = json.dumps([doc["kind"], doc.get("user"), doc.get("item"), body])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def item_dedup_key(item: Mapping[str, Any]) -> str:
    return item["item"]


def behavior_dedup_key(record: Mapping[str, Any]) -> str:
    content = {k: v for k, v in record.items() if k not in ("source", "source_position")}
    return hashlib.sha1(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


class KeepFirstFn(beam.DoFn):
    """(key, records) -> the first record by (input order, source_position); counts the rest."""

    def __init__(self, source_order: Mapping[str, int]) -> None:
        self._order = dict(source_order)
        self._counters: _Counters | None = None

    def setup(self) -> None:
        self._counters = _Counters()

    def process(self, element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        _, records = element
        ranked = sorted(
            records, key=lambda r: (self._order.get(r["source"], 0), r["source_position"])
        )
        for duplicate in ranked[1:]:
            self._counters.inc("deduplicated", duplicate["source"])
        yield ranked[0]


class Deduplicate(beam.PTransform):
    """Keep one record per `key_fn` value: the first by (input order, source_position)."""

    def __init__(self, key_fn: Callable[[Any], str], source_order: Mapping[str, int]) -> None:
        super().__init__()
        self._key_fn = key_fn
        self._source_order = dict(source_order)

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        key_fn = self._key_fn
        return (
            records
            | "Key" >> beam.Map(lambda r: (key_fn(r), r))
            | "Group" >> beam.GroupByKey()
            | "Keep first" >> beam.ParDo(KeepFirstFn(self._source_order))
        )


class CountFn(beam.DoFn):
    """Pass-through that counts rows of an output and, optionally, records written per source."""

    def __init__(self, output: str, count_written: bool = True) -> None:
        self._output = output
        self._count_written = count_written
        self._counters: _Counters | None = None

    def setup(self) -> None:
        self._counters = _Counters()

    def process(self, record: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if self._count_written:
            self._counters.inc("written", record["source"])
        self._counters.inc(f"rows.{self._output}")
        yield record


# === The composite transform ===


class Ingest(beam.PTransform):
    """PBegin -> {"docs", "items", "interactions", "rejected"} PCollections for `inputs`.

    One labelled Read/Parse pair per format present; records are de-duplicated per output and
    counted (Beam metrics in NAMESPACE / SOURCE_NAMESPACE) so that the run's stats reconcile.
    """

    def __init__(
        self, inputs: Sequence[InputFile], max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    ) -> None:
        super().__init__()
        self._inputs = list(inputs)
        self._max_text_chars = max_text_chars

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        prefixes = {i.path: i.id_prefix for i in self._inputs}
        order = {i.path: n for n, i in enumerate(self._inputs)}
        parsed: dict[str, list[beam.PCollection]] = defaultdict(list)
        rejected: list[beam.PCollection] = []
        for fmt in FORMATS:
            paths = [i.path for i in self._inputs if i.format == fmt]
            if not paths:
                continue
            records = pbegin | f"Read {fmt}" >> ReadRecords(
                paths, skip_header=fmt in (MIND_NEWS, MIND_BEHAVIORS)
            )
            parser = PARSERS[fmt](prefixes, self._max_text_chars)
            outputs = records | f"Parse {fmt}" >> beam.ParDo(parser).with_outputs(
                REJECTED_TAG, main="parsed"
            )
            target = {AMAZON_META: "items", MIND_BEHAVIORS: "behaviors"}.get(fmt, "docs")
            parsed[target].append(outputs.parsed)
            rejected.append(outputs[REJECTED_TAG])

        def gather(name: str, pcolls: list[beam.PCollection]) -> beam.PCollection:
            if not pcolls:
                return pbegin | f"No {name}" >> beam.Create([])
            return pcolls | f"Gather {name}" >> beam.Flatten()

        docs = (
            gather("docs", parsed["docs"])
            | "Deduplicate docs" >> Deduplicate(doc_dedup_key, order)
            | "Count docs" >> beam.ParDo(CountFn("docs"))
        )
        items = (
            gather("items", parsed["items"])
            | "Deduplicate items" >> Deduplicate(item_dedup_key, order)
            | "Count items" >> beam.ParDo(CountFn("items"))
        )
        interactions = (
            gather("behaviors", parsed["behaviors"])
            | "Deduplicate behaviors" >> Deduplicate(behavior_dedup_key, order)
            | "Count behaviors" >> beam.ParDo(CountFn("behaviors"))
            | "Explode behaviors" >> beam.FlatMap(explode_behavior)
            | "Count interactions" >> beam.ParDo(CountFn("interactions", count_written=False))
        )
        return {
            "docs": docs,
            "items": items,
            "interactions": interactions,
            "rejected": gather("rejected", rejected),
        }


# === Writing ===


class ToExampleFn(beam.DoFn):
    """Document -> (shard, serialized tf.train.Example): bytes are cheap to shuffle, dicts not."""

    def __init__(self, num_shards: int) -> None:
        self._num_shards = num_shards

    def setup(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF's first import
        import tensorflow  # noqa: F401  heavy: imported once per worker, only for TFRecords

    def process(self, doc: Mapping[str, Any]) -> Iterator[tuple[int, bytes]]:
        shard = zlib.crc32(doc["id"].encode("utf-8")) % self._num_shards
        yield shard, document_to_example(doc).SerializeToString()


class WriteTFRecordShardFn(beam.DoFn):
    """(shard, serialized examples) -> `<prefix>-SSSSS-of-NNNNN.tfrecord`, via tf.io.

    Beam's WriteToTFRecord needs a crc32c package (google-crc32c, crcmod or snappy) that the stack
    does not pin; TensorFlow's writer has its own. A retried shard rewrites the same file. Empty
    values are the placeholders that make every shard exist.
    """

    def __init__(self, prefix: str, num_shards: int) -> None:
        self._prefix = prefix
        self._num_shards = num_shards
        self._counters: _Counters | None = None

    def setup(self) -> None:
        self._counters = _Counters()

    def process(self, element: tuple[int, Iterable[bytes]]) -> Iterator[str]:
        import tensorflow as tf

        shard, examples = element
        path = f"{self._prefix}-{shard:05d}-of-{self._num_shards:05d}.tfrecord"
        written = 0
        with tf.io.TFRecordWriter(path) as writer:
            for example in examples:
                if example:
                    writer.write(example)
                    written += 1
        self._counters.inc("rows.docs_tfrecord", n=written)
        yield path


class WriteDocsTFRecord(beam.PTransform):
    """Docs -> `num_shards` TFRecord files of tf.train.Example (empty shards are written too)."""

    def __init__(self, prefix: str, num_shards: int) -> None:
        super().__init__()
        self._prefix = prefix
        self._num_shards = max(1, num_shards)

    def expand(self, docs: beam.PCollection) -> beam.PCollection:
        n = self._num_shards
        examples = docs | "To tf.train.Example" >> beam.ParDo(ToExampleFn(n))
        placeholders = docs.pipeline | "Every shard" >> beam.Create([(s, b"") for s in range(n)])
        return (
            (examples, placeholders)
            | "With placeholders" >> beam.Flatten()
            | "Group shards" >> beam.GroupByKey()
            | "Write shards" >> beam.ParDo(WriteTFRecordShardFn(self._prefix, n))
        )


def _to_json_line(row: Mapping[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False)


def write_outputs(
    outputs: Mapping[str, beam.PCollection], ws: workspace.Workspace, num_shards: int
) -> None:
    """Attach the sinks: Parquet for docs/items/interactions, TFRecord for docs, JSONL rejects."""
    shards = max(0, num_shards)
    for name, folder, schema in (
        ("docs", ws.docs, DOC_SCHEMA),
        ("items", ws.items, ITEM_SCHEMA),
        ("interactions", ws.interactions, INTERACTION_SCHEMA),
    ):
        _ = outputs[name] | f"Write {name} Parquet" >> beam.io.WriteToParquet(
            str(folder / name), schema=schema, file_name_suffix=".parquet", num_shards=shards
        )
    _ = outputs["docs"] | "Write docs TFRecord" >> WriteDocsTFRecord(str(ws.docs / "docs"), shards)
    _ = (
        outputs["rejected"]
        | "Rejected to JSON" >> beam.Map(_to_json_line)
        | "Write rejected" >> beam.io.WriteToText(
            str(ws.rejected / "rejected"), file_name_suffix=".jsonl", num_shards=shards
        )
    )


def clear_outputs(ws: workspace.Workspace) -> None:
    """Remove the previous run's outputs so that no stale shard survives beside new ones."""
    for folder in (ws.docs, ws.items, ws.interactions, ws.rejected):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    ws.ingest_stats.unlink(missing_ok=True)


# === Stats ===


def counter_values(result: Any) -> dict[tuple[str, str], int]:
    """{(namespace, name): value} of our counters, summed over steps (committed if available)."""
    values: dict[tuple[str, str], int] = defaultdict(int)
    query = result.metrics().query(MetricsFilter().with_namespaces([NAMESPACE, SOURCE_NAMESPACE]))
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        values[(counter.key.metric.namespace, counter.key.metric.name)] += int(value or 0)
    return values


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
    return {
        **total,
        "rejected_by_reason": by_reason,
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


def _parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


def _jsonl_rows(folder: Path) -> int:
    count = 0
    for path in sorted(folder.glob("*.jsonl")):
        with open(path, "rb") as handle:
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
            "docs": _parquet_rows(ws.docs),
            "items": _parquet_rows(ws.items),
            "interactions": _parquet_rows(ws.interactions),
        }
        for name, rows in on_disk.items():
            if rows != by_output[name]:
                problems.append(f"{name}: {rows} rows on disk, counters say {by_output[name]}")
        if _jsonl_rows(ws.rejected) != stats["rejected"]:
            problems.append("rejected/ rows on disk differ from the rejected counter")
    return problems


# === Command line ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `opinionrec ingest` (Beam options pass through, see beam_options.py)."""
    workspace.add_workspace_argument(parser)
    parser.add_argument(
        "--input", action="append", metavar="PATH",
        help="input file, glob or folder; repeatable (default: every ingestible file in "
        "<workspace>/raw). gs:// and other Beam filesystems work where installed.",
    )
    parser.add_argument(
        "--format", choices=("auto", *FORMATS), default="auto",
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


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Run the ingest job; 2 for bad inputs/options, 1 if the counts fail to reconcile."""
    ws = workspace.workspace_from_args(args)
    try:
        if args.num_shards < 0 or args.max_text_chars < 1:
            raise IngestError(
                "`--num-shards` must be >= 0 and `--max-text-chars` >= 1. Received: "
                f"{args.num_shards}, {args.max_text_chars}"
            )
        inputs = resolve_inputs(args.input, args.format, ws.raw)
    except IngestError as error:
        log.error("ingest: %s", error)
        return 2
    for spec in inputs:
        log.info("ingest: %s as %s", spec.path, spec.format)
    params = {
        "inputs": [[i.path, i.format] for i in inputs],
        "num_shards": args.num_shards,
        "max_text_chars": args.max_text_chars,
    }
    fingerprints = {i.path: i.path for i in inputs}
    if ws.ingest_stats.exists() and workspace.skip_if_fresh(args, ws, STAGE, params, fingerprints):
        return 0
    options = beam_options.pipeline_options(beam_args)
    try:
        with workspace.stage_run(ws, STAGE, params, fingerprints) as record:
            stats = run_pipeline(inputs, ws, options, args.num_shards, args.max_text_chars)
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
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> dict[str, Any]:
    """Build and run the pipeline, wait for it, write and return stats.json."""
    clear_outputs(ws)
    log.info("ingest: running on %s", beam_options.describe(options))
    start = time.perf_counter()
    pipeline = beam.Pipeline(options=options)
    outputs = pipeline | "Ingest" >> Ingest(inputs, max_text_chars)
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
    print(
        f"ingest: read {stats['read']} records = written {stats['written']} + rejected "
        f"{stats['rejected']} ({reasons}) + deduplicated {stats['deduplicated']} "
        f"[{stats['runner']}, {stats['wall_s']:.1f} s]\n"
        f"  docs          {out['docs']:>9}  {ws.docs}/docs-*.parquet, docs-*.tfrecord\n"
        f"  items         {out['items']:>9}  {ws.items}\n"
        f"  interactions  {out['interactions']:>9}  {ws.interactions}\n"
        f"  rejected      {stats['rejected']:>9}  {ws.rejected}\n"
        f"  stats         {ws.ingest_stats}"
    )
