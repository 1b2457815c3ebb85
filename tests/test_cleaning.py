"""Cleaning steps of `opinionrec ingest`: PII scrubbing, near-duplicates, bad input, step counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.ingest.near_dup import find_near_duplicates, lsh_rows, near_duplicate_ids, shingles
from pipelines.ingest.pii import scrub_pii, scrub_pii_edits, shift_offset
from pipelines.records import DOC_SCHEMA, clean_text_steps, read_table, split_sentences

# === PII ===


@pytest.mark.parametrize("text, expected, kinds", [
    ("Mail john.doe+x@mail.example.co.uk today.", "Mail [EMAIL] today.", {"email": 1}),
    ("See https://example.com/a?b=1. Or www.foo.org!", "See [URL]. Or [URL]!", {"url": 2}),
    ("Call 1-800-555-1234 or (555) 123-4567.", "Call [PHONE] or [PHONE].", {"phone": 2}),
    ("London +44 20 7946 0958, ok", "London [PHONE], ok", {"phone": 1}),
    ("客服电话13812345678请联系", "客服电话[PHONE]请联系", {"phone": 1}),
    # Bare domains with a path, no scheme; sentence punctuation after the path stays outside.
    ("Like us on facebook.com/NewAirUSA.", "Like us on [URL].", {"url": 1}),
    ("Redeem at amazon.com/gc/redeem, then bit.ly/3xYz!", "Redeem at [URL], then [URL]!",
     {"url": 2}),
    ("see example.co.uk/page?q=1&r=2#top and www.foo.org", "see [URL] and [URL]", {"url": 2}),
    ("淘宝taobao.com/item很好", "淘宝[URL]很好", {"url": 1}),
])
def test_pii_is_replaced_and_counted(text, expected, kinds):
    assert scrub_pii(text) == (expected, kinds)


@pytest.mark.parametrize("text", [
    "Released 2015-06-12 for $12.99, model AD2600, 1080p, 3 x 250 ml.",
    "ISBN 978-3-16-148410-0, v1.2.3, 10.000.000 units, 100 000 000 dollars, 16:9, 2014 - 2016.",
    "Rated 4.5/5 by 1,234 buyers; user@ home; a.b@c",
    # No scheme, "www." or path: a shop's name, abbreviations, fractions and versions stay.
    "Bought on Amazon.com, e.g./i.e. the U.S./Canada store, 1.5/2.0 GHz, v1.2/v1.3, 3.5mm/6.35mm",
    "and/or w/o 50/50 km/h 24/7 Mon./Tue. No./Qty. p.m./a.m.",
])
def test_numbers_dates_and_prices_are_not_pii(text):
    assert scrub_pii(text) == (text, {})


def test_offsets_follow_the_placeholders():
    text = "mail a@b.com about the screen, see http://x.io/y now"
    scrubbed, _, edits = scrub_pii_edits(text)
    start = text.index("screen")
    assert scrubbed[shift_offset(start, edits):shift_offset(start + 6, edits)] == "screen"
    assert shift_offset(len(text), edits) == len(scrubbed)
    inside = text.index("b.com")  # an offset inside a replaced span moves to the span's end
    assert scrubbed[:shift_offset(inside, edits)] == "mail [EMAIL]"


def test_cleaning_reports_its_steps():
    assert clean_text_steps("plain text") == ("plain text", [])
    text, steps = clean_text_steps("A &amp; <b>B</b>\x07 ＦＵＬＬ\n line")
    assert text == "A & B FULL line"
    assert steps == ["html_tags", "html_entities", "nfkc", "control_chars", "whitespace"]
    assert clean_text_steps("two\nlines")[1] == ["whitespace"]  # a newline is not a control


def test_chinese_and_english_sentences():
    assert split_sentences("房间很干净。早餐也很丰富！服务好吗？好") == [
        "房间很干净。", "早餐也很丰富！", "服务好吗？", "好"]
    assert split_sentences("It works. Dr. Smith agrees! 很好。OK") == [
        "It works.", "Dr. Smith agrees!", "很好。", "OK"]


# === Near-duplicates ===

LONG = ("The battery easily lasts all week and the sound is crisp with deep bass, but the case "
        "feels cheap and the buttons stick sometimes when I press them hard.")


def doc(i: int, text: str, kind: str = "review", source: str = "a") -> dict:
    return {"id": f"d{i}", "kind": kind, "text": text, "title": None, "source": source,
            "source_position": i}


def test_near_duplicates_keep_the_earliest_and_spare_short_and_labelled_texts():
    docs = [
        doc(3, LONG.replace("hard.", "hard!")),  # one shingle of 26 differs: Jaccard 0.93
        doc(1, LONG),
        doc(2, "A completely different review: shipping took too long, the box arrived crushed "
               "and the left earbud never charged, so I sent the whole thing back for a refund."),
        doc(4, "Love it!"), doc(5, "Love it!"),
        doc(6, LONG, kind="labelled"),
        doc(0, LONG, source="b"),  # a later input: ranked after everything of source a
    ]
    assert near_duplicate_ids(docs, 0.8, {"a": 0, "b": 1}) == {"d3": "d1", "d0": "d1"}
    assert near_duplicate_ids(docs, 1.0, {"a": 0, "b": 1}) == {"d0": "d1"}
    assert shingles("Love it!") is None


def test_lsh_bands_keep_recall_at_the_threshold():
    assert [lsh_rows(t) for t in (0.5, 0.8, 0.9, 1.0)] == [2, 4, 8, 64]
    assert find_near_duplicates([], 0.9) == {}


# === The job on bad and dirty input ===


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A review file mixing PII, near-duplicates, a 5 MB field and a truncated last line."""
    folder = tmp_path_factory.mktemp("dirty")
    lines = [
        {"reviewerID": "U1", "asin": "I1", "overall": 5.0, "reviewText": LONG},
        {"reviewerID": "U2", "asin": "I2", "overall": 4.0,
         "reviewText": "Support answered at help@acme.example or +1 (555) 123-4567, see "
                       "https://acme.example/faq. The battery is great.",
         "summary": "Mail me: me@home.example"},
        {"reviewerID": "U3", "asin": "I3", "overall": 4.0, "reviewText": LONG},  # copied
        {"reviewerID": "U4", "asin": "I1", "overall": 5.0, "reviewText": "Love it!"},
        {"reviewerID": "U5", "asin": "I1", "overall": 5.0, "reviewText": "Love it!"},
        {"reviewerID": "U6", "asin": "I4", "overall": 3.0, "reviewText": "x" * 5_000_000},
    ]
    path = folder / "reviews.jsonl"
    body = "\n".join(json.dumps(line) for line in lines)
    path.write_text(body + '\n{"reviewerID": "U7", "asin": "I5", "reviewTe')  # cut mid-record
    return folder, path


def run(folder: Path, path: Path, name: str, *args: str) -> tuple[Path, dict]:
    ws = folder / name
    assert cli.main(["ingest", "--workspace", str(ws), "--input", str(path), *args]) == 0
    return ws, json.loads((ws / "ingest" / "stats.json").read_text())


def test_dirty_file_reconciles_with_every_step_counted(dirty):
    ws, stats = run(*dirty, "default", "--near-duplicates", "0.9")
    assert (stats["read"], stats["written"], stats["rejected"], stats["deduplicated"]) == (
        7, 4, 2, 1)
    assert stats["rejected_by_reason"] == {"invalid_json": 1, "text_too_long": 1}
    assert stats["deduplicated_by_kind"] == {"exact": 0, "near": 1}
    steps = stats["steps"]
    assert (steps["pii.email"], steps["pii.phone"], steps["pii.url"], steps["pii.documents"]) == (
        2, 1, 1, 1)
    # Parse-time steps count the parsed documents, the near-duplicate removed later included.
    assert steps["language.en"] == 5 and steps["sentences"] >= 6
    docs = {d["id"]: d for d in read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist()}
    assert set(docs) == {"reviews.jsonl:0", "reviews.jsonl:1", "reviews.jsonl:3",
                         "reviews.jsonl:4"}  # both "Love it!" stay: different users
    scrubbed = docs["reviews.jsonl:1"]
    assert scrubbed["text"] == ("Support answered at [EMAIL] or [PHONE], see [URL]. "
                                "The battery is great.")
    assert scrubbed["title"] == "Mail me: [EMAIL]"
    assert scrubbed["sentences"][-1] == "The battery is great."
    rejected = {}
    for line in (ws / "ingest" / "rejected").glob("*.jsonl"):
        for row in map(json.loads, line.read_text().splitlines()):
            rejected[row["source_position"]] = row
    assert rejected[5]["reason"] == "text_too_long" and len(rejected[5]["raw"]) > 5_000_000
    assert rejected[6]["reason"] == "invalid_json" and rejected[6]["raw"].endswith('"reviewTe')


def test_options_keep_pii_and_near_duplicates_off_by_default(dirty):
    ws, stats = run(*dirty, "keep", "--keep-pii", "--max-text-chars", "6000000")
    assert (stats["written"], stats["rejected"], stats["deduplicated"]) == (6, 1, 0)
    assert not any(name.startswith("pii.") for name in stats["steps"])
    docs = read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist()
    assert any("help@acme.example" in d["text"] for d in docs)
    assert max(len(d["text"]) for d in docs) == 5_000_000


def test_bad_options_are_clear_errors_before_anything_runs(dirty, caplog, capsys):
    folder, path = dirty
    for args, message in [
        (["--columns", "txt=review_body"], "`--columns` maps the fields text, title"),
        (["--columns", "text"], "`--columns` wants FIELD=COLUMN pairs"),
        (["--near-duplicates", "1.5"], "`--near-duplicates` must be within 0-1"),
    ]:
        ws = folder / "bad"
        assert cli.main(["ingest", "--workspace", str(ws), "--input", str(path), *args]) == 2
        assert message in caplog.text, args
        assert not (ws / "ingest" / "stats.json").exists()
    with pytest.raises(SystemExit) as exit_info:  # argparse's own check of the choices
        cli.main(["ingest", "--workspace", str(ws), "--input", str(path), "--format", "nope"])
    assert exit_info.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_labelled_datasets_without_titles_flow_into_vocab_and_pretraining_data(tmp_path: Path):
    """Labelled sentences (no title, no user or item) ingest, train a vocabulary and become
    pretraining instances: the stages after ingest must not assume review-shaped documents."""
    absa = Path(__file__).parent / "fixtures" / "ingest" / "absa"
    ws = str(tmp_path / "ws")
    assert cli.main(["ingest", "--workspace", ws, "--input", str(absa / "Cafes_Train_2014.xml"),
                     "--input", str(absa / "tweets_train.raw"),
                     "--input", str(absa / "Widget_X100.txt")]) == 0
    assert cli.main(["vocab", "--workspace", ws, "--vocabulary-size", "60",
                     "--min-aspect-count", "1"]) == 0
    assert cli.main(["pretraining-data", "--workspace", ws, "--sequence-length", "32",
                     "--min-tokens", "2"]) == 0
    stats = json.loads((tmp_path / "ws" / "pretraining_data" / "stats.json").read_text())
    assert stats["documents_used"] > 0
    assert stats["documents_read"] == stats["documents_used"] + stats["documents_skipped"]


def test_a_vocabulary_too_small_for_the_characters_is_a_clear_error(dirty, caplog):
    ws, _ = run(*dirty, "tiny-vocab")
    assert cli.main(["vocab", "--workspace", str(ws), "--vocabulary-size", "12"]) == 2
    assert "smaller than the number of distinct characters" in caplog.text
    assert not (ws / "vocab" / "spm.model").exists()
