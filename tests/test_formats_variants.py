"""Bring-your-own data: the variants of the standard formats that other sources write.

Tables are held to what the standard reader accepts: on any table file, ingest's accepted rows are
the rows `pandas.read_csv` reads with the sniffed separator and quoting, cell for cell, and every
difference is a reject with a reason. The corpus of variants (quoted multi-line TSV, BOM, mixed
line ends, "\\r\\n" inside quotes, other delimiters, SemEval XML without ids or offsets) is written
by the tests themselves; the real tables are those of ../shared/data.
"""

from __future__ import annotations

import csv
import io
import random
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pytest

from pipelines.ingest import detect_format
from pipelines.ingest.formats.semeval import ParseSemEvalFn, locate_term
from pipelines.ingest.formats.table import (
    ParseTableFn,
    _physical_lines,
    read_layout,
    resolve_columns,
    sniff_dialect,
    table_members,
)
from pipelines.ingest.parsing import REJECTED_TAG, ParseOptions
from pipelines.ingest.reading import ReadRecordsFn
from pipelines.records import DOC_SCHEMA, clean_text, read_table
from tests.conftest import SHARED_DATA, shared_file
from tests.test_ingest import assert_reconciles, rejected_rows, run_ingest

BOM = b"\xef\xbb\xbf"

# === Tables against pandas ===


def ingest_records(path: Path, columns: dict[str, str] | None = None
                   ) -> list[tuple[int, str | None, dict | str]]:
    """Every record of `path` as ingest reads and parses it (ReadRecordsFn, then ParseTableFn,
    PII kept so that texts compare): (position, member, document or rejection reason)."""
    read = ReadRecordsFn("table")
    read.setup()
    parse = ParseTableFn({}, ParseOptions(columns=columns or {}, scrub_pii=False))
    out = []
    for element in read.process(str(path)):
        (result,) = parse.process(element)
        if getattr(result, "tag", None) == REJECTED_TAG:
            result = result.value["reason"]
        out.append((element[1], element[3], result))
    return out


def pandas_frame(handle: str | IO[bytes], name: str) -> pd.DataFrame:
    """The table as pandas reads it, with the separator, quoting and header ingest sniffed."""
    layout = read_layout(name) if isinstance(handle, str) else None
    if layout is None:  # a zip member
        zip_path, member = name.split("!", 1)
        layout = read_layout(zip_path, member)
    return pd.read_csv(
        handle, sep=layout.delimiter, header=0 if layout.header else None, dtype=str,
        keep_default_na=False, quoting=csv.QUOTE_MINIMAL if layout.quoted else csv.QUOTE_NONE,
        on_bad_lines="skip", engine="c",
    )


def compare_with_pandas(records: list[tuple[int, str | None, Any]], frame: pd.DataFrame,
                        text_column: int | str, label_column: int | str | None = None
                        ) -> Counter:
    """Ingest's records against pandas' rows, in order: an accepted document has pandas' text
    (cleaned) and label; a record pandas drops (too many columns) is a `wrong_column_count`
    reject; any other reject is a row whose text is empty. Returns the reject reasons."""
    reasons = Counter(r for _, _, r in records if isinstance(r, str))
    aligned = [r for _, _, r in records if r != "wrong_column_count"]
    assert len(aligned) == len(frame)
    for result, (_, row) in zip(aligned, frame.iterrows()):
        text = clean_text(row.iloc[text_column] if isinstance(text_column, int)
                          else row[text_column])
        if isinstance(result, str):
            assert result == "empty_text" and not text, (result, row.to_dict())
            continue
        assert result["text"] == text
        if label_column is not None:
            label = row.iloc[label_column] if isinstance(label_column, int) else row[label_column]
            assert result["label"] == label.strip()
    return reasons


# A TSV as pandas and Python's csv module write it, then saved by hand with a BOM and every kind of
# line end: quoted fields with newlines, a tab, doubled quotes and "\r\n" inside.
QUOTED_TSV = (
    BOM + b"sentence\tlabel\r\n"
    b'"Fits well.\nRuns a little small, order a size up."\t1\r\n'
    b'"She said ""wow""\tand left"\t0\n'
    b"plain line, no quotes\t1\r"  # an old Mac line end
    b'"Windows\r\nline inside"\t0\r\n'
    b'5" screen, bright\t1\n'  # a quote inside a field is a character
    b'""\t0\n'  # an empty text: rejected
    b"\n"  # a blank line: counted as blank, not read
    b'"Two columns\tare"\ttoo\tmany\n'  # 3 columns: rejected, pandas skips it
    b"last row without a line end\t1"
)


def test_quoted_tsv_reads_as_pandas_does(tmp_path: Path):
    path = tmp_path / "reviews.tsv"
    path.write_bytes(QUOTED_TSV)
    layout = read_layout(str(path))
    assert (layout.delimiter, layout.quoted, layout.header) == ("\t", True, ("sentence", "label"))
    records = ingest_records(path)
    texts = [r["text"] for _, _, r in records if isinstance(r, dict)]
    assert texts == ["Fits well. Runs a little small, order a size up.", 'She said "wow" and left',
                     "plain line, no quotes", "Windows line inside", '5" screen, bright',
                     "last row without a line end"]
    frame = pandas_frame(str(path), str(path))
    assert len(frame) == 7
    reasons = compare_with_pandas(records, frame, "sentence", "label")
    assert reasons == {"empty_text": 1, "wrong_column_count": 1}
    # The dead letter keeps the record's bytes, its quoted tab and line end included.
    bad = {p: raw for p, _, raw in _raw_records(path)}
    assert bad[6] == b'"Two columns\tare"\ttoo\tmany'
    assert bad[3] == b'"Windows\r\nline inside"\t0'


def _raw_records(path: Path) -> list[tuple[int, str | None, bytes]]:
    read = ReadRecordsFn("table")
    read.setup()
    return [(p, m, raw) for _, p, raw, m in read.process(str(path))]


def test_quoted_multiline_tsv_through_the_pipeline(tmp_path: Path):
    """The issue's case: labelled reviews written by pandas, quoted fields spanning lines."""
    rows = []
    for i in range(60):
        text = f"Review {i}: comfortable.\nSecond line of review {i}."
        if i % 3 == 0:
            text = f'He said "great fit"\r\nand kept pair {i}\tfor work'
        rows.append({"sentence": text, "label": i % 2})
    path = tmp_path / "multiline.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    assert len(path.read_bytes().splitlines()) > 120  # the records span lines
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    assert_reconciles(stats)
    assert (stats["read"], stats["written"], stats["rejected"]) == (60, 60, 0)
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    assert Counter(docs["label"]) == {"0": 30, "1": 30}
    first = docs[docs["source_position"] == 0].iloc[0]
    assert first["text"] == 'He said "great fit" and kept pair 0 for work'
    assert first["sentences"].tolist() == ['He said "great fit" and kept pair 0 for work']


def test_pandas_default_index_column_is_no_obstacle(tmp_path: Path):
    """`DataFrame.to_csv` writes an unnamed index column by default: the header still names the
    other columns."""
    path = tmp_path / "indexed.tsv"
    pd.DataFrame({"sentence": ["good\nthing", "bad"], "label": [1, 0]}).to_csv(path, sep="\t")
    layout = read_layout(str(path))
    assert layout.header == ("", "sentence", "label")
    records = ingest_records(path)
    assert [(r["text"], r["label"]) for _, _, r in records] == [("good thing", "1"), ("bad", "0")]
    assert compare_with_pandas(records, pandas_frame(str(path), str(path)), "sentence",
                               "label") == {}


def test_unquoted_tsv_keeps_its_quotes_and_one_record_per_line(tmp_path: Path):
    """GLUE-style TSV: a field that opens with a quote it does not close at its end means quotes
    are plain characters; pandas agrees when told QUOTE_NONE, which is what was sniffed."""
    path = tmp_path / "glue.tsv"
    path.write_bytes(b'sentence\tlabel\n"quoted" words stay as they are\t1\n'
                     b'an "odd quote\t0\nthe next line\t1\n')
    layout = read_layout(str(path))
    assert (layout.delimiter, layout.quoted) == ("\t", False)
    records = ingest_records(path)
    assert [r["text"] for _, _, r in records] == ['"quoted" words stay as they are',
                                                    'an "odd quote', "the next line"]
    assert compare_with_pandas(records, pandas_frame(str(path), str(path)), 0, 1) == {}


@pytest.mark.parametrize("name, content, delimiter, quoted", [
    ("semicolons.csv", b'text;label\n"a; b";1\nc;0\n', ";", True),
    ("commas.tsv", b'text,label\n"a, b",1\nc,0\n', ",", True),
    ("tabs.csv", b'text\tlabel\n"a\tb"\t1\nc\t0\n', "\t", True),
    ("plain.csv", b"text,label\nno quotes here,1\n", ",", True),
    ("one_column.csv", b'text\n"hello, world"\nhow are you\n', ",", True),
    ("pipes.csv", b"text|label\na|1\nb|0\n", "|", True),
])
def test_delimiter_is_sniffed_for_csv_and_tsv_alike(tmp_path: Path, name, content, delimiter,
                                                    quoted):
    path = tmp_path / name
    path.write_bytes(content)
    layout = read_layout(str(path))
    assert (layout.delimiter, layout.quoted) == (delimiter, quoted)
    frame = pandas_frame(str(path), str(path))
    label = "label" if "label" in frame.columns else None
    assert compare_with_pandas(ingest_records(path), frame, "text", label) == {}


def test_physical_lines_split_as_universal_newlines_whatever_the_chunks():
    """Lines end at \\n, \\r\\n or a lone \\r, also where a chunk boundary cuts "\\r\\n" in two."""
    rng = random.Random(7)
    pieces = [b"a", b"bc", b"\n", b"\r", b"\r\n", b'"', b"\t", BOM]
    for _ in range(500):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        expected = data.removeprefix(BOM).splitlines(keepends=True)
        for chunk_size in (1, 2, 5, 64):
            lines = list(_physical_lines(io.BytesIO(data), chunk_size))
            assert [line for line in lines if line] == expected, (data, chunk_size)


def test_sniffing_sees_a_quoted_field_cut_by_the_sniffed_lines():
    """A quoted field still open where the sniffed lines stop is not evidence against quoting."""
    lines = [b"text\tlabel\n", b'"a\n', b'b"\t1\n', b'"starts here\n']
    assert sniff_dialect(lines, "\t", truncated=True) == ("\t", True)
    assert sniff_dialect([b"text\tlabel\n", b'"a" b\t1\n'], "\t") == ("\t", False)


def test_csv_with_bom_mixed_line_ends_and_crlf_inside_quotes(tmp_path: Path):
    path = tmp_path / "shop.csv"
    path.write_bytes(BOM + b'"review","label"\r\n"Good,\r\nreally good",1\n'
                     b'"Bad ""value""",0\r"ok",1\r\n')
    layout = read_layout(str(path))
    assert layout.header == ("review", "label")  # the BOM is not part of the first name
    records = ingest_records(path)
    assert [r["text"] for _, _, r in records] == ["Good, really good", 'Bad "value"', "ok"]
    assert compare_with_pandas(records, pandas_frame(str(path), str(path)), "review",
                               "label") == {}


def test_headerless_quoted_tsv_maps_by_position(tmp_path: Path):
    path = tmp_path / "titles.txt"
    path.write_bytes(b'"A title\nover two lines"\tsports\nAnother title\tnews\n')
    assert detect_format(str(path)) == "table"  # a .txt whose quoted records share a width
    layout = read_layout(str(path))
    assert layout.header is None and layout.quoted and layout.width == 2
    records = ingest_records(path)
    assert [(r["text"], r["label"]) for _, _, r in records] == [
        ("A title over two lines", "sports"), ("Another title", "news")]


def real_tables() -> list[Path]:
    """Every file of ../shared/data that ingest reads as a table (zip archives included)."""
    if not SHARED_DATA.exists():
        return []
    return sorted(p for p in SHARED_DATA.rglob("*")
                  if p.is_file() and detect_format(str(p)) == "table")


REAL_TABLES = real_tables()
BIG_TABLES = {"train_full.tsv", "online_shopping_10_cats.zip"}  # 60,000+ rows each


@pytest.mark.parametrize("path", [
    pytest.param(p, id=str(p.relative_to(SHARED_DATA)),
                 marks=[pytest.mark.slow] if p.name in BIG_TABLES else [])
    for p in REAL_TABLES
])
def test_real_table_rows_equal_what_pandas_reads(path: Path):
    records = ingest_records(path)
    members = table_members(str(path)) if path.suffix == ".zip" else [None]
    reasons: Counter = Counter()
    for member in members:
        name = f"{path}!{member}" if member else str(path)
        if member:
            with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
                frame = pandas_frame(handle, name)
            layout = read_layout(str(path), member)
        else:
            frame, layout = pandas_frame(str(path), name), read_layout(str(path))
        mapping = resolve_columns(layout, {})
        assert mapping.error is None
        text, label = mapping.columns["text"], mapping.columns.get("label")
        if layout.header is not None:  # pandas names the columns by the header
            text = frame.columns[text] if isinstance(text, int) else text
            label = frame.columns[label] if isinstance(label, int) else label
        reasons += compare_with_pandas([r for r in records if r[1] == member], frame, text,
                                       label)
    # SOURCE.md: ChnSentiCorp and online_shopping hold one empty review each; nothing else is lost.
    assert set(reasons) <= {"empty_text"} and sum(reasons.values()) <= 1


def test_every_real_table_is_covered():
    if not REAL_TABLES:
        pytest.skip(f"{SHARED_DATA} not found")
    names = {p.name for p in REAL_TABLES}
    assert {"train_full.tsv", "test.csv", "dev.txt", "online_shopping_10_cats.zip",
            "ChnSentiCorp_htl_all.csv"} <= names and len(REAL_TABLES) >= 15


def test_mind_news_tsv_is_unquoted_and_matches_pandas(tmp_path: Path):
    """MIND's titles quote speech (`"It's not like him:" Mother of ...`): read as a table, it is
    sniffed as unquoted, which is how pandas must read it too."""
    path = shared_file("mind-small-train-sample/news.tsv")
    layout = read_layout(str(path))
    assert (layout.delimiter, layout.quoted, layout.header) == ("\t", False, None)
    columns = {"id": "0", "label": "1", "title": "3", "text": "4"}
    records = [r for r in ingest_records(path, columns) if r[2] != "empty_text"]
    frame = pandas_frame(str(path), str(path))
    frame = frame[frame[4].str.strip() != ""]  # articles without an abstract
    assert len(records) == len(frame) > 1500
    assert compare_with_pandas(records, frame, 4, 1) == {}


# === SemEval-style XML without ids or offsets ===


NO_IDS_2014 = """<?xml version="1.0" encoding="UTF-8"?>
<sentences>
    <sentence>
        <text>The food was great but the food portions were small.</text>
        <aspectTerms>
            <aspectTerm term="food" polarity="positive"/>
            <aspectTerm term="food portions" polarity="negative"/>
        </aspectTerms>
        <aspectCategories><aspectCategory category="food" polarity="conflict"/></aspectCategories>
    </sentence>
    <sentence>
        <text>Battery life: about 5 hours.</text>
        <aspectTerms><aspectTerm term="battery life" polarity="neutral"/></aspectTerms>
    </sentence>
    <sentence>
        <text>Nothing to say.</text>
    </sentence>
    <sentence>
        <text>Screen is sharp.</text>
        <aspectTerms><aspectTerm term="keyboard" polarity="positive"/></aspectTerms>
    </sentence>
</sentences>
"""

NO_IDS_2015 = """<?xml version="1.0" encoding="UTF-8"?>
<Reviews>
    <Review>
        <sentences>
            <sentence>
                <text>Great wine list, fair prices.</text>
                <Opinions>
                    <Opinion target="wine list" category="DRINKS#STYLE" polarity="positive"/>
                    <Opinion target="wine list" category="DRINKS#PRICES" polarity="positive"/>
                    <Opinion target="NULL" category="RESTAURANT#PRICES" polarity="positive"/>
                </Opinions>
            </sentence>
            <sentence>
                <text>Slow service.</text>
                <Opinions>
                    <Opinion target="service" category="SERVICE#GENERAL" polarity="negative"/>
                </Opinions>
            </sentence>
        </sentences>
    </Review>
</Reviews>
"""


def test_semeval_xml_without_ids_or_offsets(tmp_path: Path):
    paths = [tmp_path / "Shop_Train_2014.xml", tmp_path / "Shop_Test_2015.xml"]
    paths[0].write_text(NO_IDS_2014)
    paths[1].write_text(NO_IDS_2015)
    assert [detect_format(str(p)) for p in paths] == ["semeval-absa", "semeval-absa"]
    stats = run_ingest(tmp_path / "ws", *[a for p in paths for a in ("--input", str(p))])
    assert_reconciles(stats)
    assert (stats["read"], stats["written"], stats["rejected"]) == (6, 6, 0)
    # Every unit without an id is counted, every term without offsets located or counted missing.
    assert stats["steps"]["absa.derived_id"] == 6
    assert stats["steps"]["absa.offsets_located"] == 6
    assert stats["steps"]["absa.offsets_not_found"] == 1
    docs = {(Path(d["source"]).name, d["source_position"]): d
            for d in read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pylist()}
    first = docs[("Shop_Train_2014.xml", 0)]
    assert first["item"] == "Shop_Train_2014:#0"
    # "food" twice: the bare word is found first, the phrase after it, not inside it.
    assert [(a["term"], a["start"], a["end"]) for a in first["aspects"][:2]] == [
        ("food", 4, 8), ("food portions", 27, 40)]
    assert first["aspects"][2]["category"] == "food" and first["aspects"][2]["start"] == -1
    # Found whatever its case; a term that is not in the text is kept without a span.
    battery = docs[("Shop_Train_2014.xml", 1)]["aspects"][0]
    assert (battery["term"], battery["start"], battery["end"]) == ("battery life", 0, 12)
    assert docs[("Shop_Train_2014.xml", 3)]["aspects"][0]["start"] == -1
    # 2015: the target repeated once per category shares its span; items from the positions.
    wine = docs[("Shop_Test_2015.xml", 0)]
    assert wine["item"] == "Shop_Test_2015:#0" and docs[("Shop_Test_2015.xml", 1)]["item"] == (
        "Shop_Test_2015:#1")
    assert [(a["term"], a["start"]) for a in wine["aspects"]] == [("wine list", 6),
                                                                  ("wine list", 6), ("", -1)]
    assert docs[("Shop_Test_2015.xml", 1)]["aspects"][0]["start"] == 5


def test_locate_term_prefers_free_whole_words():
    assert locate_term("Tea, then tea again.", "tea") == ("tea", 10, 13)
    assert locate_term("Tea, then tea again.", "tea", [(10, 13)]) == ("tea", 0, 3)
    assert locate_term("the screens and the screen", "screen") == ("screen", 20, 26)
    assert locate_term("touchscreen", "screen") == ("screen", 5, 11)
    assert locate_term("no such thing", "battery") == ("battery", -1, -1)


def _strip_attributes(source: Path, target: Path, names: tuple[str, ...]) -> None:
    pattern = re.compile(r" (?:%s)=\"[^\"]*\"" % "|".join(names))
    target.write_text(pattern.sub("", source.read_text(encoding="utf-8")), encoding="utf-8")


def _aspects(path: Path) -> list[list[dict]]:
    """The aspects of each record of a SemEval file, parsed as ingest parses them."""
    from pipelines.ingest.formats.semeval import split_xml

    fn = ParseSemEvalFn({})
    out = []
    for position, record in enumerate(split_xml(str(path))):
        raw, member = record if isinstance(record, tuple) else (record, None)
        (doc,) = fn.process((str(path), position, raw, member))
        assert getattr(doc, "tag", None) != REJECTED_TAG, doc.value
        out.append(doc["aspects"])
    return out


@pytest.mark.parametrize("relative, matched", [
    ("semeval2014-task4-absa/Restaurants_Train_v2.xml", 0.998),
    ("semeval2015-task12-absa/ABSA-15_Restaurants_Train_Final.xml", 0.998),
])
def test_real_semeval_without_ids_ingests_the_same_aspects(tmp_path: Path, relative, matched):
    """The real files with every id stripped: 0 rejects and the same aspects; with the offsets
    stripped too, the located spans are the annotated ones for all but a few repeated words."""
    source = shared_file(relative)
    no_ids, no_offsets = tmp_path / "NoIds_Train.xml", tmp_path / "NoOffsets_Train.xml"
    _strip_attributes(source, no_ids, ("id", "rid"))
    _strip_attributes(source, no_offsets, ("id", "rid", "from", "to"))
    stats = run_ingest(tmp_path / "ws", "--input", str(source), "--input", str(no_ids))
    assert_reconciles(stats)
    by_name = {Path(k).name: v for k, v in stats["by_source"].items()}
    assert by_name[no_ids.name]["rejected"] == 0 and by_name[source.name]["rejected"] == 0
    assert by_name[no_ids.name]["written"] == by_name[source.name]["written"]
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pylist()
    aspects = {name: Counter() for name in (source.name, no_ids.name)}
    for doc in docs:
        for aspect in doc["aspects"]:
            aspects[Path(doc["source"]).name][(aspect["term"], aspect["polarity"],
                                               aspect["category"], aspect["start"])] += 1
    assert aspects[no_ids.name] == aspects[source.name]
    gold, located = _aspects(source), _aspects(no_offsets)
    pairs = [(g, m) for gs, ms in zip(gold, located) for g, m in zip(gs, ms) if g["term"]]
    assert all(m["start"] >= 0 for _, m in pairs)
    assert sum(g == m for g, m in pairs) / len(pairs) >= matched
    assert not rejected_rows(tmp_path / "ws")
