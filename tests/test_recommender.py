"""recommender/: split and metrics (EVAL.md), the two-tower model, explanations (numpy vs in-graph).

Synthetic features with planted structure: user u cares about aspect `u % A`; each item is good at
one aspect (high `aspect_score` there, a praising sentence) and users mostly review items that are
good at their aspect, with a popularity skew on top. A model that reads the features must beat
most-popular and recommend items that are good at the user's aspect.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ASPECTS = ["battery", "sound", "comfort", "price"]


def make_features(folder: Path, num_users: int = 400, num_items: int = 80, per_user: int = 10,
                  dim: int = 8, seed: int = 0, positive_column: bool = True, num_new: int = 4
                  ) -> dict:
    """Write a `features` folder with planted structure; returns the planted truth.

    Items whose row is a multiple of 13 have no praising sentence at all (plain-line fallback);
    every 7th user has an all-zero `aspect_weight` (fallback explanations); the last `num_new` items
    only occur as the latest interaction of every 20th user (the cold-start slice).
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    num_aspects = len(ASPECTS)
    item_aspect = np.arange(num_items) % num_aspects
    score = rng.uniform(-0.6, 0.2, size=(num_items, num_aspects)).astype("float32")
    score[np.arange(num_items), item_aspect] = rng.uniform(0.5, 0.95, size=num_items)
    count = rng.integers(1, 8, size=(num_items, num_aspects)).astype("int32")
    positive = np.minimum(count, np.round(count * (score + 1) / 2)).astype("int32")
    sentence = np.full((num_items, num_aspects), "", dtype=object)
    for i in range(num_items):
        for a in range(num_aspects):
            if score[i, a] > 0 and i % 13:
                sentence[i, a] = f"The {ASPECTS[a]} of item {i} is wonderful, \"really\"."
    topic = rng.normal(size=(num_aspects, dim))
    item_emb = (topic[item_aspect] + rng.normal(scale=0.5, size=(num_items, dim))).astype("float32")
    popularity = rng.zipf(1.6, size=num_items).clip(max=30).astype("float64")

    user_aspect = np.arange(num_users) % num_aspects
    weight = np.full((num_users, num_aspects), 0.1, dtype="float32")
    weight[np.arange(num_users), user_aspect] = 0.7
    weight[::7] = 0.0
    rows = []
    new_items = np.arange(num_items - num_new, num_items)  # only ever a last interaction
    for u in range(num_users):
        logits = np.log(popularity) + 3.0 * score[:, user_aspect[u]]
        logits[new_items] = -np.inf
        p = np.exp(logits - logits.max())
        chosen = rng.choice(num_items, size=per_user, replace=False, p=p / p.sum())
        times = np.sort(rng.integers(1_000, 1_000 + 20, size=per_user))  # ties on purpose
        rows += [(f"u{u}", f"i{i}", float(rng.integers(3, 6)), int(t)) for i, t in
                 zip(chosen, times)]
        if num_new and u % 20 == 3:
            rows.append((f"u{u}", f"i{new_items[u % num_new]}", 5.0, 2_000))
    order = rng.permutation(len(rows))
    inter = pd.DataFrame([rows[j] for j in order], columns=["user", "item", "rating", "timestamp"])
    inter["position"] = np.arange(len(inter), dtype="int64")
    user_emb = np.stack([item_emb[[int(i[1:]) for i in inter.item[inter.user == f"u{u}"]]]
                         .mean(0) for u in range(num_users)]).astype("float32")

    item_columns = {
        "item": [f"i{i}" for i in range(num_items)],
        "title": [f"Item {i}" if i % 5 else "" for i in range(num_items)],
        "n_reviews": np.bincount([int(i[1:]) for i in inter.item], minlength=num_items),
        "embedding": list(item_emb), "aspect_score": list(score), "aspect_count": list(count),
        "aspect_sentence": [list(s) for s in sentence],
    }
    if positive_column:
        item_columns["aspect_positive"] = list(positive)
    pq.write_table(pa.table(item_columns), folder / "items.parquet")
    pq.write_table(pa.table({
        "user": [f"u{u}" for u in range(num_users)], "n_reviews": np.full(num_users, per_user),
        "aspect_weight": list(weight), "embedding": list(user_emb)}), folder / "users.parquet")
    pq.write_table(pa.Table.from_pandas(inter, preserve_index=False),
                   folder / "interactions.parquet")
    (folder / "aspects.json").write_text(json.dumps({"aspects": ASPECTS}))
    return {"user_aspect": user_aspect, "item_aspect": item_aspect, "score": score}


# === Split and metrics ===


def test_split_keeps_earliest_duplicate_and_breaks_ties_by_position():
    from recommender.evaluate import split_interactions

    frame = pd.DataFrame(
        [("a", "x", 5, 0), ("a", "y", 1, 1), ("a", "x", 3, 2),  # x again later: dropped
         ("a", "z", 5, 3), ("a", "w", 5, 4),                    # z, w tie with x on time
         ("b", "x", 2, 5), ("b", "y", 1, 6),                    # two interactions: dev + test
         ("c", "q", 9, 7)],                                     # one: test only
        columns=["user", "item", "timestamp", "position"])
    split = split_interactions(frame)
    as_set = lambda f: set(zip(f.user, f.item, f.position))  # noqa: E731
    # a: y(1) < x(3, pos 2) < z(5, pos 3) < w(5, pos 4) -> train y, x(pos 2); dev z; test w
    assert as_set(split.train) == {("a", "y", 1), ("a", "x", 2)}
    assert as_set(split.dev) == {("a", "z", 3), ("b", "y", 6)}
    assert as_set(split.test) == {("a", "w", 4), ("b", "x", 5), ("c", "q", 7)}


def test_rank_metrics_match_a_hand_worked_example():
    from recommender.evaluate import ranking_metrics, target_ranks

    scores = np.array([[0.9, 0.5, 0.7, 0.1],    # target 1; 0 excluded -> 0.7 ahead -> rank 2
                       [0.2, 0.2, 0.2, 0.2],    # target 2; ties: rows 0, 1 ahead -> rank 3
                       [0.0, 0.3, 0.1, 0.8]])   # target 3 -> rank 1
    excluded = np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=bool)
    ranks = target_ranks(scores, np.array([1, 2, 3]), excluded)
    assert ranks.tolist() == [2, 3, 1]
    metrics = ranking_metrics(ranks, k=2)
    assert metrics["recall@2"] == pytest.approx(2 / 3)
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3) + 0 + 1) / 3)
    assert metrics["mrr"] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)


def test_evaluate_matches_an_independent_argsort_computation():
    from recommender.evaluate import evaluate, split_interactions

    rng = np.random.default_rng(3)
    num_users, num_items = 30, 25
    frame = pd.DataFrame({"user_row": rng.integers(0, num_users, 300),
                          "item_row": rng.integers(0, num_items, 300),
                          "timestamp": rng.integers(0, 50, 300)})
    frame["position"] = np.arange(len(frame))
    frame["user"], frame["item"] = frame.user_row.astype(str), frame.item_row.astype(str)
    split = split_interactions(frame)
    table = rng.normal(size=(num_users, num_items)).round(1)  # rounding makes ties
    metrics = evaluate(lambda rows: table[rows], split, num_items, "test", k=5)

    recalls, ndcgs, rrs, cold = [], [], [], []
    train_items = set(split.train.item_row)
    for row in split.test.itertuples():
        seen = set(split.train.item_row[split.train.user_row == row.user_row]) | set(
            split.dev.item_row[split.dev.user_row == row.user_row])
        candidates = [i for i in range(num_items) if i not in seen]
        order = sorted(candidates, key=lambda i: (-table[row.user_row, i], i))
        rank = order.index(row.item_row) + 1
        recalls.append(rank <= 5)
        ndcgs.append(1 / math.log2(rank + 1) if rank <= 5 else 0.0)
        rrs.append(1 / rank)
        if row.item_row not in train_items:
            cold.append(1 / rank)
    assert metrics["all"]["users"] == len(split.test)
    assert metrics["all"]["recall@5"] == pytest.approx(np.mean(recalls))
    assert metrics["all"]["ndcg@5"] == pytest.approx(np.mean(ndcgs))
    assert metrics["all"]["mrr"] == pytest.approx(np.mean(rrs))
    assert metrics["cold_start"]["users"] == len(cold)
    if cold:
        assert metrics["cold_start"]["mrr"] == pytest.approx(np.mean(cold))


def test_popularity_scorer_counts_train_interactions_only():
    from recommender.evaluate import popularity_scorer

    train = pd.DataFrame({"user_row": [0, 1, 2, 0], "item_row": [2, 2, 0, 1]})
    scores = popularity_scorer(train, 4)(np.array([0, 5]))
    assert scores.tolist() == [[1, 1, 2, 0], [1, 1, 2, 0]]


# === Features ===


def test_load_features_aligns_rows_and_handles_gaps(tmp_path):
    from recommender.data import load_features

    make_features(tmp_path, num_users=20, num_items=12, per_user=5, num_new=0)
    inter = pq.read_table(tmp_path / "interactions.parquet").to_pandas()
    extra = pd.DataFrame([("stranger", "i1", 4.0, 5, 10_000), ("u1", "gone", 1.0, 5, 10_001)],
                         columns=["user", "item", "rating", "timestamp", "position"])
    pq.write_table(pa.Table.from_pandas(pd.concat([inter, extra]), preserve_index=False),
                   tmp_path / "interactions.parquet")
    features = load_features(tmp_path)
    assert features.aspects == ASPECTS
    assert len(features.items) == 12 and features.items.embedding.shape == (12, 8)
    assert features.items.aspect_sentence.shape == (12, 4)
    assert features.users.ids[-1] == "stranger"  # no profile: appended with zeros
    assert not features.users.aspect_weight[-1].any()
    assert "gone" not in set(features.interactions.item)  # not in the catalogue: dropped
    assert len(features.interactions) == len(inter) + 1
    rows = features.interactions
    assert (features.items.ids[rows.item_row] == rows.item).all()
    assert (features.users.ids[rows.user_row] == rows.user).all()
    with pytest.raises(FileNotFoundError, match="opinionrec features"):
        load_features(tmp_path / "nowhere")


# === Model ===


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained on the planted data (shared by the model and explanation tests)."""
    from recommender import evaluate as evaluation
    from recommender.data import load_features
    from recommender.train import TrainConfig, train_retrieval

    folder = tmp_path_factory.mktemp("features")
    truth = make_features(folder)
    features = load_features(folder)
    split = evaluation.split_interactions(features.interactions)
    result = train_retrieval(features, split, TrainConfig(epochs=3, patience=0),
                             log_dir=folder.parent / "logs")
    return {"features": features, "split": split, "result": result, "truth": truth,
            "logs": folder.parent / "logs"}


@pytest.mark.slow
def test_model_beats_most_popular_and_recovers_the_planted_preference(trained):
    from recommender import evaluate as evaluation
    from recommender.train import model_scorer

    features, split = trained["features"], trained["split"]
    num_items = len(features.items)
    scorer = model_scorer(trained["result"].model, features)
    model = evaluation.evaluate(scorer, split, num_items, "test")
    popular = evaluation.evaluate(evaluation.popularity_scorer(split.train, num_items), split,
                                  num_items, "test")
    assert model["all"]["ndcg@10"] > popular["all"]["ndcg@10"] + 0.05, (model, popular)
    assert model["all"]["recall@10"] > popular["all"]["recall@10"] + 0.05, (model, popular)

    # Each user's top 10 are items good at the aspect the user was planted to care about.
    users = np.arange(len(features.users))
    top = np.argsort(-scorer(users), axis=1)[:, :10]
    planted = trained["truth"]["user_aspect"]
    score = trained["truth"]["score"]
    on_their_aspect = score[top, planted[:, None]].mean()
    on_other_aspects = np.mean([score[top, (planted[:, None] + s) % 4].mean() for s in (1, 2, 3)])
    assert on_their_aspect > 0.45 and on_their_aspect > on_other_aspects + 0.4

    assert len(trained["result"].dev_recall) == 3
    assert any(trained["logs"].rglob("events.out.tfevents*"))  # TensorBoard logs


def test_towers_take_features_and_unknown_ids():
    import tensorflow as tf

    from recommender.model import query_tower

    tower = query_tower(["a", "b"], embedding_dim=4)
    out = tower({"user_id": tf.constant(["a", "zzz"]), "aspect_weight": tf.zeros([2, 3]),
                 "embedding": tf.ones([2, 5])})
    assert out.shape == (2, 4)
    config = tower.get_config()
    assert config["vocabulary"] == ["a", "b"] and config["embedding_dim"] == 4


# === Explanations ===


def _tiny_tables(positive: bool = True):
    from recommender.explain import ExplanationTables

    sentence = np.array([["The battery lasts all week.", "Crisp, \"rich\" sound."],
                         ["", "Great sound for the money."],
                         ["", ""]], dtype=object)
    return ExplanationTables(
        aspects=np.array(["battery", "sound"], dtype=object),
        aspect_score=np.array([[0.8, 0.9], [-0.5, 0.6], [0.3, 0.2]], dtype="float32"),
        aspect_count=np.array([[5, 1], [2, 4], [3, 3]], dtype="int32"),
        aspect_positive=np.array([[4, 1], [0, 3], [2, 2]], dtype="int32") if positive else None,
        aspect_sentence=sentence,
        n_reviews=np.array([6, 4, 1], dtype="int64"),
        mean_rating=np.array([4.5, 3.25, np.nan], dtype="float32"),
        user_weight=np.array([[0.5, 0.5], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]], dtype="float32"),
    )


def test_reference_explanations_follow_the_rule_on_a_hand_worked_table():
    from recommender.explain import explain_reference

    tables = _tiny_tables()
    # user 0 weights both equally: battery 0.8*5/6=.667 beats sound 0.9*1/2=.45
    assert explain_reference(tables, 0, 0) == (
        'You care about battery: "The battery lasts all week." (praised in 4 of 5 mentions)')
    # user 1 cares about sound only
    assert explain_reference(tables, 1, 0) == (
        'You care about sound: "Crisp, "rich" sound." (praised in 1 of 1 mentions)')
    # user 3 cares about battery, which item 1's reviews criticise: its best aspect + a caveat
    assert explain_reference(tables, 3, 1) == (
        'Reviewers praise its sound: "Great sound for the money." '
        'Note: reviewers criticise its battery.')
    # all-zero weights and unknown users: fallback
    assert explain_reference(tables, 2, 0) == (
        'Reviewers praise its battery: "The battery lasts all week."')
    assert explain_reference(tables, -1, 1) == (  # no caveat for a user we know nothing of
        'Reviewers praise its sound: "Great sound for the money."')
    # no sentence: the plain line; padding: empty
    assert explain_reference(tables, 0, 2) == "1 review so far."
    assert explain_reference(_tiny_tables(), 0, 1) == (
        'You care about sound: "Great sound for the money." (praised in 3 of 4 mentions) '
        'Note: reviewers criticise its battery.')
    assert explain_reference(tables, 0, -1) == ""
    assert explain_reference(_tiny_tables(positive=False), 0, 0) == (
        'You care about battery: "The battery lasts all week." (mentioned 5 times)')


def _liked_tables(positive: bool = True):
    """_tiny_tables plus "because you liked": user 2 liked items 0 and 1 (item 1 adds 0.5 to
    item 2's score and 0.25 to item 0's), user 1 liked item 2 (adds nothing), user 3 liked nothing."""
    contribution = np.array([[0.0, 0.0, 0.3], [0.25, 0.0, 0.5], [0.0, 0.0, 0.0]], "float32")
    return dataclasses.replace(
        _tiny_tables(positive), contribution=contribution,
        liked=np.array([[-1, -1], [2, -1], [0, 1], [-1, -1]], "int32"),
        liked_name=np.array(["Battery Pack", "Speaker X", "B0001"], dtype=object))


def test_an_aspect_the_user_only_wrote_about_is_personal_too():
    from recommender.explain import explain_reference

    # user 2 has no preference beyond chance but mentioned sound in half their reviews
    mentioned = np.zeros((4, 2), "float32")
    mentioned[2, 1] = 0.5
    mentioned[0, 1] = 1.0  # user 0 prefers battery and sound equally; mentions do not override
    tables = dataclasses.replace(_tiny_tables(), user_mentioned=mentioned)
    assert explain_reference(tables, 2, 0) == (
        'You wrote about sound: "Crisp, "rich" sound." (praised in 1 of 1 mentions)')
    assert explain_reference(tables, 0, 0).startswith("You care about battery")


def test_because_you_liked_comes_after_personal_and_before_the_fallback():
    from recommender.explain import explain_reference

    tables = _liked_tables()
    # user 2 weights nothing: item 0 is explained by the liked item adding most to it (item 1)
    assert explain_reference(tables, 2, 0) == (
        'Because you liked Speaker X; reviewers praise its battery: "The battery lasts all week."')
    # nothing to quote on item 2: the liked line with the plain one; item 1 adds 0.5 > 0.3
    assert explain_reference(tables, 2, 2) == "Because you liked Speaker X. 1 review so far."
    # user 1's liked item adds nothing to item 0: personal still comes first anyway
    assert explain_reference(tables, 1, 0).startswith("You care about sound")
    assert explain_reference(tables, 1, 2) == "1 review so far."  # liked item 2 adds 0 to item 2
    assert explain_reference(tables, -1, 0).startswith("Reviewers praise its battery")


@pytest.mark.parametrize("positive, liked", [(True, False), (False, False), (True, True)])
def test_in_graph_explainer_agrees_with_the_reference(positive, liked):
    """(The mention share is part of every table here: user 2 only mentions sound.)"""
    import tensorflow as tf

    from recommender.explain import GraphExplainer, explain_reference_batch

    tables = _liked_tables(positive) if liked else _tiny_tables(positive)
    mentioned = np.zeros((4, 2), "float32")
    mentioned[2, 1], mentioned[3, 0] = 0.5, 0.25
    tables = dataclasses.replace(tables, user_mentioned=mentioned)
    users = np.array([0, 1, 2, 3, -1])
    items = np.array([[0, 1, 2, -1]] * 5)
    expected = explain_reference_batch(tables, users, items)
    got = GraphExplainer(tables)(tf.constant(users), tf.constant(items)).numpy()
    assert [[s.decode() for s in row] for row in got] == expected.tolist()
    # The plain line with a rating (4.25 rounds to 4.2 in both: the same binary value).
    rated = dataclasses.replace(tables, mean_rating=np.array([4.5, 3.25, 4.25], "float32"))
    line = GraphExplainer(rated)(tf.constant([0]), tf.constant([[2]])).numpy()[0, 0].decode()
    assert line == explain_reference_batch(rated, users[:1], np.array([[2]]))[0, 0]
    assert line == "1 review, average rating 4.2."


def test_without_aspects_every_explanation_is_the_plain_line():
    import tensorflow as tf

    from recommender.explain import ExplanationTables, GraphExplainer, explain_reference_batch

    empty = np.zeros((2, 0))
    tables = ExplanationTables(
        aspects=np.array([], dtype=object), aspect_score=empty.astype("float32"),
        aspect_count=empty.astype("int32"), aspect_positive=None,
        aspect_sentence=empty.astype(object), n_reviews=np.array([3, 1]),
        mean_rating=np.array([4.0, np.nan], "float32"), user_weight=empty.astype("float32"))
    users, items = np.array([0, -1]), np.array([[0, 1, -1], [1, 0, 0]])
    expected = [["3 reviews, average rating 4.0.", "1 review so far.", ""],
                ["1 review so far.", "3 reviews, average rating 4.0.",
                 "3 reviews, average rating 4.0."]]
    assert explain_reference_batch(tables, users, items).tolist() == expected
    got = GraphExplainer(tables)(tf.constant(users), tf.constant(items)).numpy()
    assert [[s.decode() for s in row] for row in got] == expected


def test_explanations_on_planted_data_quote_a_weighted_aspect_verbatim(trained):
    import tensorflow as tf

    from recommender.explain import (ExplanationTables, GraphExplainer,
                                     explain_reference_batch)

    features = trained["features"]
    tables = ExplanationTables.from_features(features)
    rng = np.random.default_rng(0)
    users = np.concatenate([np.arange(len(features.users)), [-1]])
    items = rng.integers(-1, len(features.items), size=(len(users), 6))
    expected = explain_reference_batch(tables, users, items)
    got = GraphExplainer(tables)(tf.constant(users), tf.constant(items)).numpy()
    assert [[s.decode() for s in row] for row in got] == expected.tolist()

    seen_kinds = set()
    for b, user in enumerate(users):
        for j, item in enumerate(items[b]):
            text = expected[b, j]
            if item < 0:
                assert text == ""
                continue
            weights = features.users.aspect_weight[user] if user >= 0 else np.zeros(4)
            sentences = features.items.aspect_sentence[item]
            score, count = features.items.aspect_score[item], features.items.aspect_count[item]
            # Independent float64 computation of the choice.
            value = [weights[a] * score[a] * count[a] / (count[a] + 1.0)
                     if sentences[a] and score[a] > 0 else -1.0 for a in range(4)]
            quotable = [a for a in range(4) if sentences[a] and score[a] > 0]
            if not quotable:
                seen_kinds.add("plain")
                assert text.startswith(f"{features.items.n_reviews[item]} review")
            elif max(value) > 0:
                seen_kinds.add("personal")
                aspect = int(np.argmax(value))
                assert weights[aspect] > 0
                assert text.startswith(f"You care about {ASPECTS[aspect]}: ")
                assert f'"{sentences[aspect]}"' in text
            else:
                seen_kinds.add("fallback")
                aspect = max(quotable, key=lambda a: score[a] * count[a] / (count[a] + 1.0))
                assert text.startswith(
                    f'Reviewers praise its {ASPECTS[aspect]}: "{sentences[aspect]}"')
            criticised = [a for a in range(4) if weights[a] > 0 and count[a] >= 2
                          and score[a] < 0]
            if criticised:
                seen_kinds.add("caveat")
                worst = min(criticised,
                            key=lambda a: weights[a] * score[a] * count[a] / (count[a] + 1.0))
                assert text.endswith(f" Note: reviewers criticise its {ASPECTS[worst]}.")
            else:
                assert "Note:" not in text
    assert seen_kinds == {"plain", "personal", "fallback", "caveat"}


# === Protocol check on real data (EVAL.md reference baselines) ===


@pytest.mark.parametrize("name, reference", [("All_Beauty", 0.2434), ("Gift_Cards", 0.0672),
                                             ("Magazine_Subscriptions", 0.0537)])
def test_most_popular_matches_the_eval_reference_on_amazon_5core(name, reference):
    """Our split + metrics reproduce EVAL.md's most-popular test NDCG@10 (tie order may differ)."""
    import gzip

    from tests.conftest import shared_file

    from recommender.evaluate import evaluate, popularity_scorer, split_interactions

    path = shared_file(f"amazon-reviews-2018-5core-small/{name}_5.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    frame = pd.DataFrame({"user": [r["reviewerID"] for r in records],
                          "item": [r["asin"] for r in records],
                          "timestamp": [r["unixReviewTime"] for r in records]})
    frame["position"] = np.arange(len(frame))
    frame["item_row"] = pd.factorize(frame["item"])[0]
    frame["user_row"] = pd.factorize(frame["user"])[0]
    split = split_interactions(frame)
    num_items = int(frame["item_row"].max()) + 1
    metrics = evaluate(popularity_scorer(split.train, num_items), split, num_items, "test")
    assert metrics["all"]["users"] == frame["user"].nunique()
    assert metrics["all"]["ndcg@10"] == pytest.approx(reference, abs=0.003)


def test_listings_sharing_reviews_become_one_product(tmp_path):
    """Amazon's variant copies: B and C carry the same users' same texts as A, so the three are
    one product; D shares one short review with A only (one shared text is not a copy)."""
    from recommender.data import item_groups, load_features

    rows = []
    for u in range(4):  # 4 users reviewed A, B and C with one text each
        for item in "ABC":
            rows.append((f"u{u}", item, 5.0, 100 + u, f"k{u}"))
    rows += [("u0", "D", 4.0, 50, "k0"), ("u9", "D", 3.0, 60, "other"), ("u8", "D", 2.0, 61, "x"),
             ("u7", "B", 5.0, 70, "y"), ("u6", "A", 4.0, 80, ""), ("u5", "A", 4.0, 81, "")]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp", "text_key"])
    frame["position"] = np.arange(len(frame))
    mapping = item_groups(frame)
    assert mapping == {"A": "A", "B": "A", "C": "A"}  # A has the most reviews (6)
    make_features(tmp_path, num_users=3, num_items=4, per_user=2, num_new=0)
    items = pq.read_table(tmp_path / "items.parquet").to_pandas()
    items["item"] = list("ABCD")
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), tmp_path / "items.parquet")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                   tmp_path / "interactions.parquet")
    grouped = load_features(tmp_path, group_items=True)
    assert list(grouped.items.ids) == ["A", "D"] and grouped.groups == {"A": ["B", "C"]}
    inter = grouped.interactions
    # each user's copied review counts once; u7's own review of B moves to A
    assert len(inter[inter.item == "A"]) == 4 + 1 + 2 and set(inter.item) == {"A", "D"}
    assert len(load_features(tmp_path).items) == 4  # grouping is opt-in
