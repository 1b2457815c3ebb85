"""SemEval ABSA XML: 2014 Task 4, 2015 Task 12 and 2016 Task 5 (SB1 sentence level, SB2 text level).

Layouts read:

- 2014: `<sentences><sentence id><text/><aspectTerms><aspectTerm term polarity from to/>
  </aspectTerms><aspectCategories><aspectCategory category polarity/></aspectCategories>`.
- 2015/16 SB1: `<Reviews><Review rid><sentences><sentence id="rid:n"><text/><Opinions>
  <Opinion target category polarity from to/></Opinions></sentence>...`.
- 2016 SB2 (text level): the same, but the `<Opinions>` block belongs to the `<Review>`.

Records: the file is read with a streaming parser and split into one raw record per `<sentence>`
(in document order, so `source_position` is EVAL.md's `i`), except that a `<Review>` with its own
review-level `<Opinions>` (SB2; also every Review of a file named `*_SB2*`) is one record. Each
record is the element re-serialised (`ET.tostring`), so a bad sentence is rejected alone. Where the
file stops being well-formed XML (a syntax error, a truncated file) the records before the break are
kept and the rest of the file, from the line after the last complete record (at most 1 MiB of it),
is one dead-letter record with reason `invalid_xml` (a parser cannot resume after an XML error).

One `kind="labelled"` document per record:

- `text`: the sentence (SB2: the review's sentences joined by spaces), cleaned.
- `aspects`: every aspectTerm / Opinion, then every 2014 aspectCategory, in file order:
  `term` (aspectTerm `term` or Opinion `target`; "" for categories and `target="NULL"`),
  `start`/`end` (the span in the cleaned `text`, moved with the cleaning; a term without
  `from`/`to`, as third-party files often have, is located in the text (`locate_term`, counted as
  `absa.offsets_located`, or `absa.offsets_not_found` and kept at -1); -1 when there is no target
  or, SB2, no sentence offsets), `polarity` as given (positive/negative/neutral/conflict,
  "" when absent as in blind test files), `category` ("FOOD#QUALITY", "service", or "").
- `labels`: the distinct aspect categories in order (SemEval's aspect-category-detection target;
  [] for 2014 Laptops, which have none); `label`: the polarity every annotated aspect shares, or
  null when the sentence has no aspects or mixed polarities (the sources give no sentence
  polarity; this is only a summary of the aspect polarities).
- `item`: "<file name without extension>:<id>", the id being the source's identifier of the
  annotated unit: the sentence `id` (2015/16: "rid:n", so the review is its prefix) or, for SB2,
  the review `rid`; where the source leaves it out (a common third-party variant), "#<record
  position>", counted as `absa.derived_id`. The sources repeat short sentences ("I love it!";
  18 repeated texts in Laptop_Train_v2.xml) under different ids, Laptops_Test_Gold.xml holds one
  sentence (id 227) of Laptop_Train_v2.xml, and the 2016 training sets are the 2015 train + test
  sets: with the file and id in `item` the exact de-duplication key differs, so every sentence of
  every file is written (de-duplicate across gold files deliberately, if at all, when building a
  split).
- `split`: "train" / "test" / "dev" / "trial" from the file name, else null.

Rejections: `invalid_xml` (see above), `missing_field` (no `<text>`, an aspectTerm without
`term`, an Opinion without `target` and `category`),
`empty_text`, `wrong_type` (an offset that is not an integer, a record that is not a `<sentence>` or
`<Review>`), `out_of_range` (an unknown polarity, offsets outside the text or `from > to`).
"""

from __future__ import annotations

import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence

from pipelines.ingest.formats.base import InputFormat, RawRecord, open_input
from pipelines.ingest.parsing import ParseFn, Rejected, make_document
from pipelines.records import (
    REJECT_INVALID_XML,
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_WRONG_TYPE,
    Aspect,
    Document,
    clean_text,
)

SEMEVAL = "semeval-absa"
POLARITIES = ("positive", "negative", "neutral", "conflict")
# `member` of the raw record that stands for the unparseable rest of a file.
XML_ERROR_MEMBER = "xml-error: "
MAX_ERROR_RAW_BYTES = 1 << 20
_ROOT_TAGS = (b"<sentences", b"<Reviews", b"<sentence ", b"<Review ", b"<sentence>", b"<Review>")
_SPLIT_NAMES = {"train": "train", "test": "test", "dev": "dev", "val": "dev", "trial": "trial"}
_COMPRESSION = (".gz", ".bz2", ".zst", ".deflate", ".lzma", ".xz")
_SPLIT_WORD = re.compile(r"(?<![a-z])(train|test|dev|val|trial)(?![a-z])")


# === Shared by the ABSA formats (dong.py and huliu.py import these) ===


def split_from_name(source: str) -> str | None:
    """"Laptop_Train_v2.xml" -> "train", "Restaurants_Test_Gold.xml" -> "test", else None."""
    match = _SPLIT_WORD.search(posixpath.basename(source).lower())
    return _SPLIT_NAMES[match.group(1)] if match else None


def source_stem(source: str) -> str:
    """"data/Laptop_Train_v2.xml.gz" -> "Laptop_Train_v2": the prefix of `item` ids."""
    name = posixpath.basename(source)
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    stem, dot, _ = name.rpartition(".")
    return stem if dot and stem else name


def relocate_span(raw: str, text: str, term: str, start: int) -> tuple[str, int, int]:
    """(cleaned term, start, end) of `term`, found at raw offset `start`, in the cleaned `text`.

    Cleaning (whitespace, NFKC, entities) moves offsets, so the cleaned term is looked up in the
    cleaned text and the occurrence nearest to where the raw offset lands is taken (an off-by-a-few
    source offset, as in 9 aspect terms of Laptop_Train_v2.xml, still finds its term). Not found
    (or an empty term): (-1, -1).
    """
    clean_term = clean_text(term)
    if not clean_term:
        return clean_term, -1, -1
    prefix = clean_text(raw[: max(start, 0)])
    estimate = len(prefix) + (1 if prefix and raw[:start][-1:].isspace() else 0)
    best = -1
    for haystack, needle in ((text, clean_term), (text.casefold(), clean_term.casefold())):
        if len(haystack) != len(text):  # casefold changed lengths: offsets would not map back
            break
        position = haystack.find(needle)
        while position != -1:
            if best == -1 or abs(position - estimate) < abs(best - estimate):
                best = position
            position = haystack.find(needle, position + 1)
        if best != -1:
            break
    if best == -1:
        return clean_term, -1, -1
    return clean_term, best, best + len(clean_term)


def locate_term(text: str, term: str, taken: Sequence[tuple[int, int]] = ()
                ) -> tuple[str, int, int]:
    """(cleaned term, start, end) of `term` in the cleaned `text` when the source gives no offsets.

    The first occurrence that overlaps no span in `taken` (the terms of the same sentence placed
    already, so a term annotated twice, as SemEval-2014 does, gets its two occurrences), else the
    first occurrence (SemEval-2015/16 repeat a target once per category); a whole-word match before
    a match inside a word, the exact case before another case. Not found (or an empty term):
    (-1, -1).
    """
    clean_term = clean_text(term)
    if not clean_term:
        return clean_term, -1, -1
    escaped = re.escape(clean_term)
    word = rf"(?<!\w){escaped}(?!\w)"
    matches = [(m.start(), m.end()) for pattern, flags in
               ((word, 0), (word, re.I), (escaped, 0), (escaped, re.I))
               for m in re.finditer(pattern, text, flags)]
    for start, end in matches:
        if not any(start < other_end and other_start < end for other_start, other_end in taken):
            return clean_term, start, end
    return (clean_term, *matches[0]) if matches else (clean_term, -1, -1)


def shared_polarity(aspects: Sequence[Aspect]) -> str | None:
    """The polarity all annotated aspects share, or None (no aspects, or mixed)."""
    polarities = {a["polarity"] for a in aspects}
    return polarities.pop() if len(polarities) == 1 and "" not in polarities else None


def distinct(values: Sequence[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if v]


# === Splitting the XML into records ===


class _Splitter:
    """Turns the pull parser's events into raw records (see the module docstring)."""

    def __init__(self, review_level: bool) -> None:
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.stack: list[ET.Element] = []
        self.pending: list[ET.Element] = []  # complete sentences of the open <Review>
        self.review_level = review_level  # Reviews are records (SB2)

    def records(self) -> tuple[list[bytes], bool, ET.ParseError | None]:
        """The records completed by the data fed so far, whether any record completed, and the
        XML error the parser met, if any (the events before it are used first)."""
        out: list[bytes] = []
        completed = False
        try:
            for event, elem in self.parser.read_events():
                completed = self._event(event, elem, out) or completed
        except ET.ParseError as error:
            return out, completed, error
        return out, completed, None

    def _event(self, event: str, elem: ET.Element, out: list[bytes]) -> bool:
        """Handle one parser event; True when it completed a record."""
        if event == "start":
            self.stack.append(elem)
            return False
        self.stack.pop()
        if elem.tag == "sentence":
            if any(e.tag == "Review" for e in self.stack):  # decided when its Review ends
                if self.review_level:
                    return False
                self.pending.append(elem)
                return True
            out.append(_serialise(elem))
            self._drop(elem)
            return True
        if elem.tag == "Review":
            if self.review_level or elem.find("Opinions") is not None:
                self.review_level = True
                out.append(_serialise(elem))
            else:
                out += [_serialise(s) for s in elem.iter("sentence")]
            self.pending.clear()
            self._drop(elem)
            return True
        return False

    def _drop(self, elem: ET.Element) -> None:
        """Free a finished record: the parsed tree would otherwise grow with the file."""
        if self.stack:
            self.stack[-1].remove(elem)

    def broken(self) -> list[bytes]:
        """At an XML error: the complete sentences of the open Review (unless reviews are the
        records, when the half-read review goes to the dead letter whole)."""
        out = [] if self.review_level else [_serialise(s) for s in self.pending]
        self.pending.clear()
        return out


def _serialise(elem: ET.Element) -> bytes:
    tail, elem.tail = elem.tail, None
    try:
        return ET.tostring(elem, encoding="unicode").encode("utf-8")
    finally:
        elem.tail = tail


def split_xml(path: str) -> Iterator[RawRecord]:
    """One record per `<sentence>` (per `<Review>` at text level); an XML error ends the file with
    one record holding the unparsed rest (member `XML_ERROR_MEMBER` + the parser's message)."""
    splitter = _Splitter(review_level="_sb2" in posixpath.basename(path).lower())
    tail = bytearray()  # the bytes after the last complete record, for the dead letter
    last_line = b""
    error: ET.ParseError | None = None
    with open_input(path) as handle:
        while error is None and (line := handle.readline()):
            last_line = line
            tail += line
            splitter.parser.feed(line)
            records, completed, error = splitter.records()
            yield from records
            if completed:
                tail.clear()
        if error is None:
            try:
                splitter.parser.close()
            except ET.ParseError as at_end:
                error = at_end
            records, _, late = splitter.records()
            yield from records
            error = error or late
        if error is None:
            return
        yield from splitter.broken()
        rest = bytearray()
        total = len(tail)
        while chunk := handle.read(1 << 16):
            total += len(chunk)
            if len(rest) < MAX_ERROR_RAW_BYTES:
                rest += chunk
    raw = bytes(tail + rest)
    if not raw.strip():  # the last record ended on the broken line: show that line
        raw = last_line or b"<!-- empty file -->"
    detail = str(error)
    if len(raw) > MAX_ERROR_RAW_BYTES:
        detail += (f" (the dead letter keeps the first {MAX_ERROR_RAW_BYTES} of the {total} "
                   "bytes after the last complete record)")
        raw = raw[:MAX_ERROR_RAW_BYTES]
    yield raw, XML_ERROR_MEMBER + detail


def is_semeval_file(name: str, head: Sequence[bytes]) -> bool:
    return any(line.lstrip().startswith(_ROOT_TAGS) for line in head)


# === Parsing one record ===


def _attr(elem: ET.Element, name: str) -> str:
    value = (elem.get(name) or "").strip()
    if not value:
        raise Rejected(REJECT_MISSING_FIELD, f"<{elem.tag}> has no {name}")
    return value


def _polarity(elem: ET.Element) -> str:
    value = (elem.get("polarity") or "").strip()
    if value and value not in POLARITIES:
        raise Rejected(
            REJECT_OUT_OF_RANGE,
            f"<{elem.tag}> polarity {value!r:.40} is not one of {', '.join(POLARITIES)}",
        )
    return value


def _offsets(elem: ET.Element, raw: str) -> tuple[int, int] | None:
    if elem.get("from") is None and elem.get("to") is None:
        return None
    try:
        start, end = int(elem.get("from", "")), int(elem.get("to", ""))
    except ValueError:
        detail = f"<{elem.tag}> from={elem.get('from')!r:.20} to={elem.get('to')!r:.20}"
        raise Rejected(REJECT_WRONG_TYPE, f"{detail} are not integers") from None
    if not 0 <= start <= end <= len(raw):
        raise Rejected(
            REJECT_OUT_OF_RANGE,
            f"<{elem.tag}> from={start} to={end} is outside the {len(raw)}-character text",
        )
    return start, end


def _element_text(elem: ET.Element) -> str:
    text_elem = elem.find("text")
    if text_elem is None:
        raise Rejected(REJECT_MISSING_FIELD, f"<{elem.tag}> has no <text>")
    return "".join(text_elem.itertext())


class ParseSemEvalFn(ParseFn):
    """A `<sentence>` or text-level `<Review>` element -> Document(kind="labelled")."""

    def parse(self, text: str, source: str, position: int, member: str | None = None
              ) -> Document:
        if member and member.startswith(XML_ERROR_MEMBER):
            raise Rejected(REJECT_INVALID_XML, member.removeprefix(XML_ERROR_MEMBER))
        try:
            elem = ET.fromstring(text)
        except ET.ParseError as error:
            raise Rejected(REJECT_INVALID_XML, str(error)) from None
        if elem.tag == "sentence":
            unit, body, aspects = self._sentence(elem, position)
        elif elem.tag == "Review":
            unit, body, aspects = self._review(elem, position)
        else:
            raise Rejected(REJECT_WRONG_TYPE, f"expected <sentence> or <Review>, got <{elem.tag}>")
        return make_document(
            doc_id=self.doc_id(source, position),
            kind="labelled",
            text=body,
            source=source,
            position=position,
            item=f"{source_stem(source)}:{unit}",
            label=shared_polarity(aspects),
            labels=distinct([a["category"] for a in aspects]),
            split=split_from_name(source),
            aspects=aspects,
        )

    def _unit_id(self, elem: ET.Element, name: str, position: int) -> str:
        """The source's id of the annotated unit, or "#<position>" (counted) when it has none:
        third-party SemEval-style files often leave the ids out."""
        value = (elem.get(name) or "").strip()
        if value:
            return value
        self.counters.inc("step.absa.derived_id")
        return f"#{position}"

    def _sentence(self, elem: ET.Element, position: int) -> tuple[str, str, list[Aspect]]:
        sentence_id = self._unit_id(elem, "id", position)
        raw = _element_text(elem)
        body = self.clean_body(raw, "<text>")
        aspects: list[Aspect] = []
        taken: list[tuple[int, int]] = []  # spans of the terms located without offsets
        for term_elem in elem.iterfind("aspectTerms/aspectTerm"):
            term = _attr(term_elem, "term")
            aspects.append(self._span(term_elem, term, raw, body, "", taken))
        for opinion in elem.iterfind("Opinions/Opinion"):
            aspects.append(self._opinion(opinion, raw, body, taken))
        for category in elem.iterfind("aspectCategories/aspectCategory"):
            aspects.append(Aspect(term="", start=-1, end=-1, polarity=_polarity(category),
                                  category=_attr(category, "category")))
        return sentence_id, body, aspects

    def _review(self, elem: ET.Element, position: int) -> tuple[str, str, list[Aspect]]:
        review_id = self._unit_id(elem, "rid", position)
        texts = [clean_text(_element_text(s)) for s in elem.iter("sentence")]
        body = self.clean_body(" ".join(t for t in texts if t), "review <text>")
        # Review-level opinions carry no offsets into the joined text: spans are -1.
        opinions = elem.iterfind("Opinions/Opinion")
        aspects = [self._opinion(o, "", body, [], spans=False) for o in opinions]
        return review_id, body, aspects

    def _opinion(self, opinion: ET.Element, raw: str, body: str, taken: list[tuple[int, int]],
                 spans: bool = True) -> Aspect:
        target = (opinion.get("target") or "").strip()
        category = (opinion.get("category") or "").strip()
        if not target and not category:
            raise Rejected(REJECT_MISSING_FIELD, "<Opinion> has neither target nor category")
        if target == "NULL" or not target:
            return Aspect(term="", start=-1, end=-1, polarity=_polarity(opinion),
                          category=category)
        if not spans:
            return Aspect(term=clean_text(target), start=-1, end=-1,
                          polarity=_polarity(opinion), category=category)
        return self._span(opinion, target, raw, body, category, taken)

    def _span(self, elem: ET.Element, term: str, raw: str, body: str, category: str,
              taken: list[tuple[int, int]]) -> Aspect:
        """An aspect with its span in the cleaned text: from the source offsets, or, without
        them, located in the text (`locate_term`; counted as found or not found)."""
        polarity = _polarity(elem)
        offsets = _offsets(elem, raw)
        if offsets is None:
            clean_term, start, end = locate_term(body, term, taken)
            if start >= 0:
                taken.append((start, end))
            self.counters.inc("step.absa.offsets_located" if start >= 0
                              else "step.absa.offsets_not_found")
        else:
            clean_term, start, end = relocate_span(raw, body, term, offsets[0])
        return Aspect(term=clean_term, start=start, end=end, polarity=polarity, category=category)


FORMATS = [
    InputFormat(
        name=SEMEVAL,
        description="SemEval ABSA XML, 2014 (<sentences>) and 2015/16 (<Reviews>, SB1 and SB2)",
        parser=ParseSemEvalFn,
        output="docs",
        detect=is_semeval_file,
        split=split_xml,
    ),
]
