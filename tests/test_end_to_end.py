"""The whole chain on a tiny generated dataset, ending with explained recommendations over HTTP."""

from __future__ import annotations

import gzip
import json
import re
import signal

import h5py
import pytest

from pipelines import cli
from pipelines.corpus import read_docs
from pipelines.serve import start_server_process

CAVEAT = r"(?: Note: reviewers criticise its [^.]+\.)?$"
PERSONAL = re.compile(r'^You (?P<how>care|wrote) about (?P<aspect>.+?): "(?P<sentence>.+)" '
                      r"\((?P<support>[^)]+)\)" + CAVEAT)
PLAIN = re.compile(r"^\d+ reviews?(, average rating \d\.\d\.| so far\.)" + CAVEAT)

CHAIN = [
    ["sample-data", "--reviews", "600", "--users", "60", "--items", "20", "--news", "120",
     "--impressions", "200"],
    ["ingest"],
    ["vocab", "--vocabulary-size", "400", "--min-aspect-count", "3"],
    ["pretraining-data", "--sequence-length", "48"],
    ["pretrain", "--config", "nano", "--sequence-length", "48", "--batch-size", "16",
     "--steps", "40", "--checkpoint-every", "20", "--learning-rate", "3e-3"],
    ["finetune", "--sequence-length", "48", "--epochs", "4"],
    ["features"],
    ["describe"],
    ["train-recommender", "--epochs", "2", "--ranker-epochs", "5"],
    ["export"],
]


RATINGS_ONLY_USER = "A_RATINGS_ONLY"


def add_ratings_without_text(ws) -> list[dict]:
    """Star ratings with no review text, as Amazon files hold them: a user known only by three
    such ratings, and two more by users who also wrote reviews."""
    path = ws / "raw" / "reviews.json.gz"
    lines = gzip.decompress(path.read_bytes()).splitlines()  # the bad lines included
    reviews = []
    for line in lines:
        try:
            reviews.append(json.loads(line))
        except ValueError:  # truncated JSON, invalid UTF-8: sample-data's bad records
            continue
    reviews = [r for r in reviews if isinstance(r.get("reviewText"), str) and r["reviewText"]]
    items = sorted({r["asin"] for r in reviews})
    ratings = [{"reviewerID": RATINGS_ONLY_USER, "asin": item, "overall": 5.0,
                "unixReviewTime": 1_600_000_000 + i} for i, item in enumerate(items[:3])]
    ratings += [{"reviewerID": r["reviewerID"], "asin": items[-1], "overall": 2.0,
                 "reviewText": "", "unixReviewTime": 1_600_000_100} for r in reviews[:2]
                if r["asin"] != items[-1]]
    lines += [json.dumps(r).encode() for r in ratings]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    return ratings


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("e2e")
    for stage in CHAIN:
        assert cli.main([stage[0], "--workspace", str(ws), *stage[1:]]) == 0, stage[0]
        if stage[0] == "sample-data":
            (ws / "ratings.json").write_text(json.dumps(add_ratings_without_text(ws)))
    return ws


@pytest.mark.slow
def test_ratings_without_text_are_interactions(workspace):
    """A rating without review text is kept as a `rating` document and counted; it reaches the
    recommender's interactions, so a user known only by such ratings does not vanish."""
    import pyarrow.parquet as pq

    ratings = json.loads((workspace / "ratings.json").read_text())
    stats = json.loads((workspace / "ingest" / "stats.json").read_text())
    assert stats["steps"]["ratings_without_text"] == len(ratings) >= 4
    docs = read_docs(workspace / "ingest" / "docs", kinds=["rating"],
                     columns=["user", "item", "rating", "text"])
    assert len(docs) == len(ratings) and set(docs["text"]) == {""}
    interactions = pq.read_table(workspace / "features" / "interactions.parquet").to_pandas()
    mine = interactions[interactions["user"] == RATINGS_ONLY_USER]
    assert sorted(mine["item"]) == sorted(r["asin"] for r in ratings[:3])
    assert set(mine["rating"]) == {5.0}
    reviews = read_docs(workspace / "ingest" / "docs", kinds=["review"], columns=["user"])
    assert len(interactions) == len(reviews) + len(ratings)


@pytest.mark.slow
def test_chain_serves_explanations_citing_planted_aspects_and_real_sentences(workspace):
    from serving.client import ServingClient

    truth = json.loads((workspace / "raw" / "truth.json").read_text())
    surface = {form.lower(): name for name, forms in truth["aspects"].items() for form in forms}
    lexicon = {a["name"]: a["terms"] for a in
               json.loads((workspace / "vocab" / "aspects.json").read_text())["aspects"]}
    docs = read_docs(workspace / "ingest" / "docs", kinds=["review"],
                     columns=["item", "user", "sentences"])
    sentences_of = {}
    for item, sentences in zip(docs["item"], docs["sentences"]):
        sentences_of.setdefault(item, set()).update(sentences)
    # Active users (their profiles say the most) who still have at least 5 unseen items.
    counts = docs.drop_duplicates(["user", "item"])["user"].value_counts()
    users = [user for user, n in counts.items() if n <= docs["item"].nunique() - 5][:5]

    def planted(aspect: str, user: str) -> bool:
        """True when a mined aspect is (a surface form of) one the user was planted to care about."""
        forms = [aspect, *lexicon.get(aspect, [])]
        return any(surface.get(form) in truth["users"][user]["aspects"] for form in forms)

    server, base = start_server_process(workspace)
    try:
        client = ServingClient(base)
        assert client.status("recommender")["model_version_status"][0]["state"] == "AVAILABLE"
        response = client.predict("recommender", inputs={"user_id": users, "k": 3},
                                  signature_name="recommend")["outputs"]
        personal = cited_planted = 0
        for row, user in enumerate(users):
            assert len(response["item_ids"][row]) == 3
            for item, explanation in zip(response["item_ids"][row], response["explanations"][row]):
                assert item, "a catalogue of 20 items leaves every user 3 unseen ones"
                match = PERSONAL.match(explanation)
                if match is None:  # no aspect this user cares about is praised: what they
                    # liked that leads here, else the item's best-praised aspect, else the plain line
                    assert explanation.startswith(("Because you liked", "Reviewers praise its")) \
                        or PLAIN.match(explanation), explanation
                    continue
                # The quote is verbatim a sentence of one of this item's reviews.
                assert match["sentence"] in sentences_of[item], (item, explanation)
                if match["how"] == "wrote":  # an aspect the user only mentions: not counted
                    continue
                personal += 1
                cited_planted += planted(match["aspect"], user)
        print(f"{personal} of {3 * len(users)} explanations personal, {cited_planted} cite a "
              "planted aspect")
        # Measured over five runs of this chain: 10-12 of 15 personal, of which 55-100% cite a
        # planted aspect (the rest name filler the user repeats, e.g. "carrying case"). The
        # 40-step nano encoder's polarities vary from run to run and machine to machine (thread
        # order, oneDNN numerics), which moves the argmax, so the bar is "well above chance":
        # a planted aspect is 2-3 of ~15 mined ones, about a fifth at random.
        assert personal >= 7, response["explanations"]
        assert cited_planted >= 0.5 * personal, response["explanations"]

        # Raw text in, features out, through the same server.
        features = client.predict("text_features", instances=["The sound is great."])
        assert features["predictions"][0]["sentiment_label"] in ("negative", "neutral", "positive")
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


@pytest.mark.slow
def test_item_descriptions_quote_the_items_reviews_and_lean_to_planted_quality(workspace, capsys):
    """`describe` writes every reviewed item's pros and cons; quotes are verbatim sentences of
    the item's reviews; pros fall on aspects planted good more often than on ones planted bad."""
    truth = json.loads((workspace / "raw" / "truth.json").read_text())
    surface = {form.lower(): name for name, forms in truth["aspects"].items() for form in forms}
    lexicon = {a["name"]: a["terms"] for a in
               json.loads((workspace / "vocab" / "aspects.json").read_text())["aspects"]}
    items = json.loads((workspace / "describe" / "items.json").read_text())["items"]
    docs = read_docs(workspace / "ingest" / "docs", kinds=["review"], columns=["item", "sentences"])
    assert {d["item"] for d in items} == set(docs["item"])
    sentences_of = {}
    for item, sentences in zip(docs["item"], docs["sentences"]):
        sentences_of.setdefault(item, set()).update(sentences)

    def planted_quality(item: str, aspect: str) -> int | None:
        names = {surface.get(form) for form in [aspect, *lexicon.get(aspect, [])]} - {None}
        qualities = [truth["items"][item]["quality"][n] for n in names]
        return qualities[0] if qualities else None

    pro_quality = []
    for d in items:
        assert d["summary"]
        for point in d["pros"] + d["cons"]:
            assert point["quote"] in sentences_of[d["item"]], point
        pro_quality += [planted_quality(d["item"], p["aspect"]) for p in d["pros"]]
    good, bad = pro_quality.count(1), pro_quality.count(-1)
    print(f"pros on planted-good aspects {good}, on planted-bad {bad}, of {len(pro_quality)}")
    assert good > 2 * bad, pro_quality

    item = items[0]["item"]
    assert cli.main(["describe", "--workspace", str(workspace), "--if-stale", "--item", item]) == 0
    assert f"({item}, {items[0]['reviews']} reviews)" in capsys.readouterr().out


@pytest.mark.slow
def test_stages_reconcile_and_skip_when_up_to_date(workspace):
    stats = json.loads((workspace / "ingest" / "stats.json").read_text())
    assert stats["read"] == stats["written"] + stats["rejected"] + stats["deduplicated"]
    assert stats["rejected"] > 0 and stats["deduplicated"] > 0  # the planted bad lines
    record = json.loads((workspace / "features" / "_stage.json").read_text())
    assert cli.main(["features", "--workspace", str(workspace), "--if-stale"]) == 0
    assert json.loads((workspace / "features" / "_stage.json").read_text())["run_id"] == \
        record["run_id"]


def test_finetune_keeps_its_weights_without_the_optimizers_moments(workspace):
    """`classifier.weights.h5` is what re-export needs; Adam's moments would triple it."""
    with h5py.File(workspace / "finetune" / "classifier.weights.h5") as kept:
        assert "layers" in kept and "optimizer" not in kept


@pytest.mark.slow
def test_sentence_boundary_sop_restores_the_last_pretraining_checkpoint(workspace):
    from benchmarks.pretraining_curve import sentence_boundary_sop

    stats = json.loads((workspace / "pretraining_data" / "stats.json").read_text())
    metrics = json.loads((workspace / "pretrain" / "metrics.json").read_text())
    result = sentence_boundary_sop(workspace)
    assert result["step"] == metrics["step"] == 40
    # Only pairs of multi-sentence chunks: fewer than the held-out pairs, which also hold the
    # one-sentence chunks cut within the sentence.
    held_out = stats["sop_labels"]["validation"]
    assert 0 < result["pairs"] < held_out["in_order"] + held_out["swapped"]
    assert 0.0 <= result["sop_accuracy"] <= 1.0
