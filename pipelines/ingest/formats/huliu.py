"""Hu & Liu (2004) annotated customer reviews: one .txt file per product.

Layout (the data folder's Readme.txt): `*` lines are a banner/comments; `[t]title` starts a review;
every other line is one sentence, `features##sentence text`, where `features` is empty or a
comma-separated list such as `picture quality[+2], flash[-1][u]`: `[+n]` / `[-n]` a positive /
negative opinion of strength n (1-3), `[u]` the feature is not in the sentence, `[p]` it is (through
a pronoun), `[s]` suggestion, `[cc]` / `[cs]` comparison with another brand's / the same brand's
product. Files are ASCII or Latin-1 (not UTF-8 is read as Windows-1252).

Records: one per sentence line, in file order; `*` lines and `[t]` lines are not records (a `[t]`
line gives the review title to the sentences after it); blank lines are counted as blank. The raw
record is the review's `[t]` line and the sentence line, so a dead-letter row shows both.

One `kind="labelled"` document per sentence line:

- `text`: the sentence (lower-cased and tokenised in the source), cleaned; `title`: its review's
  title.
- `aspects`: one per feature, in order: `term` the feature as annotated, `start`/`end` its first
  case-insensitive occurrence in `text` (-1 when marked `[u]`, or when the annotator's wording is
  not in the sentence), `polarity` "positive" / "negative" from the sign (else ""), `category` the
  feature's tags without brackets, space-separated ("+2", "-3 u", "+1 cc").
- `labels`: the distinct features; `label`: the polarity all features share, null otherwise (no
  features, or mixed).
- `item`: "<product>:<review>:<sentence>": the file name without extension, the review number
  (1-based `[t]` count; 0 before the first `[t]`) and the sentence number in its review (0-based),
  like SemEval's "rid:n" sentence ids. Reviews repeat list markers and headings ("1 .", "cons :")
  in 9 sentence lines; a distinct `item` keeps them from being de-duplicated.
- `split`: from the file name if it says train/test/dev, else null (the dataset has no splits).

Lenient with the annotation (every feature is kept): tags with a typo (`look{+1]`, `[-3[p]`, `[+]`,
`[2]`) are read token by token. Rejections: `missing_field` for a line with no `##` (one line of
Apex_AD2600... has a single `#`), `empty_text` for an empty sentence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from pipelines.ingest.formats.base import InputFormat, RawRecord, open_input
from pipelines.ingest.formats.semeval import (
    distinct,
    shared_polarity,
    source_stem,
    split_from_name,
)
from pipelines.ingest.parsing import ParseFn, Rejected, make_document
from pipelines.records import REJECT_MISSING_FIELD, Aspect, Document, clean_text

HU_LIU = "hu-liu"
TITLE = "[t]"
_TAG_TOKEN = re.compile(r"[+-]\d*|\d+|[a-z]+")
_SENTENCE_LINE = re.compile(rb"^(?:[^#\[\]]+(?:\[[^\]]*\])+\s*,?\s*)*##")


def split_review_lines(path: str) -> Iterator[RawRecord]:
    """Sentence lines, each with its review's `[t]` line in front; member "review:sentence"."""
    title: bytes | None = None
    review, sentence = 0, 0
    with open_input(path) as handle:
        while line := handle.readline():
            line = line.rstrip(b"\n").removesuffix(b"\r")
            stripped = line.strip()
            if stripped.startswith(b"*"):
                continue
            if stripped.startswith(TITLE.encode()):
                title, review, sentence = stripped, review + 1, 0
                continue
            if not stripped:
                yield line  # counted as a blank line
                continue
            raw = line if title is None else title + b"\n" + line
            yield raw, f"{review}:{sentence}"
            sentence += 1


def is_huliu_file(name: str, head: Sequence[bytes]) -> bool:
    if not name.endswith(".txt") or name.startswith("readme"):
        return False
    return any(
        b"Minqing Hu" in line or line.startswith(b"[t]") or _SENTENCE_LINE.match(line)
        for line in head
    )


def parse_features(tags: str) -> list[tuple[str, list[str]]]:
    """"picture[+2], flash[-1][u]" -> [("picture", ["+2"]), ("flash", ["-1", "u"])]."""
    features = []
    for piece in tags.split(","):
        name, bracket, rest = piece.partition("[")
        if not bracket:
            name, bracket, rest = piece.partition("{")
        name = name.strip()
        tokens = _TAG_TOKEN.findall(rest.lower()) if bracket else []
        if name or tokens:
            features.append((name, tokens))
    return features


def _polarity(tokens: Sequence[str]) -> str:
    for token in tokens:
        if token.startswith("+"):
            return "positive"
        if token.startswith("-"):
            return "negative"
    return ""


class ParseHuLiuFn(ParseFn):
    """`[t]title` + `features##sentence` -> Document(kind="labelled")."""

    def decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", "replace")

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        title_line, _, line = text.rpartition("\n")
        title = clean_text(title_line.removeprefix(TITLE)) or None
        tags, sep, sentence = line.partition("##")
        if not sep:
            raise Rejected(REJECT_MISSING_FIELD,
                           "no '##' between the features and the sentence")
        body = self.clean_body(sentence, "sentence")
        folded = body.casefold()
        aspects: list[Aspect] = []
        for name, tokens in parse_features(tags):
            term = clean_text(name)
            start = -1 if "u" in tokens or not term or len(folded) != len(body) \
                else folded.find(term.casefold())
            aspects.append(Aspect(
                term=term,
                start=start,
                end=start + len(term) if start >= 0 else -1,
                polarity=_polarity(tokens),
                category=" ".join(tokens),
            ))
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="labelled",
            text=body,
            source=source,
            position=position,
            item=f"{source_stem(source)}:{member or position}",
            title=title,
            label=shared_polarity(aspects),
            labels=distinct([a["term"] for a in aspects]),
            split=split_from_name(source),
            aspects=aspects,
        )


FORMATS = [
    InputFormat(
        name=HU_LIU,
        description="Hu & Liu 2004 customer reviews .txt ([t] titles, feature[+n]##sentence)",
        parser=ParseHuLiuFn,
        output="docs",
        detect=is_huliu_file,
        split=split_review_lines,
    ),
]
