"""`opinionrec track`: saved topic centroids, online assignment with novelty, the Beam job's
windows x topics cells, bursts, negative shifts and new topics.

The vectors are hand-made (three topics along three axes, a fourth direction nobody fitted) so
each assertion has one right answer; the command on a real model's features runs in
tests/test_report.py's chain.
"""

from __future__ import annotations

import json

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import tracking

DIM = 8
WORDS = {0: "battery charge power", 1: "screen display bright", 2: "sound bass music",
         3: "recall fire smoke"}


def topic_vector(axis: int, rng: np.random.Generator, noise: float = 0.15) -> np.ndarray:
    vector = np.zeros(DIM, "float32")
    vector[axis] = 1.0
    return tracking._unit(vector + noise * rng.standard_normal(DIM).astype("float32"))


def corpus(n_per_topic: int = 40, topics=(0, 1, 2), seed: int = 0):
    rng = np.random.default_rng(seed)
    texts, vectors, truth = [], [], []
    for t in topics:
        for i in range(n_per_topic):
            texts.append(f"the {WORDS[t]} of this one {i}")
            vectors.append(topic_vector(t, rng))
            truth.append(t)
    return texts, np.stack(vectors), np.array(truth)


def test_saved_centroids_assign_new_documents_and_call_far_ones_novel(tmp_path):
    from sklearn.metrics import adjusted_rand_score

    texts, vectors, _ = corpus()
    model = tracking.fit_topic_model(texts, vectors, range(2, 6))
    assert len(model.names) == 3
    model.save(tmp_path / "model")
    loaded = tracking.SavedTopics.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.centroids, model.centroids)
    assert loaded.names == model.names

    rng = np.random.default_rng(1)
    fresh = np.stack([topic_vector(t, rng) for t in (0, 1, 2) for _ in range(10)])
    topic, similarity = loaded.assign(fresh)
    known = topic != tracking.NOVEL
    assert known.mean() >= 0.9  # the fit's own spread is seldom novel (its 1st percentile)
    assert adjusted_rand_score(np.repeat([0, 1, 2], 10)[known], topic[known]) == 1.0
    for t in range(3):  # each topic is named by its own words
        assert set(loaded.names[topic[10 * t]].split()) <= set(WORDS[t].split())

    unseen, _ = loaded.assign(np.stack([topic_vector(3, rng) for _ in range(5)]))
    assert (unseen == tracking.NOVEL).all()


def test_novel_documents_become_a_named_new_topic_and_stray_ones_do_not():
    rng = np.random.default_rng(2)
    novel = [{"text": f"a {WORDS[3]} warning number {i}", "embedding": topic_vector(3, rng, 0.1),
              "window_start": 1000 * (5 + i % 2), "negative": 1} for i in range(8)]
    for i, axis in enumerate((4, 5, 6)):  # three strays, each alone in its direction
        novel.append({"text": f"something else entirely {i}", "window_start": 1000 * i,
                      "embedding": topic_vector(axis, rng, 0.1), "negative": 0})
    fresh = tracking.new_topics(novel, within_similarity=0.9)
    assert len(fresh) == 1
    assert fresh[0]["docs"] == 8
    assert set(fresh[0]["name"].split()) <= set(f"{WORDS[3]} warning number".split())
    assert fresh[0]["first_window"] == 5000
    assert fresh[0]["share_negative"] == 1.0
    assert tracking.new_topics(novel[:4], within_similarity=0.9) == []  # too few to say


def cell(window, topic, docs, negative=0):
    return {"window_start": window, "topic": topic, "docs": docs, "negative": negative,
            "mean_sentiment": 0.5 - negative / max(docs, 1), "share_negative":
            round(negative / max(docs, 1), 4), "top_aspects": [], "examples": []}


def test_topic_rows_flag_a_volume_burst_and_a_negative_shift_in_their_windows():
    day = 86400
    names = ["zero", "one", "two", "three", "four"]
    cells = []
    for w in range(20):
        cells.append(cell(w * day, 0, 40, 24 if w == 14 else 4))  # topic 0: a bad day
        cells.append(cell(w * day, 1, 160 if w == 10 else 40, 4))  # topic 1: a burst
        cells += [cell(w * day, t, 40, 4) for t in (2, 3)]
        if w != 7:  # topic 4 has no document on day 7: a zero-filled window, not a gap
            cells.append(cell(w * day, 4, 40, 4))
    cells.append(cell(3 * day, tracking.NOVEL, 9))
    rows = tracking.topic_rows(cells, names, day)
    assert [t["name"] for t in rows] == names
    assert all(len(t["windows"]) == 20 for t in rows)
    assert rows[4]["windows"][7]["docs"] == 0
    assert [(b["start"], b["windows"]) for b in rows[1]["bursts"]] == [(10 * day, 1)]
    assert all(t["bursts"] == [] for t in rows if t["topic"] != 1)
    assert rows[0]["shifts"] == [14 * day]
    assert all(t["shifts"] == [] for t in rows[1:])
    assert rows[0]["docs"] == 20 * 40


def feature_row(doc_id, vector, timestamp, text, negative=False, user="u", rating=4.0,
                aspects=()):
    probs = [0.8, 0.1, 0.1] if negative else [0.1, 0.1, 0.8]
    return {"doc_id": doc_id, "kind": "review", "user": user, "item": "i", "rating": rating,
            "timestamp": timestamp, "text": text, "embedding": [float(x) for x in vector],
            "sentiment": probs, "aspects": list(aspects),
            "aspect_polarity": [-0.9 if negative else 0.9] * len(aspects)}


def test_the_beam_job_counts_each_review_once_per_window_and_topic(tmp_path):
    texts, vectors, _ = corpus(n_per_topic=30)
    model = tracking.fit_topic_model(texts, vectors, [3])
    model.save(tmp_path / "model")
    rng = np.random.default_rng(3)
    day = 86400
    rows = []
    for n in range(60):  # days 0-5, topic n % 3 (nearer its centre than the fit's 1st
        # percentile, so none is novel), one negative in three
        rows.append(feature_row(f"d{n}", topic_vector(n % 3, rng, 0.05), (n // 10) * day + 60,
                                f"text {n}", negative=n % 3 == 0, user=f"u{n}",
                                aspects=["battery"] if n % 3 == 0 else []))
    copy = dict(rows[0], doc_id="z-copy")  # Amazon's copy of d0 on another listing
    copy["item"] = "j"
    rows.append(copy)
    rows.append(feature_row("untimed", topic_vector(0, rng), None, "no time"))
    rows += [feature_row(f"new{i}", topic_vector(3, rng, 0.05), 5 * day + i,
                         f"recall notice {i}", user=f"n{i}") for i in range(4)]
    texts = [{"id": r["doc_id"], "kind": "review", "text": r.pop("text")} for r in rows]
    (tmp_path / "features").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "features" / "docs-0.parquet")
    (tmp_path / "docs").mkdir()
    pq.write_table(pa.Table.from_pylist(texts), tmp_path / "docs" / "docs-0.parquet")
    out = tmp_path / "out"
    with beam.Pipeline() as pipeline:
        tracking.build_pipeline(pipeline, str(tmp_path / "features" / "*.parquet"),
                                str(tmp_path / "docs" / "*.parquet"), str(tmp_path / "model"),
                                day, out, batch_size=16)
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    novel = [json.loads(line) for line in (out / "novel.jsonl").read_text().splitlines()]
    assert sum(c["docs"] for c in cells if c["topic"] != tracking.NOVEL) == 60  # copy once
    assert sorted(d["doc_id"] for d in novel) == [f"new{i}" for i in range(4)]
    assert all(d["window_start"] == 5 * day and len(d["embedding"]) == DIM for d in novel)
    topic_of_d0 = next(c["topic"] for c in cells if c["window_start"] == 0 and
                       any(e["doc_id"] == "d0" for e in c["examples"]))
    first = next(c for c in cells if c["window_start"] == 0 and c["topic"] == topic_of_d0)
    # d0, d3, d6, d9 are topic 0 in day 0, all negative, all about the battery.
    assert first["docs"] == 4 and first["share_negative"] == 1.0
    assert first["top_aspects"] == [{"aspect": "battery", "mentions": 4, "mean_polarity": -0.9}]
    assert len(first["examples"]) == tracking.EXAMPLES
    assert {(c["window_start"] // day) for c in cells} == set(range(6))


@pytest.mark.parametrize("bad", ["2019-13-01", "soon"])
def test_fit_until_must_be_a_date(bad, tmp_path):
    import argparse

    args = argparse.Namespace(fit_until=bad, max_fit_docs=10, k=None, k_max=3)
    ws = type("WS", (), {"features": tmp_path, "docs": tmp_path / "texts"})()
    texts, vectors, _ = corpus(n_per_topic=5)
    for folder, rows in (("docs", [{"doc_id": str(i), "timestamp": 100 + i,
                                    "embedding": v.tolist()} for i, v in enumerate(vectors)]),
                         ("texts", [{"id": str(i), "text": t} for i, t in enumerate(texts)])):
        (tmp_path / folder).mkdir()
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / folder / "a.parquet")
    with pytest.raises(SystemExit, match="YYYY-MM-DD"):
        tracking._fit(ws, args, tmp_path / "model")


def test_a_corpus_without_times_is_one_window(tmp_path):
    """Chinese review sets carry no times: `track` counts their topics over the whole corpus."""
    texts, vectors, _ = corpus(n_per_topic=20)
    tracking.fit_topic_model(texts, vectors, [3]).save(tmp_path / "model")
    rng = np.random.default_rng(4)
    rows = [feature_row(f"d{n}", topic_vector(n % 3, rng, 0.05), None, f"文本 {n}",
                        user=None, negative=n % 3 == 1) for n in range(30)]
    docs = [{"id": r["doc_id"], "kind": "review", "text": r.pop("text")} for r in rows]
    for folder, table in (("features", rows), ("docs", docs)):
        (tmp_path / folder).mkdir()
        pq.write_table(pa.Table.from_pylist(table), tmp_path / folder / "a.parquet")
    with beam.Pipeline() as pipeline:
        tracking.build_pipeline(pipeline, str(tmp_path / "features" / "*.parquet"),
                                str(tmp_path / "docs" / "*.parquet"), str(tmp_path / "model"),
                                tracking.ALL_TIME, tmp_path / "out", untimed_at=1)
    cells = [json.loads(line) for line in (tmp_path / "out" / "cells.jsonl").read_text()
             .splitlines()]
    assert {c["window_start"] for c in cells} == {0}
    assert sorted(c["docs"] for c in cells) == [10, 10, 10]
    assert sorted(c["share_negative"] for c in cells) == [0.0, 0.0, 1.0]
    topics = tracking.topic_rows(cells, ["a", "b", "c"], tracking.ALL_TIME)
    assert [len(t["windows"]) for t in topics] == [1, 1, 1]
    assert all(t["bursts"] == [] and t["shifts"] == [] for t in topics)


def test_tfidf_topics_are_saved_with_their_vectorizer_and_assign_new_texts(tmp_path):
    """The default space: TF-IDF + SVD fitted with the topics, pickled beside the centroids, so
    the Beam job embeds new texts exactly as the fit did."""
    texts, _, truth = corpus(n_per_topic=20)
    model = tracking.fit_topic_model(texts, None, [3])
    assert model.embedding == "tfidf" and model.embedder is not None
    model.save(tmp_path / "model")
    loaded = tracking.SavedTopics.load(tmp_path / "model")
    fresh = [f"new {WORDS[t]} text" for t in (0, 1, 2)]
    vectors = loaded.embed(fresh, encoder_vectors=[None] * 3)
    np.testing.assert_allclose(vectors, model.embed(fresh, [None] * 3), atol=1e-6)
    topic, _ = loaded.assign(vectors)
    by_name = [set(loaded.names[t].split()) if t != tracking.NOVEL else set() for t in topic]
    assert all(by_name[t] <= set(WORDS[t].split()) and by_name[t] for t in range(3))


def test_only_documents_after_the_fit_and_with_content_can_make_a_new_topic():
    novel = [{"timestamp": t, "doc_id": str(t), "text": "battery recall smoke warning"}
             for t in (5, 10, 11, 20)]
    novel.append({"timestamp": 30, "doc_id": "ok", "text": "Ok, it is what it is!"})
    assert [d["doc_id"] for d in tracking.after_fit(novel, 11)] == ["11", "20"]
    assert tracking.after_fit(novel, None) == []  # fitted on every time there is
