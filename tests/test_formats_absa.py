"""The ABSA input formats of `opinionrec ingest`: SemEval XML, Dong-2014 .raw, Hu & Liu 2004 .txt.

Fixture tests run one ingest over the hand-written files in fixtures/ingest/absa; the real-data
tests ingest each dataset of ../shared/data and check the counts its SOURCE.md gives.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pipelines.ingest.formats import REGISTRY
from pipelines.ingest.formats.semeval import REJECT_INVALID_XML, relocate_span, split_xml
from pipelines.ingest.inputs import detect_format
from pipelines.ingest.parsing import REJECTED_TAG
from pipelines.records import DOC_SCHEMA, clean_text, read_table
from tests.conftest import shared_file
from tests.test_ingest import assert_reconciles, rejected_rows, run_ingest

FIXTURES = Path(__file__).parent / "fixtures" / "ingest" / "absa"
SEMEVAL_2014 = FIXTURES / "Cafes_Train_2014.xml"
SEMEVAL_2015 = FIXTURES / "Cafes_Test_2015.xml"
SEMEVAL_SB2 = FIXTURES / "Cafes_Train_English_SB2.xml"
TRUNCATED = FIXTURES / "Cafes_Test_truncated.xml"
DONG = FIXTURES / "tweets_train.raw"
HU_LIU = FIXTURES / "Widget_X100.txt"
ALL_FIXTURES = (SEMEVAL_2014, SEMEVAL_2015, SEMEVAL_SB2, TRUNCATED, DONG, HU_LIU)


def counts(stats: dict, path: Path | str) -> tuple[int, int, int, int]:
    entry = stats["by_source"][str(path)]
    return entry["read"], entry["written"], entry["rejected"], entry["deduplicated"]


def docs_by_source(ws: Path) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for doc in read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist():
        out.setdefault(Path(doc["source"]).name, {})[doc["source_position"]] = doc
    return out


def assert_spans(docs) -> None:
    """Every located aspect's span in `text` is its term."""
    for doc in docs:
        for aspect in doc["aspects"]:
            if aspect["start"] >= 0:
                assert doc["text"][aspect["start"]:aspect["end"]] == aspect["term"], doc


# === Fixtures ===


@pytest.fixture(scope="module")
def absa_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    ws = tmp_path_factory.mktemp("absa") / "ws"
    args = [a for path in ALL_FIXTURES for a in ("--input", str(path))]
    stats = run_ingest(ws, *args)
    return ws, stats, docs_by_source(ws)


def test_formats_are_detected_from_name_and_first_lines():
    assert {p.name: detect_format(str(p)) for p in ALL_FIXTURES} == {
        SEMEVAL_2014.name: "semeval-absa",
        SEMEVAL_2015.name: "semeval-absa",
        SEMEVAL_SB2.name: "semeval-absa",
        TRUNCATED.name: "semeval-absa",
        DONG.name: "dong-twitter",
        HU_LIU.name: "hu-liu",
    }


def test_hu_liu_readme_is_not_taken_for_data():
    readme = shared_file("hu-liu-2004-customer-reviews/Readme.txt")
    assert detect_format(str(readme)) is None  # the banner is the same; the name tells


def test_fixture_counts_reconcile(absa_run):
    _, stats, _ = absa_run
    assert_reconciles(stats)
    assert counts(stats, SEMEVAL_2014) == (11, 6, 5, 0)  # 2 identical texts, both kept
    assert counts(stats, SEMEVAL_2015) == (5, 4, 1, 0)
    assert counts(stats, SEMEVAL_SB2) == (3, 3, 0, 0)  # a Review without rid is kept
    assert counts(stats, TRUNCATED) == (3, 2, 1, 0)
    assert counts(stats, DONG) == (7, 4, 3, 0)  # a repeated example is kept
    assert counts(stats, HU_LIU) == (8, 6, 2, 0)  # "##1 ." twice in a review, both kept
    assert stats["by_source"][str(HU_LIU)]["blank_lines"] == 1
    assert stats["rejected_by_reason"][REJECT_INVALID_XML] == 1


def test_fixture_bad_records_are_rejected_with_reasons(absa_run):
    ws, _, _ = absa_run
    rows = rejected_rows(ws)
    got = {(Path(r["source"]).name, r["source_position"]): r["reason"] for r in rows}
    assert got == {
        (SEMEVAL_2014.name, 4): "out_of_range",  # polarity="so-so"
        (SEMEVAL_2014.name, 5): "missing_field",  # no <text>
        (SEMEVAL_2014.name, 6): "wrong_type",  # from="zero"
        (SEMEVAL_2014.name, 7): "empty_text",  # <text>   </text>
        (SEMEVAL_2014.name, 8): "out_of_range",  # to beyond the text
        (SEMEVAL_2015.name, 4): "missing_field",  # Opinion with neither target nor category
        (TRUNCATED.name, 2): "invalid_xml",
        (DONG.name, 3): "missing_field",  # no $T$
        (DONG.name, 4): "out_of_range",  # polarity 2
        (DONG.name, 6): "wrong_column_count",  # 2 lines at the end of the file
        (HU_LIU.name, 5): "missing_field",  # a single '#'
        (HU_LIU.name, 6): "empty_text",
    }
    by_key = {(Path(r["source"]).name, r["source_position"]): r for r in rows}
    assert all(r["detail"] and r["raw"] for r in rows)
    # A bad sentence is rejected alone, as its own re-serialised element.
    assert by_key[(SEMEVAL_2014.name, 4)]["raw"].startswith('<sentence id="105">')
    assert "so-so" in by_key[(SEMEVAL_2014.name, 4)]["detail"]
    # The break of a truncated file keeps what could not be parsed, and says where.
    truncated = by_key[(TRUNCATED.name, 2)]
    assert '<sentence id="3">' in truncated["raw"] and "The cho" in truncated["raw"]
    assert "line" in truncated["detail"]
    assert by_key[(DONG.name, 6)]["raw"] == "a last tweet about $T$\nradio"
    # A Hu & Liu dead letter shows the review's title line with the sentence line.
    assert by_key[(HU_LIU.name, 5)]["raw"] == "[t]not for me\nbutton[-2]#the buttons stick . "


def test_semeval_2014_documents(absa_run):
    _, _, docs = absa_run
    sentences = docs[SEMEVAL_2014.name]
    assert sorted(sentences) == [0, 1, 2, 3, 9, 10]
    assert_spans(sentences.values())
    first = sentences[0]
    assert first["kind"] == "labelled" and first["split"] == "train"
    assert first["item"] == "Cafes_Train_2014:101"
    assert first["id"] == f"{SEMEVAL_2014.name}:0" and first["user"] is None
    assert first["aspects"] == [
        {"term": "espresso", "start": 4, "end": 12, "polarity": "negative", "category": ""},
        {"term": "staff", "start": 32, "end": 37, "polarity": "positive", "category": ""},
        {"term": "", "start": -1, "end": -1, "polarity": "negative", "category": "food"},
        {"term": "", "start": -1, "end": -1, "polarity": "positive", "category": "service"},
    ]
    assert first["labels"] == ["food", "service"] and first["label"] is None  # mixed
    # Cleaning collapses whitespace and unescapes "&amp;": the spans move with it.
    cleaned = sentences[1]
    assert cleaned["text"] == "Great cakes & tea, friendly owner."
    assert [(a["term"], a["start"]) for a in cleaned["aspects"][:2]] == [("cakes", 6),
                                                                         ("owner", 28)]
    assert cleaned["label"] == "positive" and cleaned["labels"] == ["food"]
    # Identical texts under different sentence ids are both written (`item` differs).
    assert (sentences[2]["text"], sentences[3]["text"]) == ("I love it!", "I love it!")
    assert (sentences[2]["item"], sentences[3]["item"]) == ("Cafes_Train_2014:103",
                                                            "Cafes_Train_2014:104")
    assert sentences[2]["aspects"] == [] and sentences[2]["label"] is None
    # A sentence without an id is kept, its id derived from the file and its position.
    assert sentences[9]["item"] == "Cafes_Train_2014:#9"
    # Of two occurrences of "latte", the one at the source offset is taken.
    latte = sentences[10]["aspects"][0]
    assert (latte["term"], latte["start"], latte["polarity"]) == ("latte art", 24, "conflict")


def test_semeval_2015_sentences_and_2016_text_level_reviews(absa_run):
    _, _, docs = absa_run
    sentences = docs[SEMEVAL_2015.name]
    assert sorted(sentences) == [0, 1, 2, 3]
    assert [sentences[i]["item"].split(":", 1)[1] for i in range(4)] == ["7:0", "7:1", "7:2",
                                                                         "8:0"]
    assert all(d["split"] == "test" for d in sentences.values())
    assert_spans(sentences.values())
    assert sentences[0]["aspects"] == [{"term": "place", "start": 14, "end": 19,
                                        "polarity": "positive", "category": "RESTAURANT#GENERAL"}]
    assert sentences[1]["aspects"][0]["term"] == "" and sentences[1]["aspects"][0]["start"] == -1
    assert sentences[1]["label"] == "negative" and sentences[1]["labels"] == ["RESTAURANT#PRICES"]
    assert sentences[2]["aspects"] == [] and sentences[2]["text"] == "We came by bus."
    assert sentences[3]["labels"] == ["SERVICE#GENERAL"] and sentences[3]["label"] is None

    reviews = docs[SEMEVAL_SB2.name]
    assert sorted(reviews) == [0, 1, 2]
    assert reviews[2]["item"] == "Cafes_Train_English_SB2:#2"  # no rid: file and position
    review = reviews[0]
    assert review["item"] == "Cafes_Train_English_SB2:501" and review["split"] == "train"
    assert review["text"] == "Good coffee. Rude staff, though."
    assert review["sentences"] == ["Good coffee.", "Rude staff, though."]
    assert [(a["category"], a["polarity"], a["start"]) for a in review["aspects"]] == [
        ("DRINKS#QUALITY", "positive", -1), ("SERVICE#GENERAL", "negative", -1),
        ("RESTAURANT#GENERAL", "conflict", -1)]
    assert review["label"] is None and reviews[1]["label"] == "positive"


def test_dong_documents(absa_run):
    _, _, docs = absa_run
    tweets = docs[DONG.name]
    assert sorted(tweets) == [0, 1, 2, 5]
    assert_spans(tweets.values())
    first = tweets[0]
    assert first["text"] == "i love the new walkman , great sound ."
    assert first["label"] == "positive" and first["labels"] == ["positive"]
    assert first["aspects"] == [{"term": "walkman", "start": 15, "end": 22,
                                 "polarity": "positive", "category": ""}]
    assert first["split"] == "train" and first["item"] == "tweets_train:0"
    assert tweets[1]["label"] == "negative" and tweets[1]["aspects"][0]["start"] == 0
    # Every $T$ is replaced; the aspect is the first occurrence.
    assert tweets[2]["text"] == "watching the match with the match fans"
    assert tweets[2]["aspects"][0]["start"] == 9 and tweets[2]["label"] == "neutral"
    assert tweets[5]["text"] == tweets[2]["text"] and tweets[5]["item"] != tweets[2]["item"]


def test_hu_liu_documents(absa_run):
    _, _, docs = absa_run
    lines = docs[HU_LIU.name]
    assert sorted(lines) == [0, 1, 2, 3, 4, 7]
    assert_spans(lines.values())
    first = lines[0]
    assert first["text"] == "the battery life is great ."
    assert first["title"] == "great little widget"
    assert first["item"] == "Widget_X100:1:0" and first["split"] is None
    assert first["aspects"] == [{"term": "battery life", "start": 4, "end": 16,
                                 "polarity": "positive", "category": "+2"}]
    assert first["label"] == "positive" and first["labels"] == ["battery life"]
    second = lines[1]
    assert [(a["term"], a["start"], a["polarity"], a["category"]) for a in second["aspects"]] == [
        ("screen", 4, "negative", "-1"), ("price", -1, "positive", "+3 u")]
    assert second["label"] is None and second["labels"] == ["screen", "price"]
    assert (lines[2]["item"], lines[3]["item"]) == ("Widget_X100:1:2", "Widget_X100:1:3")
    assert lines[2]["aspects"] == [] and lines[2]["label"] is None
    # Tags with typos are read leniently.
    odd = lines[4]
    assert odd["title"] == "not for me" and odd["item"] == "Widget_X100:2:0"
    assert [(a["term"], a["start"], a["category"]) for a in odd["aspects"]] == [
        ("size", -1, "+2 u"), ("look", odd["text"].index("look"), "+1")]
    assert lines[7]["aspects"][0]["polarity"] == "positive"
    assert lines[7]["aspects"][0]["category"] == "+"


# === Unit checks of the pieces ===


def test_relocate_span_follows_cleaning():
    raw = "Great  cakes &amp; tea,\t friendly owner"
    text = clean_text(raw)
    assert relocate_span(raw, text, "cakes", 7) == ("cakes", 6, 11)
    assert relocate_span(raw, text, "owner", 34)[1:] == (text.index("owner"), len(text))
    assert relocate_span(raw, text, "  ", 0) == ("", -1, -1)
    assert relocate_span(raw, text, "scones", 0) == ("scones", -1, -1)
    assert relocate_span("The TEA", "The TEA", "tea", 4) == ("tea", 4, 7)  # case-insensitive


def test_xml_error_in_the_middle_rejects_the_rest_as_one_record(tmp_path: Path):
    text = SEMEVAL_2014.read_text().replace('<sentence id="104">', '<sentence id="104" <oops>')
    path = tmp_path / "broken_Train.xml"
    path.write_text(text)
    records = list(split_xml(str(path)))
    assert all(isinstance(r, bytes) for r in records[:3])
    raw, member = records[3]
    assert len(records) == 4 and member.startswith("xml-error: ")
    assert raw.lstrip().startswith(b'<sentence id="104" <oops>') and raw.endswith(b"</sentences>\n")
    parser = REGISTRY["semeval-absa"].parser({})
    out = list(parser.process((str(path), 3, raw, member)))
    assert out[0].tag == REJECTED_TAG and out[0].value["reason"] == REJECT_INVALID_XML


def test_file_that_is_not_xml_is_one_rejected_record(tmp_path: Path):
    path = tmp_path / "notes_test.xml"
    path.write_text("<sentences>\nthis & that\n")
    stats = run_ingest(tmp_path / "ws", "--input", str(path), "--format", "semeval-absa")
    assert counts(stats, path) == (1, 0, 1, 0)
    assert stats["rejected_by_reason"] == {REJECT_INVALID_XML: 1}


def test_sb2_reviews_are_records_without_the_file_name_hint(tmp_path: Path):
    path = tmp_path / "renamed.xml"
    shutil.copy(SEMEVAL_SB2, path)
    records = list(split_xml(str(path)))
    assert [r.split(b">", 1)[0] for r in records] == [b'<Review rid="501"', b'<Review rid="502"',
                                                       b"<Review"]


# === Real data (skipped when ../shared/data is absent): the counts of each SOURCE.md ===


def ingest_real(tmp_path: Path, paths: list[Path]) -> tuple[dict, dict[str, list[dict]]]:
    ws = tmp_path / "ws"
    stats = run_ingest(ws, *[a for p in paths for a in ("--input", str(p))])
    assert_reconciles(stats)
    docs: dict[str, list[dict]] = {}
    for doc in read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist():
        docs.setdefault(Path(doc["source"]).name, []).append(doc)
    assert_spans(d for file_docs in docs.values() for d in file_docs)
    return stats, docs


def polarity_counts(docs: list[dict], terms: bool | None = None) -> dict[str, int]:
    """Aspect polarities; terms=True: aspects with a term only, False: without."""
    return dict(Counter(
        a["polarity"] for d in docs for a in d["aspects"]
        if terms is None or bool(a["term"]) == terms
    ))


def test_real_semeval_2014(tmp_path: Path):
    folder = shared_file("semeval2014-task4-absa")
    stats, docs = ingest_real(tmp_path, sorted(folder.glob("*.xml")))
    sentences = {"Restaurants_Train_v2.xml": 3041, "Restaurants_Test_Gold.xml": 800,
                 "Laptop_Train_v2.xml": 3045, "Laptops_Test_Gold.xml": 800}
    for name, n in sentences.items():
        assert counts(stats, folder / name) == (n, n, 0, 0), name
        assert sorted(d["source_position"] for d in docs[name]) == list(range(n))
    terms = {
        "Restaurants_Train_v2.xml": {"positive": 2164, "negative": 805, "neutral": 633,
                                     "conflict": 91},
        "Restaurants_Test_Gold.xml": {"positive": 728, "negative": 196, "neutral": 196,
                                      "conflict": 14},
        "Laptop_Train_v2.xml": {"positive": 987, "negative": 866, "neutral": 460, "conflict": 45},
        "Laptops_Test_Gold.xml": {"positive": 341, "negative": 128, "neutral": 169,
                                  "conflict": 16},
    }
    categories = {"Restaurants_Train_v2.xml": 3713, "Restaurants_Test_Gold.xml": 1025,
                  "Laptop_Train_v2.xml": 0, "Laptops_Test_Gold.xml": 0}
    for name in sentences:
        assert polarity_counts(docs[name], terms=True) == terms[name], name
        assert sum(polarity_counts(docs[name], terms=False).values()) == categories[name], name
        # Every aspect term is found in the cleaned text (9 Laptop_Train_v2 offsets are off).
        assert all(a["start"] >= 0 for d in docs[name] for a in d["aspects"] if a["term"])
    assert {d["split"] for d in docs["Laptop_Train_v2.xml"]} == {"train"}
    assert {d["split"] for d in docs["Laptops_Test_Gold.xml"]} == {"test"}


def test_real_semeval_2015(tmp_path: Path):
    folder = shared_file("semeval2015-task12-absa")
    stats, docs = ingest_real(tmp_path, sorted(folder.glob("*.xml")))
    expected = {  # sentences, opinions (pos/neg/neu), explicit targets
        "ABSA-15_Restaurants_Train_Final.xml": (1315, (1198, 403, 53), 1279),
        "ABSA15_Restaurants_Test.xml": (685, (454, 346, 45), 597),
        "ABSA-15_Laptops_Train_Data.xml": (1739, (1103, 765, 106), 0),
        "ABSA15_Laptops_Test.xml": (761, (541, 329, 79), 0),
        "ABSA15_Hotels_Test.xml": (266, (243, 84, 12), 264),
    }
    for name, (n, (pos, neg, neu), targets) in expected.items():
        assert counts(stats, folder / name) == (n, n, 0, 0), name
        assert polarity_counts(docs[name]) == {"positive": pos, "negative": neg,
                                               "neutral": neu}, name
        assert sum(1 for d in docs[name] for a in d["aspects"] if a["term"]) == targets, name


def test_real_semeval_2016_sentence_and_text_level(tmp_path: Path):
    folder = shared_file("semeval2016-task5-absa-train")
    stats, docs = ingest_real(tmp_path, sorted(folder.glob("*.xml")))
    expected = {  # records, opinions (pos/neg/neu/conflict), explicit targets
        "ABSA16_Restaurants_Train_SB1_v2.xml": (2000, (1657, 749, 101, 0), 1880),
        "ABSA16_Laptops_Train_SB1_v2.xml": (2500, (1637, 1084, 188, 0), 0),
        "ABSA16_Restaurants_Train_English_SB2.xml": (335, (1012, 327, 55, 41), 0),
        "ABSA16_Laptops_Train_English_SB2.xml": (395, (1210, 708, 123, 41), 0),
    }
    for name, (n, polarities, targets) in expected.items():
        assert counts(stats, folder / name) == (n, n, 0, 0), name
        got = polarity_counts(docs[name])
        assert tuple(got.get(p, 0) for p in ("positive", "negative", "neutral", "conflict")) \
            == polarities, name
        assert sum(1 for d in docs[name] for a in d["aspects"] if a["term"]) == targets, name
    # SB2: one document per review, its sentences joined.
    reviews = docs["ABSA16_Restaurants_Train_English_SB2.xml"]
    assert all(d["item"].count(":") == 1 for d in reviews)
    assert sum(len(d["sentences"]) for d in reviews) >= 1950 * 0.9


def test_real_dong_twitter(tmp_path: Path):
    folder = shared_file("twitter-dong2014-tdsc")
    stats, docs = ingest_real(tmp_path, [folder / "train.raw", folder / "test.raw"])
    assert counts(stats, folder / "train.raw") == (6248, 6248, 0, 0)
    assert counts(stats, folder / "test.raw") == (692, 692, 0, 0)
    assert Counter(d["label"] for d in docs["train.raw"]) == {
        "neutral": 3127, "positive": 1561, "negative": 1560}
    assert Counter(d["label"] for d in docs["test.raw"]) == {
        "neutral": 346, "positive": 173, "negative": 173}
    assert {d["split"] for d in docs["train.raw"]} == {"train"}
    assert all(len(d["aspects"]) == 1 and d["aspects"][0]["start"] >= 0
               for d in docs["train.raw"] + docs["test.raw"])
    assert not any("$T$" in d["text"] for d in docs["train.raw"])


def test_real_hu_liu(tmp_path: Path):
    folder = shared_file("hu-liu-2004-customer-reviews")
    files = sorted(p for p in folder.glob("*.txt") if p.name != "Readme.txt")
    stats, docs = ingest_real(tmp_path, files)
    # (sentence lines with "##", reviews, [+n]/[-n] tags on them) from SOURCE.md
    expected = {
        "Apex_AD2600_Progressive-scan_DVD_player.txt": (739, 99, 428),
        "Canon_G3.txt": (597, 45, 285),
        "Creative_Labs_Nomad_Jukebox_Zen_Xtra_40GB.txt": (1716, 95, 845),
        "Nikon_coolpix_4300.txt": (346, 34, 203),
        "Nokia_6610.txt": (546, 40, 338),
    }
    # Tags with typos that are still read as opinions: Apex "[-3[p]", Canon one "[+n" without
    # "]", Creative "[+]" (and "look", "[2]" without a sign), Nokia "{+1]" (and "feature" untagged).
    lenient = {"Apex_AD2600_Progressive-scan_DVD_player.txt": 1, "Canon_G3.txt": 1,
               "Creative_Labs_Nomad_Jukebox_Zen_Xtra_40GB.txt": 1, "Nikon_coolpix_4300.txt": 0,
               "Nokia_6610.txt": 1}
    for name, (lines, reviews, tags) in expected.items():
        entry = stats["by_source"][str(folder / name)]
        bad = 1 if name.startswith("Apex") else 0  # one line has "#" for "##"
        assert counts(stats, folder / name) == (lines + bad, lines, bad, 0), name
        assert len({d["item"].split(":")[-2] for d in docs[name]}) == reviews, name
        with_polarity = sum(1 for d in docs[name] for a in d["aspects"] if a["polarity"])
        assert with_polarity == tags + lenient[name], name
        assert entry["rejected_by_reason"] == ({"missing_field": 1} if bad else {})
    json.dumps(stats)  # stats stay plain JSON
