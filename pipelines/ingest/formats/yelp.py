"""Yelp Open Dataset JSON lines: reviews (review_id, user_id, business_id, stars, text, date) and
businesses (business_id, name, categories "A, B", ...).

Not to be confused with Amazon 2023 reviews (`user_id`, `text`, `rating`, `asin`): Yelp has
`stars` and `business_id`, never `rating` or `asin`, so `amazon.is_review_file` does not claim
Yelp files and `is_review_file` here does not claim Amazon's. Tips, users and check-ins (no stars,
no name) are neither.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from pipelines.ingest.formats.amazon import JSON_SUFFIXES
from pipelines.ingest.formats.base import InputFormat
from pipelines.ingest.parsing import (
    ParseFn,
    Rejected,
    first_object_keys,
    json_object,
    make_document,
    optional_text,
    required_id,
    required_text,
)
from pipelines.records import (
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_WRONG_TYPE,
    Document,
    ItemRecord,
    clean_text,
)

YELP = "yelp"
YELP_BUSINESS = "yelp-business"
YELP_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_REVIEW_KEYS = {"user_id", "business_id", "stars", "text"}


def is_review_file(name: str, head: Sequence[bytes]) -> bool:
    keys = first_object_keys(head) if name.endswith(JSON_SUFFIXES) else None
    return keys is not None and _REVIEW_KEYS <= keys and "rating" not in keys


def is_business_file(name: str, head: Sequence[bytes]) -> bool:
    keys = first_object_keys(head) if name.endswith(JSON_SUFFIXES) else None
    return keys is not None and {"business_id", "name"} <= keys and "text" not in keys


def _stars(record: dict[str, Any]) -> float:
    value = record.get("stars")
    if value is None:
        raise Rejected(REJECT_MISSING_FIELD, "stars is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Rejected(REJECT_WRONG_TYPE, f"stars must be a number, got {type(value).__name__}")
    try:
        stars = float(value)
    except ValueError:
        raise Rejected(REJECT_WRONG_TYPE, f"stars must be a number, got {value!r:.40}") from None
    if not 1.0 <= stars <= 5.0:  # also rejects NaN
        raise Rejected(REJECT_OUT_OF_RANGE, f"stars must be within 1-5, got {stars:g}")
    return stars


def _date(record: dict[str, Any]) -> int | None:
    """"2018-07-07 22:09:11" (UTC; Yelp gives no zone) -> seconds; a bad date is rejected."""
    value = record.get("date")
    if value is None:
        return None
    try:
        moment = dt.datetime.strptime(str(value).strip(), YELP_TIME_FORMAT)
    except ValueError:
        try:
            moment = dt.datetime.strptime(str(value).strip(), "%Y-%m-%d")
        except ValueError:
            detail = f"date {value!r:.40} is not YYYY-MM-DD HH:MM:SS"
            raise Rejected(REJECT_WRONG_TYPE, detail) from None
    return int(moment.replace(tzinfo=dt.timezone.utc).timestamp())


class ParseYelpReviewFn(ParseFn):
    """Yelp review JSON line -> Document(kind="review"). Required: user_id, business_id, text,
    stars (1-5); `date` optional."""

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        record = json_object(text)
        user = required_id(record, ("user_id",))
        item = required_id(record, ("business_id",))
        field, body = required_text(record, ("text",))
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="review",
            text=self.clean_body(body, field),
            source=source,
            position=position,
            user=user,
            item=item,
            rating=_stars(record),
            timestamp=_date(record),
        )


class ParseYelpBusinessFn(ParseFn):
    """Yelp business JSON line -> ItemRecord (item = business_id, title = name, categories split
    at commas, description = "address, city, state"). Required: business_id."""

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> ItemRecord:
        record = json_object(text)
        item = required_id(record, ("business_id",))
        categories = record.get("categories")
        if isinstance(categories, str):
            categories = categories.split(",")
        if not isinstance(categories, list):
            categories = []
        cleaned = (clean_text(c) for c in categories if isinstance(c, str))
        place = [optional_text(record, (k,)) for k in ("address", "city", "state")]
        return ItemRecord(
            item=item,
            title=optional_text(record, ("name",)),
            brand=None,
            categories=[c for c in dict.fromkeys(cleaned) if c],
            description=", ".join(p for p in place if p) or None,
            price=None,  # Yelp gives a 1-4 price tier, not a price
            source=source,
            source_position=position,
        )


FORMATS = [
    InputFormat(
        name=YELP,
        description="Yelp review JSON lines (review_id, user_id, business_id, stars, text, date)",
        parser=ParseYelpReviewFn,
        output="docs",
        detect=is_review_file,
    ),
    InputFormat(
        name=YELP_BUSINESS,
        description="Yelp business JSON lines (business_id, name, categories, ...)",
        parser=ParseYelpBusinessFn,
        output="items",
        detect=is_business_file,
    ),
]
