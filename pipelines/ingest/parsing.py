"""Parsing and validation shared by every format: the dead-letter route and field helpers.

A parser (`ParseFn` subclass) turns one raw record into an output row or raises `Rejected`; the
record then goes to the `rejected` output with its raw bytes, source position and reason, and the
job goes on. No record makes the job fail.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import json
import posixpath
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam

from pipelines.ingest.metrics import CountingDoFn
from pipelines.ingest.pii import scrub_pii, scrub_pii_edits, shift_offset
from pipelines.records import (
    REJECT_EMPTY_TEXT,
    REJECT_INVALID_JSON,
    REJECT_INVALID_UTF8,
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_TEXT_TOO_LONG,
    REJECT_TEXT_TOO_SHORT,
    REJECT_WRONG_TYPE,
    Aspect,
    Document,
    clean_text,
    clean_text_steps,
    detect_language,
    split_sentences,
)

REJECTED_TAG = "rejected"
DEFAULT_MAX_TEXT_CHARS = 100_000


@dataclasses.dataclass(frozen=True)
class ParseOptions:
    """What the command line tells every parser.

    Attributes:
        max_text_chars: a longer cleaned text is rejected (`text_too_long`).
        min_text_chars: a shorter cleaned text is rejected (`empty_text` when 0 characters remain,
            `text_too_short` otherwise).
        columns: for tabular formats, canonical field -> source column (a header name or a 0-based
            index), from `--columns text=review_body,user=customer_id`.
        scrub_pii: replace e-mail addresses, phone numbers and URLs with placeholders.
        kind: for tabular formats, the kind of every row ("review", "news", "labelled"), from
            `--kind`; None decides per file from the column mapping.
    """

    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    min_text_chars: int = 1
    columns: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scrub_pii: bool = True
    kind: str | None = None


def load_object(line: str) -> dict[str, Any] | None:
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


def first_object_keys(head: Sequence[bytes]) -> set[str] | None:
    """The keys of the first JSON object (or dict literal) among a file's first lines."""
    for line in head:
        record = load_object(line.decode("utf-8", "replace"))
        if record is not None:
            return set(record)
    return None


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


class ParseFn(CountingDoFn):
    """Base of the per-format parsers: decode, `parse`, route failures to the dead-letter output.

    Subclasses implement `parse(text, source, position)` and raise `Rejected` for a bad record; the
    main output gets the parsed record, the `rejected` output a `rejected_row`. Counters: "rejected"
    and "rejected.<reason>", in total and per source. No record makes the job fail.
    """

    def __init__(
        self, id_prefixes: Mapping[str, str], options: ParseOptions | None = None
    ) -> None:
        self._id_prefixes = dict(id_prefixes)
        self.options = options or ParseOptions()
        self._max_text_chars = self.options.max_text_chars

    def process(self, element: tuple) -> Iterator[Any]:
        """`(source, position, raw)` or `(source, position, raw, member)` -> row or rejection."""
        source, position, raw, *rest = element
        member = rest[0] if rest else None
        if not hasattr(self, "counters"):  # DoFn used without setup (direct call in a test)
            self.setup()
        try:
            row = self.parse(self.decode(raw), source, position, member)
        except Rejected as rejection:
            self.counters.inc("rejected", source)
            self.counters.inc(f"rejected.{rejection.reason}", source)
            yield beam.pvalue.TaggedOutput(
                REJECTED_TAG,
                rejected_row(source, position, rejection.reason, rejection.detail, raw),
            )
            return
        if isinstance(row, dict) and "sentences" in row:
            self.finish_document(row)
        yield row

    def decode(self, raw: bytes) -> str:
        """The record's text: UTF-8, or `invalid_utf8` (formats with legacy encodings override)."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            detail = f"byte {error.object[error.start]:#x} at offset {error.start}"
            raise Rejected(REJECT_INVALID_UTF8, detail) from None

    def finish_document(self, doc: Document) -> None:
        """The per-document cleaning steps after parsing: PII scrubbing, then the step counts."""
        counters = self.counters
        if self.options.scrub_pii:
            text, found, edits = scrub_pii_edits(doc["text"])
            if found:
                doc["text"] = text
                doc["sentences"] = split_sentences(text)
                for aspect in doc["aspects"]:  # character offsets move with the placeholders
                    if aspect.get("start") is not None and aspect.get("end") is not None:
                        aspect["start"] = shift_offset(aspect["start"], edits)
                        aspect["end"] = shift_offset(aspect["end"], edits)
            if doc["title"]:
                doc["title"], title_found = scrub_pii(doc["title"])
                for kind, n in title_found.items():
                    found[kind] = found.get(kind, 0) + n
            if found:
                counters.inc("step.pii.documents")
                for kind, n in found.items():
                    counters.inc(f"step.pii.{kind}", n=n)
        counters.inc(f"step.language.{doc['language']}")
        counters.inc("step.sentences", n=len(doc["sentences"]))

    def parse(self, text: str, source: str, position: int, member: str | None = None) -> Any:
        """Parse one decoded record; `member` says where inside the source it came from."""
        raise NotImplementedError

    # --- shared helpers ---

    def doc_id(self, source: str, position: int) -> str:
        return f"{self._id_prefixes.get(source, posixpath.basename(source))}:{position}"

    def clean_body(self, value: str, field: str) -> str:
        """Cleaned text of a required text field; empty or too long is rejected."""
        text, steps = clean_text_steps(value)
        for step in steps:
            self.counters.inc(f"step.clean.{step}")
        if not text:
            raise Rejected(REJECT_EMPTY_TEXT, f"{field} is empty after cleaning")
        if len(text) < self.options.min_text_chars:
            raise Rejected(
                REJECT_TEXT_TOO_SHORT,
                f"{field} has {len(text)} characters (minimum {self.options.min_text_chars})",
            )
        if len(text) > self._max_text_chars:
            raise Rejected(
                REJECT_TEXT_TOO_LONG,
                f"{field} has {len(text)} characters (limit {self._max_text_chars})",
            )
        return text


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        value = load_object(text) if text.lstrip().startswith("{'") else None
        if value is None:
            raise Rejected(REJECT_INVALID_JSON, str(error)) from None
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise Rejected(REJECT_WRONG_TYPE, f"a record must be a JSON object, got {kind}")
    return value


def first_present(record: Mapping[str, Any], names: Sequence[str]) -> tuple[str, Any]:
    for name in names:
        if record.get(name) is not None:
            return name, record[name]
    return names[0], None


def required_id(record: Mapping[str, Any], names: Sequence[str]) -> str:
    """An identifier field (first of `names` present): a non-empty string or an integer."""
    name, value = first_present(record, names)
    if value is None:
        raise Rejected(REJECT_MISSING_FIELD, f"{name} is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Rejected(REJECT_WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise Rejected(REJECT_MISSING_FIELD, f"{name} is empty")
    return text


def required_text(record: Mapping[str, Any], names: Sequence[str]) -> tuple[str, str]:
    name, value = first_present(record, names)
    if value is None:
        raise Rejected(REJECT_MISSING_FIELD, f"{name} is missing")
    if not isinstance(value, str):
        raise Rejected(REJECT_WRONG_TYPE, f"{name} must be a string, got {type(value).__name__}")
    return name, value


def optional_text(record: Mapping[str, Any], names: Sequence[str]) -> str | None:
    _, value = first_present(record, names)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if isinstance(v, (str, int, float)))
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        return None
    return clean_text(str(value)) or None


def rating_field(record: Mapping[str, Any]) -> float | None:
    """The star rating (`overall`, or `rating` in 2023 files): None, or a number in 1-5."""
    name, value = first_present(record, ("overall", "rating"))
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
    split: str | None = None,
    aspects: Sequence[Aspect] = (),
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
        split=split,
        aspects=list(aspects),
    )
