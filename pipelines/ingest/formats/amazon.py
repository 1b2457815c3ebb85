"""Amazon review and product-metadata JSON lines (2014/2018 field names; 2023 names mapped too)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

from pipelines.ingest.formats.base import InputFormat
from pipelines.ingest.parsing import (
    ParseFn,
    Rejected,
    first_object_keys,
    first_present,
    json_object,
    make_document,
    optional_text,
    rating_field,
    required_id,
    required_text,
)
from pipelines.records import (
    REJECT_EMPTY_TEXT,
    REJECT_MISSING_FIELD,
    Document,
    ItemRecord,
    clean_text,
)

AMAZON = "amazon"
AMAZON_META = "amazon-meta"
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def is_review_file(name: str, head: Sequence[bytes]) -> bool:
    keys = first_object_keys(head) if name.endswith(JSON_SUFFIXES) else None
    return keys is not None and bool(
        {"reviewText", "reviewerID"} & keys or {"user_id", "text", "rating"} <= keys
    )


def is_metadata_file(name: str, head: Sequence[bytes]) -> bool:
    keys = first_object_keys(head) if name.endswith(JSON_SUFFIXES) else None
    return keys is not None and bool(keys & {"asin", "parent_asin"}) and "title" in keys \
        and not is_review_file(name, head)


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


class ParseReviewFn(ParseFn):
    """Amazon review JSON line -> Document(kind="review").

    Required: reviewerID, asin, reviewText (2023 names user_id, asin, text are accepted too);
    `overall` must be a number within 1-5 when present. A rating without review text (the field
    missing, null or empty after cleaning) is still an interaction: it becomes a `kind="rating"`
    document with empty text, counted as `ratings_without_text`; without a rating either, it is
    rejected as before.
    """

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        record = json_object(text)
        user = required_id(record, ("reviewerID", "user_id"))
        item = required_id(record, ("asin", "parent_asin"))
        rating = rating_field(record)
        kind = "review"
        try:
            field, body = required_text(record, ("reviewText", "text"))
            body = self.clean_body(body, field)
        except Rejected as rejection:
            if rating is None or rejection.reason not in (REJECT_MISSING_FIELD, REJECT_EMPTY_TEXT):
                raise
            kind, body = "rating", ""
            self.counters.inc("step.ratings_without_text")
        return make_document(
            doc_id=self.doc_id(source, position),
            kind=kind,
            text=body,
            source=source,
            position=position,
            user=user,
            item=item,
            rating=rating,
            timestamp=_review_timestamp(record),
            title=optional_text(record, ("summary", "title")),
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

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> ItemRecord:
        record = json_object(text)
        item = required_id(record, ("asin", "parent_asin"))
        _, categories = first_present(record, ("category", "categories"))
        if not isinstance(categories, list):
            categories = []
        flat = [c for c in categories if isinstance(c, str)]
        # 2014 metadata nests the category paths: [["Beauty", "Skin Care"], ...]
        nested = [path for path in categories if isinstance(path, list)]
        flat += [c for path in nested for c in path if isinstance(c, str)]
        return ItemRecord(
            item=item,
            title=optional_text(record, ("title",)),
            brand=optional_text(record, ("brand", "store")),
            categories=[c for c in dict.fromkeys(clean_text(c) for c in flat) if c],
            description=optional_text(record, ("description",)),
            price=_price(record.get("price")),
            source=source,
            source_position=position,
        )


FORMATS = [
    InputFormat(
        name=AMAZON,
        description="Amazon review JSON lines (reviewerID/asin/reviewText or user_id/text/rating)",
        parser=ParseReviewFn,
        output="docs",
        detect=is_review_file,
    ),
    InputFormat(
        name=AMAZON_META,
        description="Amazon product metadata JSON lines (asin, title, brand, category, ...)",
        parser=ParseMetaFn,
        output="items",
        detect=is_metadata_file,
    ),
]
