"""recommender/signals.py, ranking.py and fit.py: first-stage signals, the DCN ranker, the protocol.

EASE and item-kNN are checked against independent formulations; the ranker's training lists
against the inner split; `fit_recommender` on the planted data of `test_recommender` must beat
most-popular and every single signal it combines, choose on dev only, and fall back (loudly) when
its ranker is worse than a single signal.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from tests.test_recommender import make_features


def _frame(pairs, num_users=None):
    users, items = zip(*pairs)
    return pd.DataFrame({"user": [f"u{u}" for u in users], "item": [f"i{i}" for i in items],
                         "user_row": users, "item_row": items, "rating": 4.0})


def test_ease_weights_solve_the_constrained_least_squares_problem():
    """EASE: argmin_B ||X - XB||^2 + l2 ||B||^2 subject to diag(B) = 0; column j is a ridge
    regression of item j on the other items, which we solve directly."""
    from recommender.signals import ease_weights

    rng = np.random.default_rng(0)
    history = (rng.random((30, 6)) < 0.4).astype("float32")
    weights = ease_weights(history, l2=2.0)
    assert np.allclose(np.diag(weights), 0.0)
    for j in range(6):
        others = [i for i in range(6) if i != j]
        x = history[:, others].astype("float64")
        ridge = np.linalg.solve(x.T @ x + 2.0 * np.eye(5), x.T @ history[:, j])
        np.testing.assert_allclose(weights[others, j], ridge, rtol=1e-4, atol=1e-5)


def test_knn_scores_sum_the_top_neighbour_cosines_of_the_user_items():
    """Item-kNN by hand: cosine of item columns, each item keeping its 3 nearest neighbours."""
    from recommender import evaluate as evaluation
    from recommender.signals import history_matrix

    rng = np.random.default_rng(1)
    pairs = {(int(u), int(i)) for u, i in zip(rng.integers(0, 20, 120), rng.integers(0, 8, 120))}
    frame = _frame(sorted(pairs))
    history = history_matrix(frame, 20, 8).astype("float64")
    cosine = np.zeros((8, 8))
    for a in range(8):
        for b in range(8):
            if a != b:
                norm = np.linalg.norm(history[:, a]) * np.linalg.norm(history[:, b])
                cosine[a, b] = history[:, a] @ history[:, b] / norm if norm else 0.0
    expected = np.zeros((20, 8))
    for user in range(20):
        for target in range(8):
            kept = np.sort(cosine[target])[::-1][:3]  # the target's 3 nearest neighbours
            for item in np.flatnonzero(history[user]):
                if cosine[target, item] >= kept[-1]:
                    expected[user, target] += cosine[target, item]
    scores = evaluation.item_knn_scorer(frame, 20, 8, neighbours=3)(np.arange(20))
    np.testing.assert_allclose(scores, expected, atol=1e-5)


def test_signals_are_standardised_per_user_and_popularity_is_global():
    from recommender.signals import FEATURES, fit_signals

    rng = np.random.default_rng(2)
    frame = _frame([(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (2, 0), (2, 1)])
    signals = fit_signals(frame, 3, 5, user_vectors=rng.normal(size=(3, 4)),
                          item_vectors=rng.normal(size=(5, 4)), user_text=rng.normal(size=(3, 6)),
                          item_text=rng.normal(size=(5, 6)), user_aspects=rng.random((3, 2)),
                          item_aspects=rng.random((5, 2)), ease_l2=1.0)
    matrix = signals.feature_matrix(np.array([0, 2]))
    assert matrix.shape == (2, 5, len(FEATURES))
    tower = matrix[..., FEATURES.index("two_tower")]
    np.testing.assert_allclose(tower.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(tower.std(axis=1), 1.0, atol=1e-3)
    popularity = matrix[..., FEATURES.index("popularity")]
    np.testing.assert_allclose(popularity[0], np.log1p([2, 3, 1, 1, 0]), rtol=1e-6)
    np.testing.assert_allclose(matrix[..., FEATURES.index("history")][:, 0], np.log1p([2, 3]))
    assert signals.mean_rating[4] == pytest.approx(1.0)  # no rating: the global mean (4) - 3


def test_inner_split_and_ranking_lists():
    from recommender import evaluate as evaluation
    from recommender.ranking import inner_split, ranking_lists
    from recommender.signals import fit_signals

    frame = _frame([(0, 0), (0, 1), (0, 2), (1, 3), (2, 1), (2, 4)])
    frame["timestamp"], frame["position"] = np.arange(6), np.arange(6)
    train = evaluation.split_interactions(frame).train  # u0: i0; u1: -; u2: -
    rest, targets = inner_split(frame.sort_values(["user", "timestamp"]))
    assert list(zip(targets.user, targets.item)) == [("u0", "i2"), ("u2", "i4")]
    assert len(rest) == 4 and ("u1", "i3") in set(zip(rest.user, rest.item))  # one: not a target
    assert len(train) == 1
    rng = np.random.default_rng(3)
    signals = fit_signals(rest, 3, 5, user_vectors=rng.normal(size=(3, 2)),
                          item_vectors=rng.normal(size=(5, 2)), user_text=np.ones((3, 2)),
                          item_text=np.ones((5, 2)), user_aspects=np.zeros((3, 1)),
                          item_aspects=np.zeros((5, 1)), ease_l2=1.0)
    lists = ranking_lists(signals, targets, max_list=4)
    assert lists.features.shape == (2, 4, 8) and lists.label[:, 0].tolist() == [1.0, 1.0]
    assert lists.label[:, 1:].sum() == 0
    # u0 has seen i0, i1: 3 unseen candidates (target + 2); u2 has seen i1: 4 (target + 3)
    assert lists.mask.sum(axis=1).tolist() == [3, 4]


def test_divergence_is_detected():
    from recommender.fit import diverged

    assert diverged([4.9, 4.7, float("nan")])
    assert diverged([4.9, 5.5, 9.0])
    assert not diverged([4.9, 4.6, 4.4]) and not diverged([])


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from recommender import evaluate as evaluation
    from recommender.data import load_features

    folder = tmp_path_factory.mktemp("features")
    truth = make_features(folder, num_users=300, num_items=60, per_user=10)
    features = load_features(folder)
    return {"features": features, "split": evaluation.split_interactions(features.interactions),
            "truth": truth}


@pytest.mark.slow
def test_fit_recommender_beats_most_popular_and_chooses_on_dev(planted):
    from recommender.fit import fit_recommender
    from recommender.ranking import inner_split
    from recommender.train import TrainConfig

    features, split = planted["features"], planted["split"]
    result = fit_recommender(features, split, TrainConfig(epochs=4, patience=0, ranker_epochs=8),
                             temperatures=(0.05, 0.2))
    test = {name: parts["all"]["ndcg@10"] for name, parts in result.test.items()}
    assert test["two-tower + ranker"] > test["most-popular"] + 0.05, test
    # The two-tower reads the planted aspect features: above the ID-free popularity baseline.
    assert test["two-tower"] > test["most-popular"], test
    assert result.choice == "ranker" and not result.fallback
    tower = result.training["two_tower"]
    assert set(tower["temperature_grid"]) == {"0.05", "0.2"} and not tower["diverged"]
    assert all(np.isfinite(tower["loss_per_epoch"]))
    assert tower["loss_per_epoch"][-1] < tower["loss_per_epoch"][0]
    assert result.ease_l2 in (1.0, 10.0, 50.0, 100.0, 300.0, 1000.0)
    # Exported signals are refitted on every interaction (train + dev + test).
    assert result.exported.history.sum() == len(split.train) + len(split.dev) + len(split.test)
    # The ranker's lists: one per user with 2+ train interactions left, per inner split.
    ranker, rest, expected = result.training["ranker"], split.train, 0
    for _ in range(3):
        rest, targets = inner_split(rest)
        expected += len(targets)
    assert ranker["inner_splits"] == 3 and ranker["lists"] == expected > len(split.train.user.unique())


def test_a_ranker_worse_than_a_single_signal_falls_back_loudly(planted, monkeypatch, caplog):
    """A ranker that learnt nothing (random weights, zero epochs) loses to item-kNN on dev: the
    fit must export the best single signal and say so."""
    from recommender import fit as fit_lib
    from recommender import ranking
    from recommender.ranking import DCNRanker
    from recommender.train import TrainConfig

    def untrained(lists, dev_metric, **kwargs):
        ranker = DCNRanker(seed=7)
        ranker(np.zeros((1, 2, lists.features.shape[-1]), "float32"))
        return ranker, [dev_metric(ranker)]

    monkeypatch.setattr(ranking, "train_ranker", untrained)
    with caplog.at_level(logging.WARNING, logger="opinionrec"):
        result = fit_lib.fit_recommender(planted["features"], planted["split"],
                                         TrainConfig(epochs=1, patience=0), temperatures=(0.1,))
    dev = {name: parts["all"]["ndcg@10"] for name, parts in result.dev.items()}
    best = max(dev, key=dev.get)
    assert best != "two-tower + ranker", dev
    assert result.fallback and result.choice == fit_lib.SINGLE_SIGNALS[best]
    assert "BELOW" in caplog.text and best in caplog.text


def test_train_only_profiles_leave_held_out_reviews_out():
    """A user's and an item's profile are rebuilt from the allowed reviews only."""
    from recommender.data import FeatureSet, Items, Users
    from recommender.profiles import profiles_from

    items = Items(ids=np.array(["a", "b"], dtype=object), titles=np.array(["", ""], dtype=object),
                  n_reviews=np.array([2, 1]), embedding=np.full((2, 2), 9.0, "float32"),
                  aspect_score=np.full((2, 1), 0.9, "float32"),
                  aspect_count=np.ones((2, 1), "int32"),
                  aspect_sentence=np.array([[""], [""]], dtype=object), aspect_positive=None)
    users = Users(ids=np.array(["u", "v"], dtype=object), n_reviews=np.array([2, 1]),
                  aspect_weight=np.ones((2, 1), "float32"), embedding=np.full((2, 2), 9.0,
                                                                             "float32"))
    reviews = pd.DataFrame({
        "user": ["u", "u", "v"], "item": ["a", "b", "a"],
        "embedding": [[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]],
        "aspects": [["fit"], [], ["fit"]], "aspect_polarity": [[0.5], [], [-0.5]]})
    features = FeatureSet(aspects=["fit"], items=items, users=users,
                          interactions=pd.DataFrame(), reviews=reviews)
    train = pd.DataFrame({"user": ["u", "v"], "item": ["a", "a"]})  # u's review of b held out
    rebuilt = profiles_from(features, reviews, train)
    np.testing.assert_allclose(rebuilt.users.embedding, [[1.0, 0.0], [3.0, 3.0]])
    np.testing.assert_allclose(rebuilt.items.embedding, [[2.0, 1.5], [0.0, 0.0]])  # b: none left
    np.testing.assert_allclose(rebuilt.items.aspect_score, [[0.0], [0.0]])  # +0.5 and -0.5
    # Mentions, praise and the users' mentions count train reviews only (the personal evidence
    # dev and test are scored with).
    np.testing.assert_array_equal(rebuilt.items.aspect_count, [[2], [0]])
    np.testing.assert_array_equal(rebuilt.items.aspect_positive, [[1], [0]])
    np.testing.assert_array_equal(rebuilt.users.aspect_count, [[1], [1]])
    np.testing.assert_array_equal(rebuilt.users.n_reviews, [1, 1])
    assert features.users.embedding[0, 0] == 9.0  # the original is untouched


def test_export_choice_falls_back_only_beyond_the_noise_of_dev(caplog):
    """A single signal a hair better than the ranker on a few dev users is noise: the ranker is
    kept (with a warning). One clearly better on many users is exported instead."""
    from recommender.fit import RANKER, choose_export

    rng = np.random.default_rng(0)
    ranker = rng.integers(1, 30, size=120)
    ranker[:3] = 5
    slightly = ranker.copy()
    slightly[:3] = 4  # three users rank their held-out item one place higher
    with caplog.at_level(logging.WARNING, logger="opinionrec"):
        choice, info = choose_export({RANKER: ranker, "ease": slightly, "most-popular": ranker + 5})
    assert choice == "ranker" and info["best_on_dev"] == "ease"
    assert info["below_within_noise"] and info["gap_over_ranker"]["ci95"][0] <= 0
    assert "by less than the noise" in caplog.text

    clearly = np.ones(400, "int64")  # every held-out item first
    choice, info = choose_export({RANKER: rng.integers(5, 30, size=400), "item-knn": clearly})
    assert choice == "item_knn" and info["gap_over_ranker"]["ci95"][0] > 0
    assert "below_within_noise" not in info

    choice, info = choose_export({RANKER: clearly, "ease": clearly})  # a tie keeps the ranker
    assert choice == "ranker" and "gap_over_ranker" not in info


def test_rerank_settings_are_the_largest_within_two_percent_of_the_plain_dev_ndcg(planted):
    """`choose_rerank` takes the largest popularity penalty, then the largest boost, that keep
    dev NDCG within 2% of the plain ranking's on all dev users and on each half of them; a
    penalty pushes the most popular item down."""
    from recommender import rerank as rerank_lib
    from recommender.signals import history_matrix

    features, split = planted["features"], planted["split"]
    num_users, num_items = len(features.users), len(features.items)
    history = history_matrix(split.train, num_users, num_items)
    log_popularity = np.log1p(history.sum(axis=0))
    co = history.T @ history
    base = lambda users: history[users] @ co  # noqa: E731  co-occurrence, popular-heavy
    evidence = (np.random.default_rng(0).random((num_users, num_items)) < 0.2).astype("float32")
    setting, info = rerank_lib.choose_rerank(base, evidence, log_popularity, split, num_items)
    grid, key = info["grid"], "dev_ndcg@10"
    plain = grid["boost 0.0, penalty 0.0"]

    def within(name: str) -> bool:
        figures = grid[name]
        return all(value >= 0.98 * reference for value, reference in zip(
            [figures[key], *figures[f"{key}_halves"]], [plain[key], *plain[f"{key}_halves"]]))

    assert within(f"boost {setting.boost}, penalty {setting.popularity_penalty}")
    larger_penalties = [p for p in rerank_lib.PENALTY_GRID if p > setting.popularity_penalty]
    assert not any(within(f"boost 0.0, penalty {p}") for p in larger_penalties)
    larger_boosts = [b for b in rerank_lib.BOOST_GRID if b > setting.boost]
    assert not any(within(f"boost {b}, penalty {setting.popularity_penalty}")
                   for b in larger_boosts)
    # The halves are the dev users of even and of odd rows; their mean weighs them by size.
    rows = split.dev["user_row"].to_numpy()
    sizes = [np.sum(rows % 2 == half) for half in (0, 1)]
    np.testing.assert_allclose(np.dot(plain[f"{key}_halves"], sizes) / sum(sizes), plain[key],
                               rtol=1e-6)
    scores = rerank_lib.rerank(base(np.arange(5)), evidence[:5], log_popularity,
                               rerank_lib.Rerank(popularity_penalty=1.0))
    plain = rerank_lib.rerank(base(np.arange(5)), evidence[:5], log_popularity,
                              rerank_lib.Rerank())
    top = int(np.argmax(log_popularity))
    assert (scores[:, top] < plain[:, top]).all()
    np.testing.assert_allclose(plain.mean(axis=1), 0.0, atol=1e-4)  # standardised per user


def test_exposure_offsets_hold_every_item_to_the_cap_and_keep_its_widest_margins():
    """One item first for most of 200 users: after the offsets no item is top-1 for more than 20%,
    the users who keep it are those it led by most, and an item under the cap is never lowered."""
    from recommender.rerank import exposure_offsets, top1_shares, top_candidates

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(200, 30))
    scores[:180, 0] += 4.0  # item 0 dominates
    seen = np.zeros_like(scores, dtype=bool)
    seen[:, 29] = True  # never a candidate
    values, items = top_candidates(scores, seen, m=8)
    assert values.shape == (200, 8) and (items != 29).all()
    assert (np.diff(values, axis=1) <= 0).all()  # descending
    assert top1_shares(values, items, 30).max() > 0.6
    offsets = exposure_offsets(values, items, 30, max_share=0.2)
    shares = top1_shares(values, items, 30, offsets)
    assert shares.max() <= 0.2 and offsets[0] > 0
    assert np.count_nonzero(offsets) <= 3  # only items that crossed the cap
    margin = scores[:, 0] - np.where(seen, -np.inf, scores)[:, 1:].max(axis=1)
    kept = np.argmax(np.where(seen, -np.inf, scores - offsets[None, :]), axis=1) == 0
    assert kept.sum() >= 30  # the cap is met without emptying the item
    assert margin[kept].min() > margin[~kept & (scores[:, 0] > scores[:, 1:29].max(axis=1))].max()
    np.testing.assert_array_equal(exposure_offsets(values, items, 30, max_share=0.95), 0.0)


def test_exposure_cap_is_refused_when_it_would_drop_dev_ndcg_below_the_floor(planted):
    """`choose_exposure_cap` fits the offsets on train users' lists; a floor above the capped dev
    NDCG refuses them (and says what they would cost), unless the floor signal's dev ranks show
    the gap is inside the noise; a floor of 0 keeps them."""
    from recommender import rerank as rerank_lib
    from recommender.signals import history_matrix

    features, split = planted["features"], planted["split"]
    num_users, num_items = len(features.users), len(features.items)
    history = history_matrix(split.train, num_users, num_items)
    popularity = history.sum(axis=0)
    scorer = lambda users: np.tile(popularity, (len(users), 1)) + 0.01 * history[users] @ (  # noqa
        history.T @ history)  # one popular item first for almost everyone
    offsets, info = rerank_lib.choose_exposure_cap(scorer, split, num_items, floor=0.0)
    assert info["capped_items"] > 0 and not info["refused"] and offsets is not None
    assert info["largest_top1_share_before"] > 0.2 >= info["largest_top1_share_after"]
    refused, info = rerank_lib.choose_exposure_cap(scorer, split, num_items,
                                                   floor=info["dev_ndcg@10_after"] + 1e-6)
    assert refused is None and info["refused"]
    # With the floor signal's dev ranks, a gap inside the noise keeps the cap (the signal ranks
    # like the capped model), a gap beyond it refuses (the signal puts every dev item first).
    from recommender import evaluate as evaluation
    capped_ranks = evaluation.part_ranks(lambda rows: scorer(rows) - offsets[None, :], split,
                                         num_items, "dev")
    floor = info["dev_ndcg@10_after"] + 1e-6
    kept, info = rerank_lib.choose_exposure_cap(scorer, split, num_items, floor=floor,
                                                floor_ranks=capped_ranks)
    assert kept is not None and not info["refused"]
    assert info["floor_gap_over_capped"]["ci95"][0] <= 0
    refused, info = rerank_lib.choose_exposure_cap(scorer, split, num_items, floor=floor,
                                                   floor_ranks=np.ones_like(capped_ranks))
    assert refused is None and info["refused"]
    none, info = rerank_lib.choose_exposure_cap(scorer, split, num_items, floor=0.0,
                                                max_share=1.0)
    assert none is None and not info["refused"]


def test_top_candidates_are_the_stable_sort_of_the_unseen_items():
    """Ties broken by catalogue row, as the evaluation harness does; seen items never lead."""
    from recommender.rerank import top_candidates

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=(50, 40)).astype("float32")  # many ties
    seen = rng.random((50, 40)) < 0.3
    values, items = top_candidates(scores, seen, m=10)
    expected = np.argsort(-np.where(seen, -np.inf, scores), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(scores, expected, axis=1))



def test_an_ensemble_averages_its_members_scores(planted):
    """Towers of several seeds: their unit vectors concatenated over sqrt(n) dot to the mean
    cosine and stay unit length; rankers: the ensemble's logits are the mean of its members'."""
    from recommender import evaluate as evaluation
    from recommender.ranking import DCNRanker, RankerEnsemble
    from recommender.train import TrainConfig, ensemble_vectors, tower_vectors, train_towers

    features, split = planted["features"], planted["split"]
    only_train = evaluation.Split(train=split.train, dev=split.dev.iloc[:0],
                                  test=split.test.iloc[:0])
    towers = train_towers(features, only_train, TrainConfig(epochs=1, patience=0, seeds=2))
    parts = [tower_vectors(t.model, features) for t in towers]
    assert not np.allclose(parts[0][0], parts[1][0])  # two seeds, two models
    users, items = ensemble_vectors(towers, features)
    assert users.shape[1] == 2 * parts[0][0].shape[1]
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(users @ items.T, np.mean([u @ i.T for u, i in parts], axis=0),
                               rtol=1e-4, atol=1e-5)

    rng = np.random.default_rng(0)
    lists = rng.normal(size=(2, 6, 8)).astype("float32")
    members = [DCNRanker(seed=seed) for seed in (1, 2)]
    ensemble = RankerEnsemble(members)
    np.testing.assert_allclose(ensemble(lists).numpy(),
                               np.mean([m(lists).numpy() for m in members], axis=0),
                               rtol=1e-5, atol=1e-6)
