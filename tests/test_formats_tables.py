"""Ingest formats for tables (CSV/TSV/JSON lines/Parquet/zip), CLINC150, text folders and Yelp:
fixture files with good and bad rows, detection, and the real datasets' counts (SOURCE.md)."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import cli
from pipelines.ingest import detect_format
from pipelines.ingest.formats.table import ParseTableFn, looks_like_header
from pipelines.ingest.parsing import REJECTED_TAG, ParseOptions
from pipelines.records import DOC_SCHEMA, ITEM_SCHEMA, read_table
from tests.conftest import shared_file

DEDUP_SHOPPING = 54  # identical reviews (49 of them with another category or label)
DEDUP_SST2_TRAIN = 371  # phrases that occur more than once (5 with both labels)
TABLES = Path(__file__).parent / "fixtures" / "ingest" / "tables"


def run_ingest(ws: Path, *args: str) -> dict:
    assert cli.main(["ingest", "--workspace", str(ws), "--near-duplicates", "0", *args]) == 0
    return json.loads((ws / "ingest" / "stats.json").read_text())


def assert_reconciles(stats: dict) -> None:
    for counts in [stats, *stats["by_source"].values()]:
        assert counts["read"] == counts["written"] + counts["rejected"] + counts["deduplicated"]
    assert sum(stats["rejected_by_reason"].values()) == stats["rejected"]


def rejected(ws: Path) -> dict[tuple[str, int], dict]:
    rows = {}
    for path in sorted((ws / "ingest" / "rejected").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            rows[(Path(row["source"]).name, row["source_position"])] = row
    return rows


def docs_by_position(ws: Path, name: str | None = None) -> dict[int, dict]:
    docs = read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist()
    return {d["source_position"]: d for d in docs if name is None or d["id"].startswith(name)}


def parse_one(raw: bytes, source: Path, columns: dict[str, str] | None = None,
              position: int = 0, member: str | None = None):
    """One record through ParseTableFn: ("doc", document) or (reason, detail)."""
    fn = ParseTableFn({}, ParseOptions(columns=columns or {}))
    out = list(fn.process((str(source), position, raw, member)))
    assert len(out) == 1
    if getattr(out[0], "tag", None) == REJECTED_TAG:
        return out[0].value["reason"], out[0].value["detail"]
    return "doc", out[0]


# === CSV / TSV / JSON lines on fixtures ===


def test_review_csv_multiline_fields_and_bad_rows(tmp_path: Path):
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(TABLES / "reviews.csv"))
    assert_reconciles(stats)
    source = stats["by_source"][str(TABLES / "reviews.csv")]
    assert source["format"] == "table"
    # 9 records (header skipped, trailing blank line counted as blank), row 0 spans two lines.
    assert (source["read"], source["written"], source["deduplicated"]) == (9, 3, 1)
    assert source["blank_lines"] == 1
    reasons = {pos: row["reason"] for (_, pos), row in rejected(ws).items()}
    assert reasons == {2: "wrong_column_count", 3: "empty_text", 4: "invalid_utf8",
                       5: "out_of_range", 7: "missing_field"}
    bad = rejected(ws)
    assert bad[("reviews.csv", 2)]["raw"] == "U3,P2,4,Short row"
    assert "expected 6 columns" in bad[("reviews.csv", 2)]["detail"]
    assert "raw_b64" in bad[("reviews.csv", 4)]
    assert "customer_id" in bad[("reviews.csv", 7)]["detail"]
    docs = docs_by_position(ws)
    assert sorted(docs) == [0, 1, 6]  # 8 repeats 1 exactly: a review, de-duplicated
    first = docs[0]
    assert first["kind"] == "review" and (first["user"], first["item"]) == ("U1", "P1")
    assert first["text"] == 'Boils fast. Quiet too, and the "auto off" works.'
    assert first["title"] == "Great kettle" and first["rating"] == 5.0
    assert first["timestamp"] == int(dt.datetime(2021, 3, 4, tzinfo=dt.timezone.utc).timestamp())
    assert first["sentences"] == ["Boils fast.", 'Quiet too, and the "auto off" works.']
    assert docs[6]["text"] == "电池很好,音质一般。" and docs[6]["language"] == "zh"


def test_headerless_tsv_and_jsonl_in_one_run(tmp_path: Path):
    ws = tmp_path / "ws"
    inputs = [TABLES / n for n in ("headerless.csv", "sentences.tsv", "topics.jsonl")]
    stats = run_ingest(ws, *[a for p in inputs for a in ("--input", str(p))])
    assert_reconciles(stats)
    counts = {Path(k).name: (v["read"], v["written"], v["rejected"])
              for k, v in stats["by_source"].items()}
    assert counts == {"headerless.csv": (4, 3, 1), "sentences.tsv": (4, 3, 1),
                      "topics.jsonl": (5, 2, 3)}
    reasons = {k: row["reason"] for k, row in rejected(ws).items()}
    assert reasons == {
        ("headerless.csv", 3): "wrong_column_count",
        ("sentences.tsv", 2): "wrong_column_count",
        ("topics.jsonl", 1): "invalid_json",
        ("topics.jsonl", 2): "missing_field",
        ("topics.jsonl", 4): "wrong_type",
    }
    assert "'content'" in rejected(ws)[("topics.jsonl", 2)]["detail"]
    # AG News layout without a header: class, title, description.
    news = docs_by_position(ws, "headerless.csv")
    assert (news[1]["label"], news[1]["title"]) == ("4", "New chip unveiled")
    assert news[1]["text"] == 'A faster "edge" processor, announced today.'
    assert news[1]["kind"] == "labelled"
    # GLUE TSV: no quoting, the header skipped, labels as given.
    sentences = docs_by_position(ws, "sentences.tsv")
    assert [sentences[p]["label"] for p in (0, 1, 3)] == ["1", "0", "1"]
    assert sentences[3]["text"] == '"quoted" words stay as they are'
    topics = docs_by_position(ws, "topics.jsonl")
    assert (topics[0]["label"], topics[0]["split"], topics[0]["language"]) == (
        "business", "train", "en")
    assert (topics[3]["label"], topics[3]["split"], topics[3]["language"]) == (
        "sport", "test", "zh")
    # An optional key missing from one JSON record is a null; the text or label missing is not.
    raw = b'{"content": "No split here.", "topic": "misc"}'
    kind, doc = parse_one(raw, TABLES / "topics.jsonl")
    assert kind == "doc" and doc["split"] is None and doc["label"] == "misc"
    reason, detail = parse_one(b'{"content": "No label."}', TABLES / "topics.jsonl")
    assert reason == "missing_field" and "'topic'" in detail


def test_columns_by_name_and_index(tmp_path: Path):
    source = TABLES / "custom.csv"
    good = b"U1,I1,Works well.,good"
    kind, doc = parse_one(good, source, {"text": "words", "label": "verdict", "user": "0",
                                         "item": "1"})
    assert kind == "doc"
    assert (doc["kind"], doc["user"], doc["item"], doc["label"], doc["text"]) == (
        "review", "U1", "I1", "good", "Works well.")
    # Only the text named by index: the header still names no other known column.
    kind, doc = parse_one(good, source, {"text": "2"})
    assert kind == "doc" and doc["kind"] == "labelled" and doc["label"] is None
    # A mapped column the header lacks: every row rejected, naming the column and the header.
    reason, detail = parse_one(good, source, {"text": "review_body"})
    assert reason == "missing_field"
    assert "'review_body'" in detail and "'words'" in detail
    reason, detail = parse_one(good, source, {"txt": "words"})
    assert reason == "missing_field" and "txt" in detail
    # No known column and no --columns: a clear request naming the columns seen.
    reason, detail = parse_one(good, source)
    assert reason == "missing_field"
    assert "--columns text=" in detail and "'who'" in detail and "'verdict'" in detail
    # The whole job: the mapping from the command line.
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(source), "--columns", "text=words,label=3")
    assert (stats["read"], stats["written"]) == (2, 2)
    assert {d["label"] for d in docs_by_position(ws).values()} == {"good", "bad"}


def test_header_inference():
    assert looks_like_header(["label", "review"], [["1", "很好"]])
    assert looks_like_header(["who", "what"], [["U1", "Works well."]])
    assert not looks_like_header(["3", "Fears for pension", "Unions say ..."], [])
    assert not looks_like_header(["体验2D巅峰 倚天屠龙记", "8"], [["标题", "5"]])
    assert not looks_like_header(["good", "bad"], [["fine", "poor"]])


def test_parquet_and_zip_members(tmp_path: Path):
    table = pa.table({"review": ["Solid build.", None, "很好用", "Solid build."],
                      "label": [1, 0, 1, 1], "stars": [4.0, 2.0, 5.0, 4.0]})
    pq.write_table(table, tmp_path / "part.parquet")
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(TABLES / "sentences.tsv", "data/sentences.tsv")
        zf.writestr("README.md", "not a table")
        zf.writestr("__MACOSX/._sentences.tsv", "resource fork")
        zf.write(tmp_path / "part.parquet", "data/part.parquet")
    assert detect_format(str(archive)) == "table"
    assert detect_format(str(tmp_path / "part.parquet")) == "table"
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(archive))
    assert_reconciles(stats)
    # sentences.tsv: 4 rows (1 wrong count); part.parquet: 4 rows (1 null text; 1 repeat).
    assert (stats["read"], stats["rejected"]) == (8, 2)
    assert stats["rejected_by_reason"] == {"missing_field": 1, "wrong_column_count": 1}
    docs = read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist()
    by_text = {d["text"]: d for d in docs}
    assert by_text["很好用"]["label"] == "1" and by_text["很好用"]["language"] == "zh"
    # Positions run on across members: the TSV's 4 rows, then the Parquet rows.
    assert by_text["很好用"]["source_position"] == 6
    assert by_text["Solid build."]["kind"] == "labelled"  # a label and no user/item
    assert stats["written"] + stats["deduplicated"] == 6


# === CLINC150, text folders, Yelp ===


def test_clinc_splits_and_labels(tmp_path: Path):
    path = TABLES / "clinc_small.json"
    assert detect_format(str(path)) == "clinc"
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(path))
    assert_reconciles(stats)
    assert (stats["read"], stats["written"], stats["rejected"]) == (8, 6, 2)
    assert stats["rejected_by_reason"] == {"empty_text": 1, "wrong_type": 1}
    docs = docs_by_position(ws)
    # File order: oos_val, val, train (4), test, oos_test.
    assert (docs[0]["label"], docs[0]["split"], docs[0]["labels"]) == (
        "oos", "validation", ["oos", "oos_val"])
    assert (docs[2]["text"], docs[2]["label"], docs[2]["split"]) == (
        "move 20 dollars to savings", "transfer", "train")
    assert (docs[7]["label"], docs[7]["split"]) == ("oos", "test")
    assert {d["kind"] for d in docs.values()} == {"labelled"}


def make_text_folder(root: Path) -> Path:
    root.mkdir()
    (root / "SOURCE.md").write_text("about the data\n")
    corpus = root / "bbc"
    for label in ("business", "sport"):
        (corpus / label).mkdir(parents=True)
    (corpus / "README.TXT").write_text("five folders\n")
    (corpus / "business" / "001.txt").write_bytes(
        b"Profits up\n\nThe firm made more money. Shares rose.\n")
    (corpus / "business" / "002.txt").write_bytes(b"\n\nTitle only\n")
    (corpus / "business" / "003.txt").write_bytes(b"")
    (corpus / "sport" / "001.txt").write_bytes(b"Cup win\n\nTickets cost \xa320.\n")
    (corpus / "sport" / "002.txt").write_bytes(b"\xef\xbb\xbfCup win\n\nTickets cost \xc2\xa320.\n")
    return root


def test_text_folder_labels_titles_and_latin1(tmp_path: Path):
    root = make_text_folder(tmp_path / "bbc-download")
    assert detect_format(str(root)) == "textdir"
    assert detect_format(str(root / "bbc")) == "textdir"
    assert detect_format(str(root / "bbc" / "sport")) is None  # no label folders
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(root))
    assert_reconciles(stats)
    source = stats["by_source"][str(root)]
    assert (source["format"], source["read"], source["blank_lines"]) == ("textdir", 4, 1)
    assert stats["steps"]["decode.latin1"] == 1
    docs = docs_by_position(ws)
    assert (docs[0]["label"], docs[0]["title"], docs[0]["text"]) == (
        "business", "Profits up", "The firm made more money. Shares rose.")
    assert docs[0]["id"] == "bbc-download:0"
    assert (docs[1]["title"], docs[1]["text"]) == ("Title only", "Title only")
    assert docs[2]["label"] == "sport" and docs[2]["text"] == "Tickets cost £20."
    # The UTF-8 twin with a BOM is the same labelled text, kept: labelled rows are never
    # de-duplicated (evaluation counts every row).
    assert docs[3]["title"] == "Cup win" and docs[3]["text"] == "Tickets cost £20."
    assert stats["deduplicated"] == 0


def test_yelp_reviews_and_businesses(tmp_path: Path):
    reviews, business = TABLES / "yelp_reviews.json", TABLES / "yelp_business.json"
    assert detect_format(str(reviews)) == "yelp"
    assert detect_format(str(business)) == "yelp-business"
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(reviews), "--input", str(business))
    assert_reconciles(stats)
    assert {Path(k).name: (v["read"], v["written"]) for k, v in stats["by_source"].items()} == {
        "yelp_reviews.json": (4, 1), "yelp_business.json": (3, 2)}
    reasons = {k: row["reason"] for k, row in rejected(ws).items()}
    assert reasons == {("yelp_reviews.json", 1): "out_of_range",
                       ("yelp_reviews.json", 2): "wrong_type",
                       ("yelp_reviews.json", 3): "missing_field",
                       ("yelp_business.json", 2): "missing_field"}
    doc = docs_by_position(ws)[0]
    assert (doc["kind"], doc["user"], doc["item"], doc["rating"]) == ("review", "YU1", "B1", 4.0)
    moment = dt.datetime(2018, 7, 7, 22, 9, 11, tzinfo=dt.timezone.utc)
    assert doc["timestamp"] == int(moment.timestamp())
    items = {i["item"]: i for i in read_table(ws / "ingest" / "items", ITEM_SCHEMA).to_pylist()}
    assert items["B1"]["title"] == "Taco Stand"
    assert items["B1"]["categories"] == ["Mexican", "Restaurants"]
    assert items["B1"]["description"] == "1 Main St, Tucson, AZ"
    assert items["B2"]["categories"] == []


def test_detection_keeps_formats_apart(tmp_path: Path):
    amazon_2023 = {"rating": 5.0, "title": "Nice", "text": "Works.", "asin": "B01",
                   "parent_asin": "B01", "user_id": "AE1", "timestamp": 1588687728923}
    yelp = {"review_id": "R", "user_id": "U", "business_id": "B", "stars": 5, "text": "Good.",
            "date": "2018-07-07 22:09:11"}
    tip = {"user_id": "U", "business_id": "B", "text": "Try the tacos", "date": "2012-05-18"}
    cases = {
        "amazon.jsonl": (json.dumps(amazon_2023), "amazon"),
        "review.json": (json.dumps(yelp), "yelp"),
        "tip.json": (json.dumps(tip), "table"),  # a text column: a generic table
        "other.json": (json.dumps({"a": 1}), None),
        "categories.json": ('[\n  "card_arrival",\n  "card_linking"\n]', None),
        "titles.txt": ("上证指数收涨\t2\n球队夺冠\t7", "table"),
        "notes.txt": ("hello\nworld", None),
        "data.csv": ("a,b\n1,2", "table"),
        "news.tsv": ("N1\tnews\tx\tt\ta\tu\t[]\t[]", "mind-news"),
        "dev.tsv": ("sentence\tlabel\nok .\t1", "table"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_text(content + "\n")
        assert detect_format(str(path)) == expected, name


# === Real data (SOURCE.md counts; skipped when ../shared/data is absent) ===


def check_real(ws: Path, stats: dict, read: int, rejected_reasons: dict,
               identical_texts: int) -> None:
    """SOURCE.md's row count read, every row written or rejected for a listed reason: labelled
    rows are never de-duplicated, `identical_texts` (repeats the file holds) included."""
    assert_reconciles(stats)
    assert stats["read"] == read
    assert stats["rejected_by_reason"] == rejected_reasons
    assert identical_texts >= 0 and stats["deduplicated"] == 0
    assert read_table(ws / "ingest" / "docs", DOC_SCHEMA).num_rows == stats["written"]


def test_real_banking77_test(tmp_path: Path):
    path = shared_file("banking77/test.csv")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 3080, {}, 1)
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA)
    assert len(set(docs["label"].to_pylist())) == 77
    assert set(docs["kind"].to_pylist()) == {"labelled"}


def test_real_clinc150(tmp_path: Path):
    path = shared_file("clinc150-oos-eval/data_full.json")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    # 5 utterances occur twice (4 of them with different intents or splits).
    check_real(tmp_path / "ws", stats, 23700, {}, 5)
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    assert docs.groupby("split").size().to_dict() == {
        "train": 15100, "validation": 3100, "test": 5500}
    assert (docs["label"] == "oos").sum() == 1200
    assert docs["label"].nunique() == 151


def test_real_sst2_dev(tmp_path: Path):
    path = shared_file("sst2-glue/dev.tsv")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 872, {}, 0)
    labels = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA)["label"].to_pylist()
    assert sorted(set(labels)) == ["0", "1"]


def test_real_ag_news_test_without_header(tmp_path: Path):
    path = shared_file("ag-news-test/test.csv")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 7600, {}, 0)
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    assert docs.groupby("label").size().to_dict() == {"1": 1900, "2": 1900, "3": 1900, "4": 1900}
    first = docs[docs["source_position"] == 0].iloc[0]
    assert first["title"] == "Fears for T N pension after talks"
    assert first["text"].startswith("Unions representing workers at Turner Newall")


def test_real_bbc_news_folder(tmp_path: Path):
    folder = shared_file("bbc-news-greene2006")
    stats = run_ingest(tmp_path / "ws", "--input", str(folder))
    # 101 articles repeat another one word for word (the known BBC duplicates).
    check_real(tmp_path / "ws", stats, 2225, {}, 101)
    assert stats["by_source"][str(folder)]["format"] == "textdir"
    assert stats["steps"]["decode.latin1"] == 1  # sport/199.txt
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    assert docs.groupby("label").size().to_dict() == {
        "business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
    first = docs[docs["source_position"] == 0].iloc[0]  # bbc/business/001.txt
    assert (first["label"], first["title"]) == ("business", "Ad sales boost Time Warner profit")


def test_real_chnsenticorp(tmp_path: Path):
    path = shared_file("chinese-sentiment-sophonplus/ChnSentiCorp_htl_all.csv")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 7766, {"empty_text": 1}, 0)  # one review is empty
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    assert (docs["language"] == "zh").mean() > 0.99
    assert docs.groupby("label").size().to_dict() == {"0": 2443, "1": 5322}  # the empty one is 0


def test_real_thucnews_dev_without_header(tmp_path: Path):
    path = shared_file("thucnews-titles-10class/dev.txt")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 10000, {}, 7)
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    assert sorted(docs["label"].unique()) == [str(i) for i in range(10)]
    assert docs[docs["source_position"] == 0].iloc[0]["text"] == "体验2D巅峰 倚天屠龙记十大创新概览"


@pytest.mark.slow  # 62,774 rows, ~25 s
def test_real_online_shopping_zip(tmp_path: Path):
    path = shared_file("chinese-sentiment-sophonplus/online_shopping_10_cats.zip")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 62774, {"empty_text": 1}, DEDUP_SHOPPING)
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA).to_pandas()
    cats = docs["labels"].map(lambda v: v[1]).value_counts().to_dict()
    # SOURCE.md: 575 热水器 rows; one of them has an empty review (rejected `empty_text`).
    assert cats["平板"] == 10000 and cats["热水器"] == 574


@pytest.mark.slow  # 67,349 rows, ~30 s
def test_real_sst2_train_full(tmp_path: Path):
    path = shared_file("sst2-glue/train_full.tsv")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    check_real(tmp_path / "ws", stats, 67349, {}, DEDUP_SST2_TRAIN)


@pytest.mark.slow  # the whole folder: two CSVs and the zip, ~35 s
def test_real_waimai_and_folder_of_tables(tmp_path: Path):
    folder = shared_file("chinese-sentiment-sophonplus")
    stats = run_ingest(tmp_path / "ws", "--input", str(folder))
    assert_reconciles(stats)
    by_name = {Path(k).name: v for k, v in stats["by_source"].items()}
    assert {n: v["read"] for n, v in by_name.items()} == {
        "ChnSentiCorp_htl_all.csv": 7766, "waimai_10k.csv": 11987,
        "online_shopping_10_cats.zip": 62774}
    assert stats["deduplicated"] == 0


def test_kind_review_reads_unrated_rows_without_a_user_as_reviews_of_their_item(tmp_path: Path):
    """online_shopping's layout (cat,label,review): `--kind review --columns item=cat` makes
    each row a review of its category, its 0/1 label kept for finetune's sentiment."""
    table = tmp_path / "shopping.csv"
    table.write_text("cat,label,review\n书籍,1,这本书很好看\n平板,0,屏幕太暗了，电池也不行\n"
                     "平板,1,速度很快\n,1,没有类别\n", encoding="utf-8")
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(table), "--kind", "review", "--columns", "item=cat")
    assert_reconciles(stats)
    docs = docs_by_position(ws)
    assert [docs[p]["kind"] for p in (0, 1, 2)] == ["review"] * 3
    assert [docs[p]["item"] for p in (0, 1, 2)] == ["书籍", "平板", "平板"]
    assert [docs[p]["label"] for p in (0, 1, 2)] == ["1", "0", "1"]
    assert docs[0]["user"] is None and docs[0]["rating"] is None
    assert rejected(ws)[("shopping.csv", 3)]["reason"] == "missing_field"  # no item
    # Without an item column a review cannot be read: every row says why.
    other = tmp_path / "ws2"
    stats = run_ingest(other, "--input", str(table), "--kind", "review", "--columns",
                       "text=review")
    assert stats["written"] == 0
    assert "--kind review needs the item" in rejected(other)[("shopping.csv", 0)]["detail"]
    # Without --kind the same file stays labelled examples (the quality harness reads it so).
    plain = tmp_path / "ws3"
    run_ingest(plain, "--input", str(table))
    assert {d["kind"] for d in docs_by_position(plain).values()} == {"labelled"}
