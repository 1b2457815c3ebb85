"""MIND news.tsv (news articles) and behaviors.tsv (impression logs -> click interactions)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Iterator, Mapping, Sequence

from pipelines.ingest.formats.base import InputFormat
from pipelines.ingest.parsing import ParseFn, Rejected, make_document
from pipelines.records import (
    REJECT_MISSING_FIELD,
    REJECT_WRONG_COLUMN_COUNT,
    REJECT_WRONG_TYPE,
    Document,
    InteractionRecord,
    clean_text,
)

MIND_NEWS = "mind-news"
MIND_BEHAVIORS = "mind-behaviors"
MIND_TIME_FORMAT = "%m/%d/%Y %I:%M:%S %p"
_HEADER_NAMES = {"newsid", "news_id", "nid", "impressionid", "impression_id"}


def is_header(line: bytes) -> bool:
    """MIND files have no header, but copies often gain one: skip it if the first field names a
    column."""
    return line.split(b"\t", 1)[0].strip().decode("utf-8", "replace").lower() in _HEADER_NAMES


def _columns(head: Sequence[bytes]) -> list[bytes]:
    return head[0].split(b"\t") if head else []


def is_news_file(name: str, head: Sequence[bytes]) -> bool:
    if not name.endswith(".tsv"):
        return False
    columns = _columns(head)
    return "news" in name or (len(columns) == 8 and columns[0][:1] == b"N")


def is_behaviors_file(name: str, head: Sequence[bytes]) -> bool:
    if not name.endswith(".tsv"):
        return False
    if "behavior" in name:
        return True
    columns = _columns(head)
    if len(columns) != 5:
        return False
    try:
        dt.datetime.strptime(columns[2].decode("utf-8", "replace"), MIND_TIME_FORMAT)
    except ValueError:
        return False
    return True


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

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
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

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> dict[str, Any]:
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


FORMATS = [
    InputFormat(
        name=MIND_NEWS,
        description="MIND news.tsv (NewsID, Category, SubCategory, Title, Abstract, ...)",
        parser=ParseNewsFn,
        output="docs",
        detect=is_news_file,
        is_header=is_header,
    ),
    InputFormat(
        name=MIND_BEHAVIORS,
        description="MIND behaviors.tsv impression logs (become click interactions)",
        parser=ParseBehaviorFn,
        output="behaviors",
        detect=is_behaviors_file,
        is_header=is_header,
    ),
]
