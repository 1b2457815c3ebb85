"""Tables with a column mapping: CSV, TSV, JSON lines and Parquet (also inside .zip).

One raw record per table row, keeping its original bytes. CSV and TSV files are read alike: the
delimiter and the quoting are sniffed from the first 200 lines (`sniff_dialect`). A quoted file is
split with the `csv` module, as pandas and Python's csv writer quote (a quoted field may hold the
delimiter, doubled quotes and newlines, so a record can span several lines); a file whose quotes
are plain characters (GLUE's TSVs: `"quoted" words` mid-sentence) is read one record per line.
Lines end at "\n", "\r\n" or a lone "\r"; a leading BOM is dropped. A JSON-lines record is one
line; a Parquet row is its JSON encoding. A `.zip` archive is read member by member (CSV/TSV/JSON
lines/Parquet members, in archive order; other members are skipped), each member with its own
header; `member` names the member. Positions run on across members. A header row is skipped and
not counted.

Column mapping (canonical field -> source column): `--columns text=review_body,label=2` names a
column by header name (or JSON key) or by 0-based index. Fields not named there are inferred from
the header (`text`/`review`/`sentence`/`content`/... for the text, `label`/`category`/`class`/
`intent`/... for the label, see `_KNOWN`). A file without a header and without `--columns` is
mapped by position when that is unambiguous: one column = text; two columns = text + label (the
column with the shorter values is the label, as in THUCNews `title<TAB>label`); three columns whose
first is label-like = label, title, text (AG News `"class","title","description"`). Otherwise every
row is rejected (`missing_field`) with a detail naming the columns seen and asking for --columns.

Kind of the documents (`--kind` for every table, else decided per file from the mapping, never
per row; `--kind review` reads rows without a user as reviews of their item, e.g. Chinese reviews
labelled 0/1 by category: `--kind review --columns item=cat`):
- "review" when both `user` and `item` are mapped (rating 1-5 and timestamp optional);
- "labelled" when a `label` is mapped (a classification example; every row counts, so labelled
  documents are meant to survive de-duplication, see the report on dedup);
- "news" when a `title` or an `item` is mapped but no label: articles;
- otherwise "labelled" with a null label: unlabelled examples such as GLUE's test.tsv.
`labels` holds the label first, then the values of other label-like columns (online_shopping's
`cat` beside `label`). `id` becomes the news `item` when no item column is mapped; it is not kept
otherwise (documents are identified by "<file>:<position>").

Rejections: a row whose column count differs from the header's (or, without a header, from the
first row's) -> `wrong_column_count`; a mapped column missing from the header or a JSON record ->
`missing_field` naming the column; an empty label/user/item -> `missing_field`; empty text ->
`empty_text`; a rating that is not a number in 1-5 or a timestamp that is neither a number nor an
ISO date -> `wrong_type`/`out_of_range`; bytes that are not UTF-8 -> `invalid_utf8`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import io
import itertools
import json
import logging
import math
import posixpath
import re
import zipfile
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

from pipelines.ingest.formats.base import InputFormat, RawRecord, open_input
from pipelines.ingest.parsing import (
    ParseFn,
    Rejected,
    json_object,
    load_object,
    make_document,
)
from pipelines.records import (
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_WRONG_COLUMN_COUNT,
    REJECT_WRONG_TYPE,
    Document,
    clean_text,
)

log = logging.getLogger("opinionrec")

TABLE = "table"
FIELDS = ("text", "title", "label", "user", "item", "rating", "timestamp", "id", "split")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".deflate", ".lzma", ".xz")
# Delimiters a CSV/TSV file may use instead of the one its name suggests, in order of preference.
DELIMITERS = (",", "\t", ";", "|")
BOM = b"\xef\xbb\xbf"

csv.field_size_limit(2**31 - 1)  # a review may be megabytes long; the parser bounds the text

# Header names recognised per canonical field, most specific first (compared lower-cased, with
# spaces and hyphens as underscores).
_KNOWN: dict[str, tuple[str, ...]] = {
    "text": ("text", "review", "review_body", "reviewtext", "review_text", "sentence",
             "content", "body", "description", "document", "comment", "utterance", "query",
             "abstract", "tweet", "message", "desc"),
    "title": ("title", "headline", "review_headline", "summary", "subject"),
    "label": ("label", "labels", "sentiment", "polarity", "class", "category", "intent",
              "topic", "cat", "class_index"),
    "user": ("user", "user_id", "userid", "customer_id", "reviewer_id", "reviewerid"),
    "item": ("item", "item_id", "product_id", "asin", "business_id", "parent_asin"),
    "rating": ("rating", "stars", "star_rating", "overall", "score"),
    "timestamp": ("timestamp", "unixreviewtime", "time", "date", "review_date", "created_at"),
    "id": ("id", "index", "idx", "review_id", "guid", "uid"),
    "split": ("split", "subset", "fold"),
}
_ALL_KNOWN = {name for names in _KNOWN.values() for name in names}
# A column name: a few words of letters, digits, "_" or "-" (no sentence punctuation).
_NAME = re.compile(r"[^\W\d][\w\-]{0,39}(?: [\w\-]{1,40}){0,3}")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


# === Dialects, headers and layouts ===


def _strip_compression(name: str) -> str:
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def dialect_of(name: str) -> str | None:
    """"csv", "tsv", "json" or "parquet" from a file or member name; None if not a table."""
    name = _strip_compression(posixpath.basename(name).lower())
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".tab", ".txt")):
        return "tsv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "json"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return None


def _norm(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lstrip("\ufeff").lower())


def _is_number(value: str) -> bool:
    return bool(_NUMBER.fullmatch(value.strip()))


def _name_like(value: str) -> bool:
    return bool(_NAME.fullmatch(value.strip()))


def looks_like_header(first: Sequence[str], rest: Sequence[Sequence[str]]) -> bool:
    """Whether `first` names columns: distinct, non-numeric cells, either one of them a known
    column name, or all of them name-like (a few words, no sentence punctuation) above rows with
    a cell that is a number or not name-like (csv.Sniffer's idea, simplified). An empty first
    cell is the unnamed index column pandas writes by default (`to_csv` with index=True)."""
    cells = [c.strip().lstrip("\ufeff") for c in first]
    if len(cells) > 1 and not cells[0]:
        cells, rest = cells[1:], [r[1:] for r in rest]
    if not cells or any(not c or _is_number(c) for c in cells) or len(set(cells)) < len(cells):
        return False
    if any(_norm(c) in _ALL_KNOWN for c in cells):
        return True
    if not all(_name_like(c) for c in cells):
        return False
    rows = [r for r in rest if len(r) == len(cells)]
    return any(_is_number(v) or not _name_like(v) for r in rows for v in r)


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a table file (or zip member) looks like: its dialect, delimiter, quoting and header.

    `quoted` says whether `"` quotes fields (a quoted field may hold delimiters, newlines and
    doubled quotes) or is an ordinary character (one record per line, as GLUE's TSVs are read).
    `header` is None for a header-less file; `head` holds the first rows (after the header) for
    positional mapping; `width` is the column count rows must have (None for JSON/Parquet).
    """

    dialect: str
    delimiter: str = ","
    header: tuple[str, ...] | None = None
    head: tuple[tuple[str, ...], ...] = ()
    width: int | None = None
    quoted: bool = True


def _physical_lines(handle: IO[bytes], chunk_size: int = 1 << 16) -> Iterator[bytes]:
    """The file's lines with their ends, split at "\\n", "\\r\\n" or a lone "\\r" (universal
    newlines, as pandas reads them); a leading UTF-8 BOM is dropped."""
    lines = _split_lines(handle, chunk_size)
    first = next(lines, None)
    if first is not None:
        yield first.removeprefix(BOM)
        yield from lines


def _split_lines(handle: IO[bytes], chunk_size: int) -> Iterator[bytes]:
    pending: list[bytes] = []  # the start of a line that goes on in the next chunk
    while chunk := handle.read(chunk_size):
        if b"\n" not in chunk and b"\r" not in chunk and not (pending and
                                                            pending[-1].endswith(b"\r")):
            pending.append(chunk)  # a long line: no re-splitting of what was read already
            continue
        lines = b"".join([*pending, chunk]).splitlines(keepends=True)  # at \n, \r\n, \r only
        last = lines.pop()
        yield from lines
        # The last line may go on in the next chunk; a "\r" may be the first half of "\r\n".
        if last.endswith(b"\n"):
            yield last
            pending = []
        else:
            pending = [last]
    if pending:
        yield b"".join(pending)


def _line_body(line: bytes) -> bytes:
    return line.removesuffix(b"\n").removesuffix(b"\r")


def _delimited_records(lines: Iterable[bytes], delimiter: str, quoted: bool = True,
                       strict: bool = False) -> Iterator[tuple[bytes, list[str] | None]]:
    """(original bytes without the line end, fields) per record of a CSV/TSV file.

    Quoted: split by the csv module (a quoted field may span lines). Lines are decoded with
    surrogateescape so that invalid UTF-8 travels on as the original bytes (the parser rejects
    it). A record the csv module cannot read comes with fields None; with `strict`, so does one
    whose quotes are not well formed (`"a" b`). Unquoted: one record per line.
    """
    if not quoted:
        for line in lines:
            body = _line_body(line)
            yield body, body.decode("utf-8", "surrogateescape").split(delimiter)
        return
    consumed: list[str] = []

    def decoded() -> Iterator[str]:
        for line in lines:
            text = line.decode("utf-8", "surrogateescape")
            consumed.append(text)
            yield text

    source = decoded()
    while True:
        reader = csv.reader(source, delimiter=delimiter, strict=strict)
        try:
            for fields in reader:
                raw = "".join(consumed).encode("utf-8", "surrogateescape")
                consumed.clear()
                yield _line_body(raw), fields
            return
        except csv.Error:
            raw = "".join(consumed).encode("utf-8", "surrogateescape")
            consumed.clear()
            yield _line_body(raw), None


def _consistency(rows: Sequence[Sequence[str] | None]) -> tuple[int, float]:
    """(width of the first row, share of rows with that width)."""
    if not rows or rows[0] is None:
        return 0, 0.0
    width = len(rows[0])
    return width, sum(1 for r in rows if r is not None and len(r) == width) / len(rows)


def _head_records(lines: Sequence[bytes], delimiter: str, quoted: bool, strict: bool = False,
                  truncated: bool = False) -> list[list[str] | None]:
    """The non-blank records of a file's first lines; when the lines stop before the end of the
    file, the last record is dropped (it may be cut short)."""
    rows = [f for raw, f in _delimited_records(lines, delimiter, quoted, strict) if raw.strip()]
    return rows[:-1] if truncated and len(rows) > 1 else rows


def sniff_dialect(lines: Sequence[bytes], default: str, truncated: bool = False
                  ) -> tuple[str, bool]:
    """(delimiter, quoted) of a CSV/TSV file from its first lines.

    The delimiter: `default` (from the file name) unless it splits nothing and another of
    `DELIMITERS` splits every record into the same number (>= 2) of columns. Quoting is on, as in
    pandas and the csv module, unless a field opens with `"` without being a well-formed quoted
    field (`"quoted" words`, as in GLUE's TSVs) and reading the quotes as text fits the columns at
    least as well: then the file is read one record per line with quotes as ordinary characters.
    """
    delimiter = default
    if _consistency(_head_records(lines, default, True, truncated=truncated))[0] < 2:
        for candidate in DELIMITERS:
            width, share = _consistency(_head_records(lines, candidate, True, truncated=truncated))
            if candidate != default and width >= 2 and share == 1.0:
                delimiter = candidate
                break
    plain = _head_records(lines, delimiter, False, truncated=truncated)
    if not any(cell.startswith('"') for row in plain for cell in row or ()):
        return delimiter, True  # nothing is quoted: both readings agree
    strict = _head_records(lines, delimiter, True, strict=True, truncated=truncated)
    if all(row is not None for row in strict):
        return delimiter, True
    quoted_fit = _consistency(_head_records(lines, delimiter, True, truncated=truncated))[1]
    return delimiter, quoted_fit > _consistency(plain)[1]


def _seekable(handle: IO[bytes]) -> IO[bytes]:
    try:
        if handle.seekable():
            return handle
    except (AttributeError, ValueError):
        pass
    return io.BytesIO(handle.read())


@contextlib.contextmanager
def _open_table(path: str, member: str | None) -> Iterator[IO[bytes]]:
    """The bytes of `path`, or of `member` inside the zip archive `path`."""
    with open_input(path) as handle:
        if member is None:
            yield handle
            return
        with zipfile.ZipFile(_seekable(handle)) as archive, archive.open(member) as inner:
            yield inner


def table_members(path: str) -> list[str]:
    """The table members of a zip archive, in archive order (folders, hidden files, macOS
    resource forks and non-table members are left out)."""
    with open_input(path) as handle, zipfile.ZipFile(_seekable(handle)) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
    keep = []
    for name in names:
        base = posixpath.basename(name)
        if name.startswith("__MACOSX/") or base.startswith((".", "_")):
            continue
        if dialect_of(name) is None:
            log.info("ingest: skipping %s in %s (not a table)", name, path)
            continue
        keep.append(name)
    return keep


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    while line := handle.readline():
        yield line.rstrip(b"\n").removesuffix(b"\r")


def _json_row(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


def _parquet_rows(handle: IO[bytes]) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(_seekable(handle)).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield _json_row(row)


def _rows(handle: IO[bytes], layout: Layout) -> Iterator[bytes]:
    """Raw records of one table in order, the header included."""
    if layout.dialect in ("csv", "tsv"):
        records = _delimited_records(_physical_lines(handle), layout.delimiter, layout.quoted)
        for raw, _ in records:
            yield raw
    elif layout.dialect == "parquet":
        yield from _parquet_rows(handle)
    else:
        yield from _lines(handle)


def read_layout(path: str, member: str | None = None, max_rows: int = 6,
                sniff_lines: int = 200) -> Layout:
    """The layout of a table file or zip member, from its first rows (the dialect of a CSV or
    TSV file from its first `sniff_lines` lines, see `sniff_dialect`)."""
    dialect = dialect_of(member or path) or "csv"
    with _open_table(path, member) as handle:
        if dialect == "parquet":
            import pyarrow.parquet as pq

            names = pq.ParquetFile(_seekable(handle)).schema_arrow.names
            return Layout(dialect, header=tuple(names))
        if dialect == "json":
            for line in _lines(handle):
                record = load_object(line.decode("utf-8", "replace").lstrip("\ufeff"))
                if record is not None:
                    return Layout(dialect, header=tuple(record))
            return Layout(dialect, header=())
        lines = list(itertools.islice(_physical_lines(handle), sniff_lines + 1))
    truncated = len(lines) > sniff_lines
    lines = lines[:sniff_lines]
    delimiter, quoted = sniff_dialect(lines, "\t" if dialect == "tsv" else ",", truncated)
    rows = [fields if fields is not None else [raw.decode("utf-8", "replace")]
            for raw, fields in _delimited_records(lines, delimiter, quoted) if raw.strip()]
    rows = [[cell.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for cell in row]
            for row in rows[:max_rows]]
    if not rows:
        return Layout(dialect, delimiter, quoted=quoted)
    if looks_like_header(rows[0], rows[1:]):
        header = tuple(c.strip() for c in rows[0])
        return Layout(dialect, delimiter, header, tuple(map(tuple, rows[1:])), len(header), quoted)
    return Layout(dialect, delimiter, None, tuple(map(tuple, rows)), len(rows[0]), quoted)


def split_table(path: str) -> Iterator[RawRecord]:
    """Raw records of a table (header skipped), or of every table member of a zip archive."""
    if _strip_compression(path.lower()).endswith(".zip"):
        for member in table_members(path):
            layout = read_layout(path, member)
            with _open_table(path, member) as handle:
                rows = _rows(handle, layout)
                if layout.header is not None and layout.dialect in ("csv", "tsv"):
                    next(rows, None)
                for raw in rows:
                    yield raw, member
        return
    layout = read_layout(path)
    with _open_table(path, None) as handle:
        rows = _rows(handle, layout)
        if layout.header is not None and layout.dialect in ("csv", "tsv"):
            next(rows, None)
        yield from rows


# === Detection ===


def _has_text_key(head: Sequence[bytes]) -> bool:
    for line in head:
        record = load_object(line.decode("utf-8", "replace"))
        if record is not None:
            return any(_norm(k) in _KNOWN["text"] for k in record)
    return False


def is_table_file(name: str, head: Sequence[bytes]) -> bool:
    """The generic fallback: .csv/.tsv/.parquet/.zip/.jsonl always; .json when its first object
    has a text-like key; .txt when its first records (quoted fields may span lines) share a
    tab-separated column count."""
    if name.endswith((".csv", ".tsv", ".tab", ".parquet", ".pq", ".zip")):
        return True
    if name.endswith((".jsonl", ".ndjson")):
        return True
    if name.endswith(".json"):
        return _has_text_key(head)
    if name.endswith(".txt"):  # tab-separated: 2+ columns in every record of the head (the
        # last one may be cut short inside a quoted field)
        records = _head_records([line + b"\n" for line in head], "\t", True)
        width, _ = _consistency(records)
        return len(records) >= 2 and width >= 2 and all(
            r is not None and len(r) == width for r in records[:-1]) and (
            records[-1] is not None and (len(records[-1]) == width or b'"' in head[-1]))
    return False


# === Column mapping ===


@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """Where each canonical field is in a row (index for CSV/TSV, key for JSON), or why the
    file cannot be read (`error`: every row is rejected with it)."""

    columns: Mapping[str, int | str]
    names: Mapping[str, str]  # field -> the column as the user would name it (for details)
    extra_labels: tuple[int | str, ...] = ()
    kind: str = "labelled"
    error: str | None = None


def _describe(layout: Layout) -> str:
    if layout.header is not None:
        return "columns " + ", ".join(f"{i}={name!r}" for i, name in enumerate(layout.header))
    if layout.head:
        cells = ", ".join(f"{i}={c[:30]!r}" for i, c in enumerate(layout.head[0]))
        return f"no header; {len(layout.head[0])} columns, first row {cells}"
    return "no rows"


def _positional(layout: Layout) -> dict[str, int] | None:
    """Header-less defaults: 1 column = text; 2 = text + label (the shorter one); 3 with a
    label-like first column = label, title, text (AG News)."""
    rows = [r for r in layout.head if len(r) == layout.width]
    if not rows or layout.width is None:
        return None

    def longest(i: int) -> int:
        return max(len(r[i]) for r in rows)

    def label_like(i: int) -> bool:
        return all(len(r[i].strip()) <= 30 and " " not in r[i].strip() for r in rows)

    if layout.width == 1:
        return {"text": 0}
    if layout.width == 2:
        label = 1 if longest(1) <= longest(0) else 0
        return {"text": 1 - label, "label": label} if label_like(label) else None
    if layout.width == 3 and label_like(0) and not label_like(2):
        return {"label": 0, "title": 1, "text": 2}
    return None


def _kind(columns: Mapping[str, Any]) -> str:
    if "user" in columns and "item" in columns:
        return "review"
    if "label" in columns:
        return "labelled"
    if "title" in columns or "item" in columns:
        return "news"
    return "labelled"


def resolve_columns(layout: Layout, wanted: Mapping[str, str], kind: str | None = None
                    ) -> ColumnMap:
    """The column map of one table from `--columns` (`wanted`) and the header or positions;
    `kind` (from `--kind`) overrides the kind the mapping implies."""
    unknown = sorted(set(wanted) - set(FIELDS))
    if unknown:
        return ColumnMap({}, {}, error=f"--columns names unknown field(s) {', '.join(unknown)} "
                         f"(fields: {', '.join(FIELDS)})")
    header = layout.header
    keyed = layout.dialect in ("json", "parquet")
    columns: dict[str, int | str] = {}
    names: dict[str, str] = {}
    for field, spec in wanted.items():
        if spec.isdigit():
            index = int(spec)
            if keyed:
                if header is None or index >= len(header):
                    return ColumnMap({}, {}, error=f"--columns {field}={spec}: no column {index} "
                                     f"({_describe(layout)})")
                columns[field], names[field] = header[index], header[index]
            else:
                columns[field] = index
                names[field] = header[index] if header and index < len(header) else f"#{index}"
        elif keyed:
            columns[field], names[field] = spec, spec
        else:
            folded = [h.casefold() for h in header or ()]
            if spec.casefold() not in folded:
                return ColumnMap({}, {}, error=f"column {spec!r} (--columns {field}={spec}) is "
                                 f"not in the file ({_describe(layout)})")
            columns[field], names[field] = folded.index(spec.casefold()), spec
    extra: list[int | str] = []
    if header is not None:
        used = set(columns.values())
        normed = [_norm(h) for h in header]
        for field in FIELDS:
            for known in _KNOWN[field]:
                if known not in normed:
                    continue
                at = normed.index(known)
                column: int | str = header[at] if keyed else at
                if column in used:
                    continue
                if field not in columns:
                    columns[field], names[field] = column, header[at]
                elif field == "label":
                    extra.append(column)
                used.add(column)
    elif not wanted:
        columns = dict(_positional(layout) or {})
        names = {field: f"#{index}" for field, index in columns.items()}
    if "text" not in columns:
        return ColumnMap({}, {}, error=f"cannot tell which column holds the text "
                         f"({_describe(layout)}); pass --columns text=NAME_OR_INDEX[,label=...]")
    if kind == "review" and "item" not in columns:
        return ColumnMap({}, {}, error=f"--kind review needs the item each row reviews "
                         f"({_describe(layout)}); pass --columns item=NAME_OR_INDEX")
    return ColumnMap(columns, names, tuple(extra), kind or _kind(columns))


# === Values ===


def _scalar(value: Any, field: str) -> str | None:
    """A cell as text (None when absent); numbers print without a spurious ".0"."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):  # pandas' missing value
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (str, int)):
        return str(value)
    raise Rejected(REJECT_WRONG_TYPE, f"{field} must be a string, got {type(value).__name__}")


def parse_rating(value: str, field: str) -> float:
    try:
        rating = float(value)
    except ValueError:
        raise Rejected(REJECT_WRONG_TYPE, f"{field} must be a number, got {value!r:.40}") from None
    if math.isnan(rating):
        raise Rejected(REJECT_WRONG_TYPE, f"{field} is NaN")
    if not 1.0 <= rating <= 5.0:
        raise Rejected(REJECT_OUT_OF_RANGE, f"{field} must be within 1-5, got {rating:g}")
    return rating


def parse_timestamp(value: str, field: str) -> int:
    """Seconds since the epoch from seconds, milliseconds or an ISO date/time (UTC if naive)."""
    text = value.strip()
    if _is_number(text):
        seconds = int(float(text))
        return seconds // 1000 if seconds > 10**11 else seconds
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(
            REJECT_WRONG_TYPE, f"{field} {text!r:.40} is neither a number nor an ISO date"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())


class ParseTableFn(ParseFn):
    """A table row -> Document (kind per file, see the module docstring)."""

    def setup(self) -> None:
        super().setup()
        self._maps: dict[tuple[str, str | None], tuple[Layout, ColumnMap]] = {}

    def _map(self, source: str, member: str | None) -> tuple[Layout, ColumnMap]:
        if not hasattr(self, "_maps"):
            self._maps = {}
        key = (source, member)
        if key not in self._maps:
            layout = read_layout(source, member)
            mapping = resolve_columns(layout, self.options.columns, self.options.kind)
            if mapping.error:
                log.warning("ingest: %s%s: %s", source, f" [{member}]" if member else "",
                            mapping.error)
            self._maps[key] = (layout, mapping)
        return self._maps[key]

    def _row(self, text: str, layout: Layout) -> list[str] | dict[str, Any]:
        if layout.dialect in ("json", "parquet"):
            return json_object(text)
        if layout.quoted:
            try:
                rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter))
            except csv.Error as error:
                detail = f"malformed CSV record: {error}"
                raise Rejected(REJECT_WRONG_COLUMN_COUNT, detail) from None
            fields = rows[0] if rows else []
            if len(rows) > 1:
                fields = [f for row in rows for f in row]
        else:
            fields = text.split(layout.delimiter)
        if layout.width is not None and len(fields) != layout.width:
            seen = f" ({', '.join(layout.header)})" if layout.header else ""
            raise Rejected(
                REJECT_WRONG_COLUMN_COUNT,
                f"expected {layout.width} columns{seen}, found {len(fields)}",
            )
        return fields

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        layout, mapping = self._map(source, member)
        if mapping.error:
            raise Rejected(REJECT_MISSING_FIELD, mapping.error)
        row = self._row(text, layout)

        kind = mapping.kind
        required = {"review": ("user", "item"), "labelled": ("label",)}.get(kind, ())
        required_columns = {mapping.columns[f] for f in ("text", *required) if f in mapping.columns}

        def cell(column: int | str, field: str) -> str | None:
            if isinstance(row, dict):  # JSON: a missing optional key is a null
                if column not in row and column in required_columns:
                    raise Rejected(REJECT_MISSING_FIELD, f"{field} (column {column!r}) is missing")
                return _scalar(row.get(column), field)
            if not isinstance(column, int) or column >= len(row):
                raise Rejected(REJECT_WRONG_COLUMN_COUNT,
                               f"{field} is column {column} but the row has {len(row)} columns")
            return row[column]

        values: dict[str, str | None] = {}
        for field, column in mapping.columns.items():
            value = cell(column, mapping.names[field])
            values[field] = value.strip() if value is not None else None
        raw_text = cell(mapping.columns["text"], mapping.names["text"])
        if raw_text is None:
            raise Rejected(REJECT_MISSING_FIELD, f"{mapping.names['text']} is null")
        for field in required:
            if field in mapping.columns and not values.get(field):
                name = mapping.names[field]
                raise Rejected(REJECT_MISSING_FIELD, f"{field} (column {name!r}) is empty")
        label = values.get("label") or None
        extras = [v.strip() for c in mapping.extra_labels if (v := cell(c, str(c))) and v.strip()]
        rating = values.get("rating")
        timestamp = values.get("timestamp")
        item = values.get("item") or (values.get("id") if kind == "news" else None) or None
        title = clean_text(values["title"]) or None if values.get("title") else None
        return make_document(
            doc_id=self.doc_id(source, position),
            kind=kind,
            text=self.clean_body(raw_text, mapping.names["text"]),
            source=source,
            position=position,
            user=values.get("user") or None,
            item=item,
            rating=parse_rating(rating, mapping.names["rating"]) if rating else None,
            timestamp=parse_timestamp(timestamp, mapping.names["timestamp"]) if timestamp
            else None,
            title=title,
            label=label,
            labels=[v for v in (label, *extras) if v],
            split=values.get("split") or None,
        )


FORMATS = [
    InputFormat(
        name=TABLE,
        description="CSV / TSV / JSON lines / Parquet table, or a .zip of them; columns from the "
        "header or --columns text=COL,label=COL,user=COL,item=COL,...",
        parser=ParseTableFn,
        output="docs",
        detect=is_table_file,
        split=split_table,
    ),
]
