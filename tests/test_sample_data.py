"""`opinionrec sample-data`: deterministic, sized as asked, real formats, structure planted."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from pipelines import cli, sample_data
from pipelines.records import REJECT_REASONS

SIZES = {"reviews": 1500, "users": 150, "items": 40, "news": 300, "impressions": 1200}
ARGS = [f"--{k}={v}" for k, v in SIZES.items()] + ["--bad-records=6", "--duplicates=4"]
REVIEW_FIELDS = [
    "overall", "verified", "reviewTime", "reviewerID", "asin", "reviewerName", "reviewText",
    "summary", "unixReviewTime",
]
FILES = ("reviews.json.gz", "meta.json.gz", "news.tsv", "behaviors.tsv", "truth.json")


def generate(folder: Path, *extra: str) -> Path:
    ws = folder / "ws"
    assert cli.main(["sample-data", "--workspace", str(ws), *ARGS, *extra]) == 0
    return ws / "raw"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("sample"), "--seed=3")


@pytest.fixture(scope="module")
def truth(raw: Path) -> dict:
    return json.loads((raw / "truth.json").read_text())


@pytest.fixture(scope="module")
def review_lines(raw: Path) -> list[bytes]:
    return gzip.open(raw / "reviews.json.gz").read().splitlines()


@pytest.fixture(scope="module")
def reviews(review_lines: list[bytes], truth: dict) -> list[dict]:
    """The good review records (bad and duplicate lines removed using the truth)."""
    skip = {b["line"] for b in truth["bad_record_lines"]}
    skip |= {d["line"] for d in truth["duplicate_lines"]}
    return [json.loads(line) for i, line in enumerate(review_lines) if i not in skip]


def aspect_mentions(text: str, aspects: dict[str, list[str]]) -> set[str]:
    """Aspects named in `text` by any surface form (whole words, case-insensitive)."""
    found = set()
    for aspect, forms in aspects.items():
        pattern = r"\b(" + "|".join(re.escape(f) for f in forms) + r")\b"
        if re.search(pattern, text, flags=re.IGNORECASE):
            found.add(aspect)
    return found


def news_topics(raw: Path) -> dict[str, str]:
    """News id -> category, from news.tsv."""
    rows = [line.split("\t") for line in (raw / "news.tsv").read_text().splitlines()]
    return {row[0]: row[1] for row in rows}


# === Determinism and sizes ===


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path, raw: Path):
    again = generate(tmp_path / "a", "--seed=3")
    other = generate(tmp_path / "b", "--seed=4")
    for name in FILES:
        assert (again / name).read_bytes() == (raw / name).read_bytes(), name
        assert (other / name).read_bytes() != (raw / name).read_bytes(), name


def test_sizes_are_honoured(raw: Path, truth: dict, review_lines: list[bytes], reviews: list[dict]):
    assert len(review_lines) == SIZES["reviews"] + 6 + 4
    assert len(reviews) == SIZES["reviews"]
    assert truth["bad_records"] == 6 and truth["duplicates"] == 4
    assert len({r["reviewerID"] for r in reviews}) == SIZES["users"] == len(truth["users"])
    assert len({r["asin"] for r in reviews}) == SIZES["items"] == len(truth["items"])
    assert len(gzip.open(raw / "meta.json.gz").read().splitlines()) == SIZES["items"]
    assert len((raw / "news.tsv").read_text().splitlines()) == SIZES["news"]
    assert len((raw / "behaviors.tsv").read_text().splitlines()) == SIZES["impressions"]


def test_five_core_every_user_five_reviews_every_item_reviewed(reviews: list[dict]):
    per_user = Counter(r["reviewerID"] for r in reviews)
    assert min(per_user.values()) >= 5
    pairs = Counter((r["reviewerID"], r["asin"]) for r in reviews)
    assert max(pairs.values()) == 1  # a user reviews an item once


def test_impossible_sizes_are_a_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    argv = ["sample-data", "--workspace", str(tmp_path), "--reviews=10", "--users=5"]
    assert cli.main(argv) == 2
    assert "reviews` must be >= 5 * `users`" in caplog.text


def test_default_sizes_scale_with_reviews():
    config = sample_data.SampleConfig()
    assert (config.reviews, config.num_users, config.num_items) == (4000, 400, 80)
    big = sample_data.SampleConfig(reviews=1_000_000)
    big.validate()
    assert (big.num_users, big.num_items) == (100_000, 20_000)


# === Formats ===


def test_reviews_use_amazon_2018_fields(reviews: list[dict]):
    for record in reviews:
        assert list(record) == REVIEW_FIELDS
        assert isinstance(record["overall"], float) and 1 <= record["overall"] <= 5
        assert isinstance(record["verified"], bool)
        assert isinstance(record["unixReviewTime"], int)
        date = dt.datetime.fromtimestamp(record["unixReviewTime"], dt.timezone.utc)
        assert record["reviewTime"] == f"{date.month:02d} {date.day}, {date.year}"
        assert re.fullmatch(r"A[A-Z0-9]{13}", record["reviewerID"])
        assert re.fullmatch(r"B0[A-Z0-9]{8}", record["asin"])
        assert 2 <= len(re.findall(r"[.!?](\s|$|<)", record["reviewText"])) <= 7
        assert record["summary"]


def test_meta_uses_amazon_fields_with_plausible_titles(raw: Path, truth: dict):
    meta = [json.loads(line) for line in gzip.open(raw / "meta.json.gz")]
    for record in meta:
        assert {"asin", "title", "brand", "category", "description", "price"} <= set(record)
        assert isinstance(record["category"], list) and isinstance(record["description"], list)
        assert re.fullmatch(r"\$\d+\.\d\d", record["price"])
        assert record["title"] == truth["items"][record["asin"]]["title"]
        assert re.search(r"(Earbuds|Headphones)", record["title"])


def test_news_and_behaviors_follow_the_mind_layout(raw: Path, truth: dict):
    news = [line.split("\t") for line in (raw / "news.tsv").read_text().splitlines()]
    assert {len(row) for row in news} == {8}
    assert {row[1] for row in news} == set(truth["topics"])
    for row in news:
        assert re.fullmatch(r"N\d+", row[0]) and row[3] and row[5].startswith("https://")
        json.loads(row[6]), json.loads(row[7])
    news_ids = {row[0] for row in news}
    behaviors = [line.split("\t") for line in (raw / "behaviors.tsv").read_text().splitlines()]
    assert {len(row) for row in behaviors} == {5}
    for impression_id, user, when, history, impressions in behaviors:
        assert impression_id.isdigit() and re.fullmatch(r"U\d+", user)
        dt.datetime.strptime(when, "%m/%d/%Y %I:%M:%S %p")
        assert set(history.split()) <= news_ids
        labels = [token.rsplit("-", 1) for token in impressions.split()]
        assert labels and all(n in news_ids and c in "01" for n, c in labels)
        assert any(c == "1" for _, c in labels)


def test_bad_and_duplicate_lines_are_recorded(truth: dict, review_lines: list[bytes]):
    assert {b["reason"] for b in truth["bad_record_lines"]} <= set(REJECT_REASONS)
    kinds = Counter(b["kind"] for b in truth["bad_record_lines"])
    assert set(kinds) == set(sample_data.BAD_RECORD_KINDS)  # 6 bad records: one of each kind
    for bad in truth["bad_record_lines"]:
        line = review_lines[bad["line"]]
        if bad["kind"] == "invalid_utf8":
            with pytest.raises(UnicodeDecodeError):
                line.decode("utf-8")
        elif bad["kind"] == "truncated_json":
            with pytest.raises(ValueError):
                json.loads(line)
    good_lines = [
        line for i, line in enumerate(review_lines)
        if i not in {b["line"] for b in truth["bad_record_lines"]}
    ]
    for dup in truth["duplicate_lines"]:
        copy = review_lines[dup["line"]]
        assert good_lines.index(copy) < dup["line"]  # an exact copy of an earlier line


# === Planted structure ===


def test_users_write_mostly_about_their_own_aspects(reviews: list[dict], truth: dict):
    aspects = truth["aspects"]
    own_mentions = other_mentions = 0
    mentioned = defaultdict(lambda: [0, 0])  # aspect -> [sentences by users who care, by others]
    for record in reviews:
        own = set(truth["users"][record["reviewerID"]]["aspects"])
        for sentence in re.split(r"(?<=[.!?])\s+|<br />", record["reviewText"]):
            found = aspect_mentions(sentence, aspects)
            own_mentions += len(found & own)
            other_mentions += len(found - own)
            for aspect in aspects:
                mentioned[aspect][aspect not in own] += aspect in found
    assert own_mentions / (own_mentions + other_mentions) >= 0.6
    users_with = Counter(a for u in truth["users"].values() for a in u["aspects"])
    for aspect, (by_own, by_others) in mentioned.items():
        own_rate = by_own / max(1, users_with[aspect])
        other_rate = by_others / max(1, len(truth["users"]) - users_with[aspect])
        assert own_rate > 3 * other_rate, aspect


def test_ratings_follow_item_quality_on_user_aspects(reviews: list[dict], truth: dict):
    scores, ratings = [], []
    for record in reviews:
        quality = truth["items"][record["asin"]]["quality"]
        own = truth["users"][record["reviewerID"]]["aspects"]
        scores.append(np.mean([quality[a] for a in own]))
        ratings.append(record["overall"])
    assert np.corrcoef(scores, ratings)[0, 1] > 0.5


def test_users_choose_items_good_on_their_aspects(reviews: list[dict], truth: dict):
    def score(user: str, asin: str) -> float:
        quality = truth["items"][asin]["quality"]
        return float(np.mean([quality[a] for a in truth["users"][user]["aspects"]]))

    chosen = np.mean([score(r["reviewerID"], r["asin"]) for r in reviews])
    baseline = np.mean([score(u, i) for u in truth["users"] for i in truth["items"]])
    assert chosen > baseline + 0.2


def test_opinion_polarity_follows_item_quality(reviews: list[dict], truth: dict):
    positive = set(sample_data.POSITIVE_WORDS)
    negative = set(sample_data.NEGATIVE_WORDS)
    agree = total = 0
    for record in reviews:
        quality = truth["items"][record["asin"]]["quality"]
        for sentence in re.split(r"(?<=[.!?])\s+", record["reviewText"]):
            found = aspect_mentions(sentence, truth["aspects"])
            words = set(re.findall(r"[a-z]+", sentence.lower()))
            if len(found) != 1 or "not" in words or "but" in words:
                continue
            q = quality[found.pop()]
            polarity = bool(words & positive) - bool(words & negative)
            if q != 0 and polarity != 0:
                total += 1
                agree += polarity == q
    assert total > 200 and agree / total > 0.8


def test_topic_bursts_show_in_impression_times(raw: Path, truth: dict):
    topic_of = news_topics(raw)
    clicks = []  # (timestamp, topic)
    for line in (raw / "behaviors.tsv").read_text().splitlines():
        _, _, when, _, impressions = line.split("\t")
        ts = dt.datetime.strptime(when, "%m/%d/%Y %I:%M:%S %p").replace(
            tzinfo=dt.timezone.utc).timestamp()
        clicks += [(ts, topic_of[t[:-2]]) for t in impressions.split() if t.endswith("-1")]
    lifts = []
    for topic, spec in truth["topics"].items():
        inside = [c for c in clicks if any(b <= c[0] < e for b, e in spec["bursts"])]
        outside = [c for c in clicks if not any(b <= c[0] < e for b, e in spec["bursts"])]
        share_in = sum(t == topic for _, t in inside) / max(1, len(inside))
        share_out = sum(t == topic for _, t in outside) / max(1, len(outside))
        lifts.append(share_in / max(share_out, 1e-9))
    assert min(lifts) > 1.5, lifts


def test_readers_click_their_favourite_topics(raw: Path, truth: dict):
    topic_of = news_topics(raw)
    shown_fav = clicked_fav = shown = clicked = 0
    for line in (raw / "behaviors.tsv").read_text().splitlines():
        _, user, _, _, impressions = line.split("\t")
        favourites = set(truth["news_users"][user]["topics"])
        for token in impressions.split():
            fav = topic_of[token[:-2]] in favourites
            shown, shown_fav = shown + 1, shown_fav + fav
            if token.endswith("-1"):
                clicked, clicked_fav = clicked + 1, clicked_fav + fav
    assert clicked_fav / clicked > 1.5 * shown_fav / shown


def test_stage_record_and_if_stale(tmp_path: Path):
    ws = tmp_path / "ws"
    argv = ["sample-data", "--workspace", str(ws), "--reviews=100", "--users=10", "--items=10",
            "--news=20", "--impressions=10"]
    assert cli.main(argv) == 0
    record = json.loads((ws / "sample_data" / "_stage.json").read_text())
    assert record["params"]["reviews"] == 100 and record["summary"]["review_lines"] == 108
    mtime = (ws / "raw" / "reviews.json.gz").stat().st_mtime_ns
    assert cli.main([*argv, "--if-stale"]) == 0
    assert (ws / "raw" / "reviews.json.gz").stat().st_mtime_ns == mtime
