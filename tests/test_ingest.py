"""`opinionrec ingest`: the Beam job's outputs, dead letters and reconciling counts."""

from __future__ import annotations

import base64
import gzip
import json
import math
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipelines import beam_options, cli, ingest
from pipelines.records import (
    DOC_SCHEMA,
    INTERACTION_SCHEMA,
    ITEM_SCHEMA,
    clean_text,
    detect_language,
    read_table,
    split_sentences,
    tf_feature_spec,
    tfrecord_files,
)
from pipelines.workspace import Workspace
from tests.conftest import shared_file

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"


def run_ingest(ws: Path, *args: str) -> dict:
    assert cli.main(["ingest", "--workspace", str(ws), *args]) == 0
    return json.loads((ws / "ingest" / "stats.json").read_text())


def rejected_rows(ws: Path) -> list[dict]:
    rows = []
    for path in sorted((ws / "ingest" / "rejected").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def assert_reconciles(stats: dict) -> None:
    for counts in [stats, *stats["by_source"].values()]:
        assert counts["read"] == counts["written"] + counts["rejected"] + counts["deduplicated"]
    assert sum(stats["rejected_by_reason"].values()) == stats["rejected"]


# === On generated sample data ===


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A small generated dataset ingested once: (workspace, truth, stats)."""
    ws = tmp_path_factory.mktemp("ingest") / "ws"
    argv = ["sample-data", "--workspace", str(ws), "--reviews=400", "--users=40", "--items=20",
            "--news=60", "--impressions=150", "--bad-records=6", "--duplicates=3", "--seed=5"]
    assert cli.main(argv) == 0
    stats = run_ingest(ws)
    return ws, json.loads((ws / "raw" / "truth.json").read_text()), stats


def test_stats_reconcile_and_match_planted_counts(sample):
    ws, truth, stats = sample
    assert list(stats)[:4] == ["read", "written", "rejected", "deduplicated"]
    assert_reconciles(stats)
    reviews = stats["by_source"][str(ws / "raw" / "reviews.json.gz")]
    assert reviews["format"] == "amazon"
    assert reviews["read"] == truth["review_lines"]
    assert reviews["written"] == truth["reviews"]
    assert reviews["rejected"] == stats["rejected"] == truth["bad_records"]
    assert reviews["deduplicated"] == stats["deduplicated"] == truth["duplicates"]
    planted = Counter(b["reason"] for b in truth["bad_record_lines"])
    assert stats["rejected_by_reason"] == dict(planted)
    assert stats["by_output"]["docs"] == truth["reviews"] + truth["config"]["news"]
    assert stats["by_output"]["items"] == len(truth["items"])
    assert stats["by_output"]["behavior_records"] == truth["config"]["impressions"]
    assert stats["runner"] == "DirectRunner" and stats["wall_s"] > 0


def test_every_rejected_record_has_reason_raw_and_position(sample):
    ws, truth, _ = sample
    rows = rejected_rows(ws)
    expected = {(b["line"], b["reason"]) for b in truth["bad_record_lines"]}
    assert {(r["source_position"], r["reason"]) for r in rows} == expected
    raw_lines = gzip.open(ws / "raw" / "reviews.json.gz").read().splitlines()
    for row in rows:
        assert row["source"].endswith("reviews.json.gz") and row["detail"]
        original = raw_lines[row["source_position"]]
        if row["reason"] == "invalid_utf8":
            assert base64.b64decode(row["raw_b64"]) == original
            assert "\\xff" in row["raw"]
        else:
            assert row["raw"] == original.decode("utf-8") and "raw_b64" not in row


def test_docs_parquet_has_canonical_schema_and_content(sample):
    ws, truth, stats = sample
    table = read_table(ws / "ingest" / "docs", DOC_SCHEMA)
    assert table.schema.names == DOC_SCHEMA.names
    assert table.num_rows == stats["by_output"]["docs"]
    docs = table.to_pylist()
    assert len({d["id"] for d in docs}) == len(docs)
    reviews = [d for d in docs if d["kind"] == "review"]
    news = [d for d in docs if d["kind"] == "news"]
    assert len(reviews) == truth["reviews"] and len(news) == truth["config"]["news"]
    for doc in reviews:
        assert doc["id"] == f"reviews.json.gz:{doc['source_position']}"
        assert doc["user"] in truth["users"] and doc["item"] in truth["items"]
        assert doc["rating"] in (1.0, 2.0, 3.0, 4.0, 5.0) and doc["timestamp"] > 10**9
        assert doc["language"] == "en" and doc["sentences"] and doc["label"] is None
        assert "<" not in doc["text"] and "&#39;" not in doc["text"]
        assert " ".join(doc["sentences"]) == doc["text"]
    for doc in news:
        assert doc["label"] in truth["topics"] and doc["labels"][0] == doc["label"]
        assert doc["user"] is None and doc["rating"] is None and doc["title"]
    # The duplicate lines were dropped, not their first occurrence.
    positions = {d["source_position"] for d in reviews}
    assert not positions & {d["line"] for d in truth["duplicate_lines"]}


def test_tfrecord_docs_match_parquet(sample):
    import tensorflow as tf

    ws, _, stats = sample
    files = tfrecord_files(ws / "ingest" / "docs")
    assert files
    dataset = tf.data.TFRecordDataset(files).batch(1000).map(
        lambda x: tf.io.parse_example(x, tf_feature_spec())
    )
    parsed = {}
    for batch in dataset:
        for i, doc_id in enumerate(batch["id"].numpy()):
            parsed[doc_id.decode()] = {
                "text": batch["text"][i].numpy().decode(),
                "rating": float(batch["rating"][i].numpy()),
                "sentences": [s.decode() for s in batch["sentences"][i].numpy()],
                "labels": [s.decode() for s in batch["labels"][i].numpy()],
            }
    docs = {d["id"]: d for d in read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist()}
    assert len(parsed) == len(docs) == stats["by_output"]["docs_tfrecord"]
    for doc_id, doc in docs.items():
        example = parsed[doc_id]
        assert example["text"] == doc["text"] and example["sentences"] == doc["sentences"]
        assert example["labels"] == doc["labels"]
        if doc["rating"] is None:
            assert math.isnan(example["rating"])
        else:
            assert example["rating"] == doc["rating"]


def test_items_and_interactions_outputs(sample):
    ws, truth, stats = sample
    items = read_table(ws / "ingest" / "items", ITEM_SCHEMA)
    assert items.schema.names == ITEM_SCHEMA.names
    rows = items.to_pylist()
    titles = {asin: item["title"] for asin, item in truth["items"].items()}
    assert {r["item"]: r["title"] for r in rows} == titles
    assert all(r["price"] > 0 and r["categories"][0] == "Electronics" for r in rows)
    assert all("<" not in r["description"] and "&amp;" not in r["description"] for r in rows)
    interactions = read_table(ws / "ingest" / "interactions", INTERACTION_SCHEMA)
    assert interactions.num_rows == stats["by_output"]["interactions"]
    # Independent count: distinct (item, clicked, history) per behaviour line.
    expected = 0
    for line in (ws / "raw" / "behaviors.tsv").read_text().splitlines():
        _, _, _, history, impressions = line.split("\t")
        rows_ = {(n, True, True) for n in history.split()}
        rows_ |= {(t[:-2], t.endswith("-1"), False) for t in impressions.split()}
        expected += len(rows_)
    assert interactions.num_rows == expected
    clicked = interactions.filter(interactions["history"].to_numpy() == False)  # noqa: E712
    assert 0 < sum(clicked["clicked"].to_pylist()) < clicked.num_rows


def test_reconcile_reports_counts_that_do_not_add_up(sample):
    ws, _, stats = sample
    assert ingest.reconcile(stats, Workspace(ws)) == []
    broken = json.loads(json.dumps(stats))
    broken["written"] += 1
    source = next(iter(broken["by_source"]))
    broken["by_source"][source]["deduplicated"] += 2
    problems = ingest.reconcile(broken)
    assert any(p.startswith("total: read") for p in problems)
    assert any(p.startswith(source) for p in problems)


def test_stage_record_and_if_stale(sample):
    ws, _, stats = sample
    record = json.loads((ws / "ingest" / "_stage.json").read_text())
    assert record["summary"]["read"] == stats["read"]
    assert len(record["params"]["inputs"]) == 4  # truth.json is skipped
    before = (ws / "ingest" / "stats.json").stat().st_mtime_ns
    assert cli.main(["ingest", "--workspace", str(ws), "--if-stale"]) == 0
    assert (ws / "ingest" / "stats.json").stat().st_mtime_ns == before


# === Transforms in memory ===


def test_parse_review_fn_splits_good_and_bad_records():
    good = {"overall": 4.0, "reviewerID": "U1", "asin": "I1", "reviewText": "Nice. Works well.",
            "unixReviewTime": 1500000000}
    elements = [
        ("r.json", 0, json.dumps(good).encode()),
        ("r.json", 1, b'{"overall": 4.0, "reviewerID": "U1"'),
        ("r.json", 2, json.dumps({**good, "overall": "abc"}).encode()),
        ("r.json", 3, json.dumps({**good, "overall": 9}).encode()),
        ("r.json", 4, json.dumps({**good, "reviewText": " <br/> "}).encode()),
        ("r.json", 5, b'{"reviewText": "caf\xe9"}'),
        ("r.json", 6, json.dumps({**good, "asin": None}).encode()),
        ("r.json", 7, json.dumps({k: v for k, v in good.items() if k != "overall"}
                                 | {"reviewText": " "}).encode()),
    ]
    with BeamTestPipeline(options=beam_options.pipeline_options()) as pipeline:
        outputs = (
            pipeline
            | beam.Create(elements)
            | beam.ParDo(ingest.ParseReviewFn({"r.json": "r.json"})).with_outputs(
                ingest.REJECTED_TAG, main="parsed"
            )
        )
        assert_that(
            outputs.parsed | "Good" >> beam.Map(lambda d: (d["id"], d["rating"], d["sentences"])),
            # A rating without text is an interaction, kept as a `rating` document.
            equal_to([("r.json:0", 4.0, ["Nice.", "Works well."]), ("r.json:4", 4.0, [])]),
            label="good records",
        )
        assert_that(
            outputs[ingest.REJECTED_TAG] | "Bad" >> beam.Map(
                lambda r: (r["source_position"], r["reason"])
            ),
            equal_to([(1, "invalid_json"), (2, "wrong_type"), (3, "out_of_range"),
                      (5, "invalid_utf8"), (6, "missing_field"), (7, "empty_text")]),
            label="rejected records",
        )


def test_deduplicate_keeps_the_first_by_input_order_and_position():
    records = [
        {"source": "b", "source_position": 0, "item": "x", "v": "b0"},
        {"source": "a", "source_position": 7, "item": "x", "v": "a7"},
        {"source": "a", "source_position": 3, "item": "x", "v": "a3"},
        {"source": "b", "source_position": 1, "item": "y", "v": "b1"},
    ]
    with BeamTestPipeline(options=beam_options.pipeline_options()) as pipeline:
        kept = (
            pipeline
            | beam.Create(records)
            | ingest.Deduplicate(ingest.item_dedup_key, {"a": 0, "b": 1})
            | beam.Map(lambda r: r["v"])
        )
        assert_that(kept, equal_to(["a3", "b1"]))


# === Hand-written fixtures: each bad line lands in rejected/ with its reason ===


@pytest.fixture(scope="module")
def fixtures_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    ws = tmp_path_factory.mktemp("fixtures") / "ws"
    stats = run_ingest(
        ws, "--input", str(FIXTURES / "mixed_reviews.jsonl"), "--input", str(FIXTURES / "news.tsv"),
        "--input", str(FIXTURES / "behaviors.tsv"), "--max-text-chars=300", "--num-shards=2",
    )
    return ws, stats


def test_fixture_bad_lines_are_rejected_with_expected_reasons(fixtures_run):
    ws, stats = fixtures_run
    assert_reconciles(stats)
    got = {
        (Path(r["source"]).name, r["source_position"]): r["reason"] for r in rejected_rows(ws)
    }
    assert got == {
        ("mixed_reviews.jsonl", 1): "invalid_json",
        ("mixed_reviews.jsonl", 3): "invalid_utf8",
        ("mixed_reviews.jsonl", 4): "wrong_type",
        ("mixed_reviews.jsonl", 5): "out_of_range",
        ("mixed_reviews.jsonl", 7): "missing_field",
        ("mixed_reviews.jsonl", 8): "wrong_type",
        ("mixed_reviews.jsonl", 11): "wrong_type",
        ("mixed_reviews.jsonl", 13): "text_too_long",
        ("news.tsv", 1): "wrong_column_count",
        ("news.tsv", 2): "missing_field",
        ("behaviors.tsv", 1): "wrong_type",
        ("behaviors.tsv", 2): "wrong_column_count",
        ("behaviors.tsv", 3): "wrong_type",
    }
    reviews = stats["by_source"][str(FIXTURES / "mixed_reviews.jsonl")]
    assert (reviews["read"], reviews["written"], reviews["rejected"], reviews["deduplicated"]) == (
        14, 5, 8, 1)  # line 6, a rating with blank text, is a `rating` document
    assert reviews["blank_lines"] == 1
    behaviors = stats["by_source"][str(FIXTURES / "behaviors.tsv")]
    assert (behaviors["written"], behaviors["deduplicated"]) == (2, 1)


def test_fixture_good_lines_are_cleaned_documents(fixtures_run):
    ws, _ = fixtures_run
    shards = sorted(p.name for p in (ws / "ingest" / "docs").iterdir())
    assert shards == [
        "docs-00000-of-00002.parquet", "docs-00000-of-00002.tfrecord",
        "docs-00001-of-00002.parquet", "docs-00001-of-00002.tfrecord",
    ]
    docs = {d["id"]: d for d in read_table(ws / "ingest" / "docs", DOC_SCHEMA).to_pylist()}
    assert set(docs) == {
        "mixed_reviews.jsonl:0", "mixed_reviews.jsonl:2", "mixed_reviews.jsonl:6",
        "mixed_reviews.jsonl:10", "mixed_reviews.jsonl:12", "news.tsv:0", "news.tsv:3",
        "news.tsv:4",
    }
    rating = docs["mixed_reviews.jsonl:6"]
    assert (rating["kind"], rating["text"], rating["rating"], rating["sentences"]) == (
        "rating", "", 1.0, [])
    first = docs["mixed_reviews.jsonl:0"]
    assert first["text"] == (
        "Great sound & deep bass. The battery lasts all week! Dr. Who fans will love it."
    )
    assert first["sentences"] == [
        "Great sound & deep bass.", "The battery lasts all week!", "Dr. Who fans will love it.",
    ]
    chinese = docs["mixed_reviews.jsonl:2"]
    assert chinese["language"] == "zh" and len(chinese["sentences"]) == 3
    assert docs["mixed_reviews.jsonl:10"]["timestamp"] == 1384387200  # from "11 14, 2013"
    modern = docs["mixed_reviews.jsonl:12"]
    assert (modern["user"], modern["rating"], modern["title"], modern["timestamp"]) == (
        "AUSER10", 3.0, "Okay", 1588687728)
    assert docs["news.tsv:3"]["text"] == docs["news.tsv:3"]["title"]  # empty abstract
    assert docs["news.tsv:4"]["title"] == "Bed & breakfast deals for winter"
    interactions = read_table(ws / "ingest" / "interactions", INTERACTION_SCHEMA).to_pylist()
    first_impression = sorted(
        (r["item"], r["clicked"], r["history"]) for r in interactions if r["impression_id"] == "1"
    )
    assert first_impression == [
        ("N1", True, True), ("N2", True, True), ("N3", True, False), ("N4", False, False),
        ("N5", False, False),
    ]
    unlabelled = [r for r in interactions if r["impression_id"] == "6"]
    assert [r["clicked"] for r in unlabelled] == [None, None]


# === Inputs and options ===


def test_unknown_format_is_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    assert cli.main(["ingest", "--workspace", str(tmp_path / "ws"), "--input", str(notes)]) == 2
    assert "Cannot tell the format of" in caplog.text and "--format" in caplog.text
    assert not (tmp_path / "ws" / "ingest" / "stats.json").exists()
    missing = str(tmp_path / "nothing-*.json")
    assert cli.main(["ingest", "--workspace", str(tmp_path / "ws"), "--input", missing]) == 2
    assert "No input file matches" in caplog.text
    assert cli.main(["ingest", "--workspace", str(tmp_path / "empty")]) == 2
    assert "run `opinionrec sample-data` first" in caplog.text


def test_detect_format_by_name_and_first_line(tmp_path: Path):
    review = json.dumps({"reviewerID": "U", "asin": "I", "reviewText": "t"})
    meta = json.dumps({"asin": "I", "title": "A thing", "brand": "B"})
    cases = {
        "a.json.gz": (review, "amazon"),
        "b.jsonl": ("{not json\n" + meta, "amazon-meta"),
        "c.json": ("{'asin': 'I', 'title': 'py literal'}", "amazon-meta"),
        "news.tsv": ("N1\tx", "mind-news"),
        "behaviors.tsv": ("1\tU\tt\th\ti", "mind-behaviors"),
        "log.tsv": ("7\tU9\t11/12/2019 2:14:46 PM\tN1\tN2-1", "mind-behaviors"),
        "other.json": (json.dumps({"a": 1}), None),
        "readme.md": ("# hi", None),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        data = content.encode() + b"\n"
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        assert ingest.detect_format(str(path)) == expected, name


def test_text_helpers():
    assert clean_text(" A&amp;B <b>bold</b>\u200b\x07 ＦＵＬＬ  <3 ") == "A&B bold FULL <3"
    assert split_sentences("e.g. this works. Mr. Smith agrees! Ok") == [
        "e.g. this works.", "Mr. Smith agrees!", "Ok"]
    assert split_sentences("第一句。第二句！") == ["第一句。", "第二句！"]
    assert split_sentences(clean_text("很好！但是贵？还行")) == ["很好!", "但是贵?", "还行"]
    assert [detect_language(t) for t in ("good", "很好", "12 34", "とても良い")] == [
        "en", "zh", "und", "und"]


def test_beam_options_default_to_named_direct_runner_and_pass_the_rest():
    options = beam_options.pipeline_options(["--direct_num_workers", "2", "--job_name=x"])
    all_options = options.get_all_options()
    assert all_options["runner"] == "DirectRunner"
    assert all_options["direct_running_mode"] == "in_memory"
    assert all_options["direct_num_workers"] == 2 and all_options["job_name"] == "x"
    flink = beam_options.pipeline_options(["--runner", "FlinkRunner", "--flink_master=h:8081"])
    assert beam_options.runner_name(flink) == "FlinkRunner"
    assert flink.get_all_options()["flink_master"] == "h:8081"


# === Real data (skipped when ../shared/data is absent) ===


def test_real_amazon_all_beauty(tmp_path: Path):
    path = shared_file("amazon-reviews-2018-5core-small/All_Beauty_5.json.gz")
    stats = run_ingest(tmp_path / "ws", "--input", str(path))
    assert_reconciles(stats)
    assert stats["read"] == 5269
    # 5 ratings have no review text: kept as interactions (`rating` documents), counted.
    assert stats["rejected"] == 0 and stats["steps"]["ratings_without_text"] == 5
    assert stats["deduplicated"] > 1000  # the file repeats reviews across product variants
    docs = read_table(tmp_path / "ws" / "ingest" / "docs", DOC_SCHEMA)
    assert docs.num_rows == stats["written"] == 5269 - stats["deduplicated"]
    assert docs["kind"].to_pylist().count("rating") == 4  # one repeats a rating of the same item


@pytest.mark.slow  # ~350k interaction rows through the in-memory runner
def test_real_mind_news_and_behaviors(tmp_path: Path):
    folder = shared_file("mind-small-train-sample")
    ws = tmp_path / "ws"
    stats = run_ingest(ws, "--input", str(folder / "news.tsv"), "--input",
                       str(folder / "behaviors.tsv"))
    assert_reconciles(stats)
    news = stats["by_source"][str(folder / "news.tsv")]
    behaviors = stats["by_source"][str(folder / "behaviors.tsv")]
    assert (news["read"], news["rejected"]) == (2000, 0)
    assert (behaviors["read"], behaviors["written"]) == (5000, 5000)
    docs = read_table(ws / "ingest" / "docs", DOC_SCHEMA)
    assert docs.num_rows == news["written"]
    assert len(set(docs["label"].to_pylist())) == 15
    clicked = stats["by_output"]["interactions"]
    assert clicked > 150_000  # 159,802 history clicks + 189,359 candidates, less repeats
    table = read_table(ws / "ingest" / "interactions", INTERACTION_SCHEMA)
    candidates = table.filter(table["history"].to_numpy() == False)  # noqa: E712
    assert sum(candidates["clicked"].to_pylist()) == 7542
