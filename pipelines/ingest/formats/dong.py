"""Dong et al. (2014) Twitter target-dependent sentiment .raw files (3 lines per record).

Each example is three lines: the (lower-cased, tokenised) tweet with the target replaced by `$T$`,
the target, and its polarity `-1` / `0` / `1`. The same layout is used by many ABSA repositories
for SemEval data converted to ".raw" files, which this format reads too.

Records: every three non-blank lines, in file order (`source_position` is EVAL.md's `i`); blank
lines are skipped. A file whose line count is not a multiple of three ends with one short record
(rejected). A missing line shifts every later group, so their polarity lines stop parsing and they
are rejected too: a damaged file shows up in `rejected_by_reason` rather than as wrong labels.

One `kind="labelled"` document per record:

- `text`: the tweet with every `$T$` replaced by the target, cleaned.
- `label`: "negative" / "neutral" / "positive" (from -1 / 0 / 1); `labels`: [label].
- `aspects`: one, the target at its first `$T$` (`start`/`end` in the cleaned text), the same
  polarity, `category` "". (A target occurs more than once in 368 of train.raw's 6,248 tweets; the
  record has one label, so it has one aspect.)
- `item`: "<file name without extension>:<i>" ("train:17"): the source has no ids, and
  train.raw repeats 5 (tweet, target, polarity) triples; with a distinct `item` the exact
  de-duplication keeps them, so all 6,248 / 692 examples that EVAL.md counts are written.
- `split`: "train" / "test" from the file name.

Rejections: `wrong_column_count` (a record of fewer than three lines), `missing_field` (no `$T$`
in the tweet, an empty target), `out_of_range` (a polarity other than -1, 0, 1), `empty_text`,
`invalid_utf8`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pipelines.ingest.formats.base import InputFormat, RawRecord, open_input
from pipelines.ingest.formats.semeval import relocate_span, source_stem, split_from_name
from pipelines.ingest.parsing import ParseFn, Rejected, make_document
from pipelines.records import (
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_WRONG_COLUMN_COUNT,
    Aspect,
    Document,
)

DONG = "dong-twitter"
TARGET = "$T$"
POLARITY = {"-1": "negative", "0": "neutral", "1": "positive"}


def split_triples(path: str) -> Iterator[RawRecord]:
    """Every three non-blank lines as one record (lines joined by "\\n")."""
    group: list[bytes] = []
    with open_input(path) as handle:
        while line := handle.readline():
            line = line.rstrip(b"\n").removesuffix(b"\r")
            if not line.strip():
                continue
            group.append(line)
            if len(group) == 3:
                yield b"\n".join(group)
                group = []
    if group:
        yield b"\n".join(group)


def is_dong_file(name: str, head: Sequence[bytes]) -> bool:
    if len(head) < 3:
        return name.endswith(".raw") and any(TARGET.encode() in line for line in head)
    return TARGET.encode() in head[0] and head[2].strip().decode("ascii", "replace") in POLARITY


class ParseDongFn(ParseFn):
    """Three lines (tweet with $T$, target, polarity) -> Document(kind="labelled")."""

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        lines = text.split("\n")
        if len(lines) != 3:
            raise Rejected(REJECT_WRONG_COLUMN_COUNT,
                           f"expected 3 lines (tweet, target, polarity), found {len(lines)}")
        tweet, target, polarity = lines
        target = target.strip()
        if TARGET not in tweet:
            raise Rejected(REJECT_MISSING_FIELD, f"the tweet has no {TARGET} target marker")
        if not target:
            raise Rejected(REJECT_MISSING_FIELD, "the target line is empty")
        label = POLARITY.get(polarity.strip())
        if label is None:
            raise Rejected(REJECT_OUT_OF_RANGE,
                           f"polarity {polarity.strip()!r:.40} is not -1, 0 or 1")
        raw = tweet.replace(TARGET, target)
        body = self.clean_body(raw, "tweet")
        term, start, end = relocate_span(raw, body, target, tweet.index(TARGET))
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="labelled",
            text=body,
            source=source,
            position=position,
            item=f"{source_stem(source)}:{position}",
            label=label,
            labels=[label],
            split=split_from_name(source),
            aspects=[Aspect(term=term, start=start, end=end, polarity=label, category="")],
        )


FORMATS = [
    InputFormat(
        name=DONG,
        description="Dong-2014 Twitter target sentiment .raw (tweet with $T$, target, -1/0/1)",
        parser=ParseDongFn,
        output="docs",
        detect=is_dong_file,
        split=split_triples,
    ),
]
