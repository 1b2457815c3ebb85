"""The canonical records that `ingest` writes and every later stage reads.

Three outputs, each with a pyarrow schema (the Parquet files carry exactly these columns) and a
TypedDict naming the same fields for code that builds or reads rows:

- `docs/`: one `Document` per review or news article (and, later, per labelled example).
- `items/`: one `ItemRecord` per product in an Amazon metadata file.
- `interactions/`: `InteractionRecord` rows from MIND behaviours: one per (impression, candidate)
  with its click label, plus one per (impression, history click) with `clicked=True` and
  `history=True` (the click happened at an unknown time before the impression's `timestamp`).

The text helpers here (`clean_text`, `split_sentences`, `detect_language`) define how the `text` and
`sentences` fields are derived, so a later stage (or the server) can normalise new text exactly the
way ingest did. Nothing in this module imports Beam or TensorFlow at import time.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from pathlib import Path
from typing import Any, Literal, Mapping, TypedDict

import pyarrow as pa

# === Record kinds and dead-letter reasons ===

DocKind = Literal["review", "news", "labelled", "rating"]
# Documents with text. A "rating" is a star rating without review text (user, item, rating, and
# the title when there is one; `text` is ""): an interaction for the recommender, no text to learn.
TEXT_KINDS: tuple[str, ...] = ("review", "news", "labelled")
DOC_KINDS: tuple[str, ...] = (*TEXT_KINDS, "rating")

# Why a raw record was rejected; `ingest` writes one of these in each dead-letter row.
REJECT_INVALID_UTF8 = "invalid_utf8"
REJECT_INVALID_JSON = "invalid_json"
REJECT_INVALID_XML = "invalid_xml"
REJECT_WRONG_COLUMN_COUNT = "wrong_column_count"
REJECT_MISSING_FIELD = "missing_field"
REJECT_WRONG_TYPE = "wrong_type"
REJECT_OUT_OF_RANGE = "out_of_range"
REJECT_EMPTY_TEXT = "empty_text"
REJECT_TEXT_TOO_LONG = "text_too_long"
REJECT_TEXT_TOO_SHORT = "text_too_short"
REJECT_REASONS: tuple[str, ...] = (
    REJECT_INVALID_UTF8,
    REJECT_INVALID_JSON,
    REJECT_INVALID_XML,
    REJECT_WRONG_COLUMN_COUNT,
    REJECT_MISSING_FIELD,
    REJECT_WRONG_TYPE,
    REJECT_OUT_OF_RANGE,
    REJECT_EMPTY_TEXT,
    REJECT_TEXT_TOO_LONG,
    REJECT_TEXT_TOO_SHORT,
)

# === Schemas ===

# One annotated aspect (SemEval aspect term / opinion target, Dong-2014 target, Hu & Liu feature):
# `term` as written, its character span in `text` ([start, end); -1 when the source gives none),
# `polarity` ("positive", "negative", "neutral", "conflict" or "" when unannotated) and `category`
# (SemEval 2015/16 "FOOD#QUALITY"-style, Hu & Liu strength such as "+2", or "").
ASPECT_TYPE = pa.struct(
    [
        pa.field("term", pa.string()),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("polarity", pa.string()),
        pa.field("category", pa.string()),
    ]
)

DOC_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # "<file name>:<source_position>", unique
        pa.field("kind", pa.string(), nullable=False),  # one of DOC_KINDS
        pa.field("user", pa.string()),  # reviewer id; null for news
        pa.field("item", pa.string()),  # asin or news id
        pa.field("rating", pa.float32()),  # 1-5 stars; null for news
        pa.field("timestamp", pa.int64()),  # seconds since the epoch (UTC); null if unknown
        pa.field("title", pa.string()),  # review summary or news title (cleaned)
        pa.field("text", pa.string(), nullable=False),  # review text or news abstract (cleaned)
        pa.field("label", pa.string()),  # news category
        pa.field("labels", pa.list_(pa.string())),  # [category, subcategory]
        pa.field("language", pa.string(), nullable=False),  # "en", "zh" or "und"
        pa.field("source", pa.string(), nullable=False),  # input path as given
        pa.field("source_position", pa.int64(), nullable=False),  # 0-based record index in source
        pa.field("sentences", pa.list_(pa.string())),  # `text` split into sentences
        pa.field("split", pa.string()),  # the source's own split ("train", "test", ...), if any
        pa.field("aspects", pa.list_(ASPECT_TYPE)),  # annotated aspect/opinion targets, if any
    ]
)

ITEM_SCHEMA = pa.schema(
    [
        pa.field("item", pa.string(), nullable=False),  # asin
        pa.field("title", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("description", pa.string()),  # the description paragraphs, cleaned and joined
        pa.field("price", pa.float64()),  # null unless the source gives one plain price
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_position", pa.int64(), nullable=False),
    ]
)

INTERACTION_SCHEMA = pa.schema(
    [
        pa.field("impression_id", pa.string(), nullable=False),
        pa.field("user", pa.string(), nullable=False),
        pa.field("item", pa.string(), nullable=False),  # news id
        pa.field("timestamp", pa.int64()),  # the impression's time, seconds since the epoch (UTC)
        pa.field("clicked", pa.bool_()),  # null for unlabelled impressions (MIND test split)
        pa.field("history", pa.bool_(), nullable=False),  # True: from the History column
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_position", pa.int64(), nullable=False),
    ]
)

# Field order of a dead-letter JSON line (`rejected/*.jsonl`); `raw_b64` only for invalid UTF-8.
REJECTED_FIELDS: tuple[str, ...] = ("source", "source_position", "reason", "detail", "raw")


class Aspect(TypedDict):
    """An annotated aspect of a document (see ASPECT_TYPE)."""

    term: str
    start: int
    end: int
    polarity: str
    category: str


class Document(TypedDict):
    """One row of `docs/` (see DOC_SCHEMA for what each field holds)."""

    id: str
    kind: str
    user: str | None
    item: str | None
    rating: float | None
    timestamp: int | None
    title: str | None
    text: str
    label: str | None
    labels: list[str]
    language: str
    source: str
    source_position: int
    sentences: list[str]
    split: str | None
    aspects: list[Aspect]


class ItemRecord(TypedDict):
    """One row of `items/` (see ITEM_SCHEMA)."""

    item: str
    title: str | None
    brand: str | None
    categories: list[str]
    description: str | None
    price: float | None
    source: str
    source_position: int


class InteractionRecord(TypedDict):
    """One row of `interactions/` (see INTERACTION_SCHEMA)."""

    impression_id: str
    user: str
    item: str
    timestamp: int | None
    clicked: bool | None
    history: bool
    source: str
    source_position: int


# === Text normalisation ===

# A tag must start with a letter, "/" or "!" so that "<3" or "a < b" survive; an unterminated tag
# at the end of a field (seen in Amazon metadata titles) is dropped too.
_TAG = re.compile(r"<(?:!--.*?--|/?[A-Za-z][^<>]*)(?:>|$)", re.DOTALL)
# C0/C1 controls become spaces (they often separate words); format characters and lone surrogates
# (JSON can encode them as "\ud800") are removed.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\ud800-\udfff]")
_CONTROL_NOT_SPACE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_SPACE = re.compile(r"\s+")


def clean_text(value: str) -> str:
    """Light cleaning applied to every text field: what a reader would see, on one line.

    HTML entities are unescaped and tags stripped, Unicode is NFKC-normalised (full-width forms,
    ligatures), control and invisible characters are removed and whitespace runs collapse to one
    space. Deeper cleaning (boilerplate, URLs, emoji) is left to later stages.
    """
    return clean_text_steps(value)[0]


# The cleaning steps `clean_text_steps` reports, in the order they run.
CLEANING_STEPS = ("html_tags", "html_entities", "nfkc", "control_chars", "whitespace")


def clean_text_steps(value: str) -> tuple[str, list[str]]:
    """`clean_text`, also saying which of CLEANING_STEPS changed the text (for the job's counts)."""
    steps: list[str] = []
    text = value
    if "<" in text:
        stripped = _TAG.sub(" ", text)
        if stripped != text:
            steps.append("html_tags")
            text = stripped
    if "&" in text:
        unescaped = html.unescape(text)
        if unescaped != text:
            steps.append("html_entities")
            text = unescaped
            if "<" in text:  # tags that were entity-escaped ("&lt;br&gt;")
                stripped = _TAG.sub(" ", text)
                if stripped != text and "html_tags" not in steps:
                    steps.append("html_tags")
                text = stripped
    if not text.isascii():
        normalised = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
        if normalised != text:
            steps.append("nfkc")
            text = normalised
    if _CONTROL_NOT_SPACE.search(text):  # tabs and newlines are whitespace, not controls
        steps.append("control_chars")
        text = _CONTROL_NOT_SPACE.sub(" ", text)
    collapsed = _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()
    if collapsed != text:
        steps.append("whitespace")
    return collapsed, steps


def normalise_for_dedup(value: str) -> str:
    """The form two texts must share to count as exact duplicates: cleaned, case-folded."""
    return _SPACE.sub(" ", value.casefold()).strip()


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")


def detect_language(text: str) -> str:
    """"zh", "en" or "und" from the share of Han and Latin letters: enough to route text now.

    Text with kana or hangul is "und" (not Chinese); so is text with no letters at all.
    """
    if text.isascii():  # the common case, without counting
        return "en" if _LATIN.search(text) else "und"
    han = len(_HAN.findall(text))
    latin = len(_LATIN.findall(text))
    other_cjk = len(_KANA_HANGUL.findall(text))
    letters = han + latin + other_cjk
    if letters == 0:
        return "und"
    if other_cjk / letters > 0.1:
        return "und"
    if han / letters >= 0.3:
        return "zh"
    if latin / letters >= 0.5:
        return "en"
    return "und"


# A sentence ends at Chinese end punctuation (no space needed), at Latin end punctuation followed
# by whitespace, or at "!"/"?" directly followed by a Han character (NFKC turns the full-width "！？"
# of Chinese text into ASCII); closing quotes and brackets stay with the sentence they close.
_SENTENCE_END = re.compile(
    r"[。！？]+[”’」』）)\"']*\s*"
    r"|(?:[.!?]+|…)[\"'”’)\]]*\s+"
    r"|[!?]+[\"'”’)\]]*(?=[\u3400-\u4dbf\u4e00-\u9fff])"
)
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e approx no fig inc ltd co u.s a.m p.m".split()
)


def _ends_in_abbreviation(text: str, start: int, end: int) -> bool:
    """True when the word before `text[end]` (a period) is an abbreviation or an initial."""
    word = text[max(start, text.rfind(" ", start, end) + 1) : end].casefold()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str) -> list[str]:
    """Split cleaned English or Chinese text into sentences (simple rules, no model).

    A period after a common abbreviation ("Dr.", "e.g.") or a single capital initial does not end a
    sentence. Text without end punctuation is one sentence.
    """
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if text[match.start()] == "." and _ends_in_abbreviation(text, start, match.start()):
            continue
        piece = text[start : match.end()].strip()
        if piece:
            sentences.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


# === TFRecord encoding (TensorFlow is imported only when these run) ===

_STRING_FIELDS = (
    "id", "kind", "user", "item", "title", "text", "label", "language", "source", "split",
)
_LIST_FIELDS = ("labels", "sentences")
# Aspects are flattened into parallel lists: aspect_term[i], aspect_start[i], ...
_ASPECT_STRING_FIELDS = ("term", "polarity", "category")
_ASPECT_INT_FIELDS = ("start", "end")


def document_features(doc: Mapping[str, Any]) -> dict[str, tuple[str, list]]:
    """A document as Example features: name -> ("bytes" | "float" | "int64", values).

    A null field is left out (so `tf_feature_spec` gives it its default): strings default to "",
    `rating` to NaN and `timestamp` to -1. Aspects become parallel lists `aspect_term`, ...
    """
    features: dict[str, tuple[str, list]] = {}
    for name in _STRING_FIELDS:
        if doc.get(name) is not None:
            features[name] = ("bytes", [str(doc[name])])
    for name in _LIST_FIELDS:
        features[name] = ("bytes", [str(v) for v in doc.get(name) or ()])
    if doc.get("rating") is not None:
        features["rating"] = ("float", [float(doc["rating"])])
    for name in ("timestamp", "source_position"):
        if doc.get(name) is not None:
            features[name] = ("int64", [int(doc[name])])
    aspects = doc.get("aspects") or ()
    for name in _ASPECT_STRING_FIELDS:
        features[f"aspect_{name}"] = ("bytes", [str(a.get(name) or "") for a in aspects])
    for name in _ASPECT_INT_FIELDS:
        features[f"aspect_{name}"] = ("int64", [int(a.get(name, -1)) for a in aspects])
    return features


def document_to_bytes(doc: Mapping[str, Any]) -> bytes:
    """The serialized `tf.train.Example` of a document, without importing TensorFlow."""
    from pipelines.tfexample import encode_example

    return encode_example(document_features(doc))


def document_to_example(doc: Mapping[str, Any]) -> Any:
    """The same document as a `tf.train.Example` object (imports TensorFlow)."""
    import tensorflow as tf

    return tf.train.Example.FromString(document_to_bytes(doc))


def tf_feature_spec() -> dict[str, Any]:
    """The `tf.io.parse_example` spec for `docs/*.tfrecord` (lists come back as RaggedTensors)."""
    import tensorflow as tf

    spec: dict[str, Any] = {
        name: tf.io.FixedLenFeature([], tf.string, default_value="") for name in _STRING_FIELDS
    }
    for name in _LIST_FIELDS:
        spec[name] = tf.io.RaggedFeature(tf.string)
    spec["rating"] = tf.io.FixedLenFeature([], tf.float32, default_value=math.nan)
    spec["timestamp"] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
    spec["source_position"] = tf.io.FixedLenFeature([], tf.int64, default_value=-1)
    for name in _ASPECT_STRING_FIELDS:
        spec[f"aspect_{name}"] = tf.io.RaggedFeature(tf.string)
    for name in _ASPECT_INT_FIELDS:
        spec[f"aspect_{name}"] = tf.io.RaggedFeature(tf.int64)
    return spec


def read_table(folder: str | Path, schema: pa.Schema) -> pa.Table:
    """All `*.parquet` shards of an ingest output folder as one table with `schema`.

    Use this (or a `*.parquet` glob) rather than `pq.read_table(folder)`: `docs/` also holds the
    TFRecord shards, which a whole-folder Parquet read would trip over.
    """
    import pyarrow.parquet as pq

    files = sorted(Path(folder).glob("*.parquet"))
    if not files:
        return schema.empty_table()
    return pa.concat_tables(pq.read_table(f, schema=schema) for f in files)


def tfrecord_files(folder: str | Path) -> list[str]:
    """The `*.tfrecord` shards of `docs/`, sorted (for `tf.data.TFRecordDataset`)."""
    return [str(p) for p in sorted(Path(folder).glob("*.tfrecord"))]
