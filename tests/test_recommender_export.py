"""The `recommender` SavedModel and the `train-recommender` command.

The export must answer in a fresh process that imports only TensorFlow (no TFRS, no tf-keras), with
the signature names and outputs TF Serving clients use, seen items excluded, unknown users served,
and no XLA compile attributes (TF Serving runs without XLA).
"""

from __future__ import annotations

import json
import os
from collections import Counter
import subprocess
import sys

import numpy as np
import pytest

from tests.test_recommender import make_features

OUTPUTS = {"item_ids", "scores", "explanations", "titles"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from recommender import evaluate as evaluation
    from recommender.data import load_features
    from recommender.fit import fit_recommender
    from recommender.serving_module import build_serving_module, export_recommender
    from recommender.train import TrainConfig

    root = tmp_path_factory.mktemp("export")
    make_features(root / "features", num_users=120, num_items=40, per_user=8)
    features = load_features(root / "features")
    split = evaluation.split_interactions(features.interactions)
    # Two seeds: the export holds an ensemble (concatenated tower vectors, two rankers).
    result = fit_recommender(features, split, TrainConfig(epochs=2, patience=0, ranker_epochs=3,
                                                          seeds=2), temperatures=(0.1,))
    module = build_serving_module(result.exported, result.ranker, features, k=10)
    path = export_recommender(module, root / "recommender")
    return {"features": features, "result": result, "module": module, "path": path}


def _decode(array: np.ndarray) -> list:
    return [[s.decode() for s in row] for row in array]


def _seen(features, user: str) -> set[str]:
    inter = features.interactions
    return set(inter.item[inter.user == user])


def test_serving_module_returns_unseen_top_k_with_explanations(exported):
    import tensorflow as tf

    from recommender.explain import ExplanationTables, explain_reference
    from recommender.ranking import ranker_scorer

    features, result, module = exported["features"], exported["result"], exported["module"]
    users = ["u0", "u5", "u7", "u33"]
    out = module.serve(tf.constant(users))
    assert set(out) == OUTPUTS
    assert all(v.shape == (4, 10) for v in out.values())

    # Independent computation: the numpy signals of the refitted model through the ranker.
    rows = np.array([features.user_index[u] for u in users])
    full_scores = ranker_scorer(result.ranker, result.exported)(rows)
    tables = ExplanationTables.from_features(features, contribution=result.exported.item_knn)
    ids, scores = _decode(out["item_ids"].numpy()), out["scores"].numpy()
    explanations = _decode(out["explanations"].numpy())
    for b, user in enumerate(users):
        seen = _seen(features, user)
        full = full_scores[b]
        unseen = [i for i in range(len(features.items)) if features.items.ids[i] not in seen]
        expected = np.sort(full[unseen])[::-1][:10]
        np.testing.assert_allclose(scores[b], expected, rtol=1e-3, atol=1e-3)
        assert not seen & set(ids[b]) and len(set(ids[b])) == 10
        for j, item in enumerate(ids[b]):
            item_row = features.item_index[item]
            assert scores[b, j] == pytest.approx(full[item_row], abs=1e-3)
            assert explanations[b][j] == explain_reference(tables, int(rows[b]), item_row)
        titles = [features.items.titles[features.item_index[i]] for i in ids[b]]
        assert _decode(out["titles"].numpy())[b] == titles


def test_fallback_module_ranks_by_the_chosen_signal_alone(exported):
    import tensorflow as tf

    from recommender.serving_module import build_serving_module

    features, result = exported["features"], exported["result"]
    module = build_serving_module(result.exported, result.ranker, features, k=5,
                                  choice="item_knn")
    rows = np.array([features.user_index[u] for u in ["u3", "u8"]])
    expected = result.exported.raw(rows)["item_knn"]
    out = module.serve(tf.constant(["u3", "u8"]))
    for b, user in enumerate(["u3", "u8"]):
        seen = [features.item_index[i] for i in _seen(features, user)]
        full = expected[b].copy()
        full[seen] = -np.inf
        np.testing.assert_allclose(out["scores"].numpy()[b], np.sort(full)[::-1][:5], atol=1e-4)
    with pytest.raises(ValueError, match="choice"):
        build_serving_module(result.exported, result.ranker, features, choice="nonsense")


def test_personal_boost_ranks_items_the_user_can_be_told_about_first(exported):
    """With a boost and a popularity penalty, the served order is `rerank` of the ranker's scores
    by the numpy personal evidence and popularity, and every item with evidence gets a personal
    explanation line."""
    import tensorflow as tf

    from recommender.explain import ExplanationTables, personal_evidence
    from recommender.rerank import Rerank, rerank
    from recommender.ranking import ranker_scorer
    from recommender.serving_module import build_serving_module

    features, result = exported["features"], exported["result"]
    tables = ExplanationTables.from_features(features, contribution=result.exported.item_knn)
    evidence = personal_evidence(tables)
    assert 0.05 < evidence.mean() < 0.95  # the planted data has both kinds of pairs
    users = ["u1", "u2", "u4", "u9", "u10"]
    rows = np.array([features.user_index[u] for u in users])
    setting = Rerank(boost=2.0, popularity_penalty=0.5)
    module = build_serving_module(result.exported, result.ranker, features, k=10,
                                  rerank=setting)
    np.testing.assert_array_equal(
        module.explainer.personal_evidence(tf.constant(rows)).numpy(), evidence[rows])
    out = module.serve(tf.constant(users))
    boosted = rerank(ranker_scorer(result.ranker, result.exported)(rows), evidence[rows],
                     result.exported.popularity, setting)
    plain_module = build_serving_module(result.exported, result.ranker, features, k=10)
    unboosted = plain_module.serve(tf.constant(users))
    personal_first = personal_plain = 0
    for b, user in enumerate(users):
        seen = {features.item_index[i] for i in _seen(features, user)}
        ids = [features.item_index[i] for i in _decode(out["item_ids"].numpy())[b]]
        np.testing.assert_allclose(out["scores"].numpy()[b], boosted[b, ids], atol=1e-3)
        unseen = [i for i in range(len(features.items)) if i not in seen]
        np.testing.assert_allclose(out["scores"].numpy()[b],
                                   np.sort(boosted[b, unseen])[::-1][:10], atol=1e-3)
        lines = _decode(out["explanations"].numpy())[b]
        for item, line in zip(ids, lines):
            assert (evidence[rows[b], item] > 0) == line.startswith(("You care", "You wrote"))
        personal_first += sum(evidence[rows[b], ids])
        plain_ids = [features.item_index[i] for i in _decode(unboosted["item_ids"].numpy())[b]]
        personal_plain += sum(evidence[rows[b], plain_ids])
    assert personal_first > personal_plain  # the boost lifts explainable items into the lists


def test_unknown_users_get_popular_unseen_items_and_k_is_chosen_at_query_time(exported):
    import tensorflow as tf

    features, module = exported["features"], exported["module"]
    out = module.recommend(tf.constant(["nobody", "u1"]), tf.constant(3))
    assert all(v.shape == (2, 3) for v in out.values())
    counts = features.interactions.item.value_counts()
    ids = _decode(out["item_ids"].numpy())
    assert [counts[i] for i in ids[0]] == sorted(counts, reverse=True)[:3]
    assert all(e.startswith(("Reviewers praise", f"{counts[i]} review"))
               for e, i in zip(_decode(out["explanations"].numpy())[0], ids[0]))
    # the same user's top 3 are the first 3 of the default top 10
    default = _decode(module.serve(tf.constant(["u1"]))["item_ids"].numpy())[0]
    assert ids[1] == default[:3]
    # k = the catalogue: every unseen item, then padding (u1 has seen some items)
    big = module.recommend(tf.constant(["u1"]), tf.constant(len(features.items)))
    assert big["item_ids"].shape == (1, len(features.items))
    tail = _decode(big["item_ids"].numpy())[0][-len(_seen(features, "u1")):]
    assert set(tail) == {""}
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most the catalogue size"):
        module.recommend(tf.constant(["u1"]), tf.constant(len(features.items) + 1))


def test_users_who_saw_nearly_everything_get_padding(tmp_path):
    import tensorflow as tf

    from recommender.data import load_features
    from recommender.ranking import DCNRanker
    from recommender.serving_module import RecommenderModule
    from recommender.signals import fit_signals

    make_features(tmp_path, num_users=3, num_items=12, per_user=10, num_new=0)
    features = load_features(tmp_path)
    rng = np.random.default_rng(0)
    signals = fit_signals(
        features.interactions, 3, 12, user_vectors=rng.normal(size=(3, 4)),
        item_vectors=rng.normal(size=(12, 4)), user_text=features.users.embedding,
        item_text=features.items.embedding, user_aspects=features.users.aspect_weight,
        item_aspects=features.items.aspect_score, ease_l2=10.0)
    module = RecommenderModule(signals, DCNRanker(), features, np.ones(12) / 12, k=10)
    out = module.recommend(tf.constant(["u0"]), tf.constant(3))
    ids = _decode(out["item_ids"].numpy())[0]
    assert ids[2] == "" and "" not in ids[:2] and not set(ids[:2]) & _seen(features, "u0")
    assert _decode(out["explanations"].numpy())[0][2] == ""
    scores = out["scores"].numpy()[0]
    assert scores[2] == np.finfo(np.float32).min  # below every real score: the list stays sorted
    assert list(scores) == sorted(scores, reverse=True)
    with pytest.raises(tf.errors.InvalidArgumentError, match="k must be at least 1"):
        module.recommend(tf.constant(["u0"]), tf.constant(0))


@pytest.mark.slow
def test_savedmodel_answers_in_a_fresh_process_with_only_tensorflow(exported, tmp_path):
    import tensorflow as tf

    module, path = exported["module"], exported["path"]
    users = ["u2", "nobody", "u9"]
    expected_default = {k: v.numpy() for k, v in module.serve(tf.constant(users)).items()}
    expected_k3 = {k: v.numpy() for k, v in
                   module.recommend(tf.constant(users), tf.constant(3)).items()}
    script = f"""
import json, sys
import tensorflow as tf
loaded = tf.saved_model.load({str(path)!r})
result = {{"signatures": sorted(loaded.signatures)}}
for name, kwargs in [("serving_default", {{}}), ("recommend", {{"k": tf.constant(3)}})]:
    fn = loaded.signatures[name]
    result[name + "_outputs"] = sorted(fn.structured_outputs)
    result[name + "_inputs"] = sorted(fn.structured_input_signature[1])
    out = fn(user_id=tf.constant({users!r}), **kwargs)
    result[name] = {{k: v.numpy().tolist() if v.dtype != tf.string else
                    [[s.decode() for s in row] for row in v.numpy()] for k, v in out.items()}}
result["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in
                           ("tensorflow_recommenders", "tf_keras", "recommender", "pipelines"))
print(json.dumps(result))
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["modules"] == []
    assert result["signatures"] == ["recommend", "serving_default"]
    assert result["serving_default_inputs"] == ["user_id"]
    assert result["recommend_inputs"] == ["k", "user_id"]
    for name, expected, k in [("serving_default", expected_default, 10),
                              ("recommend", expected_k3, 3)]:
        assert result[name + "_outputs"] == sorted(OUTPUTS)
        got = result[name]
        for key in ("item_ids", "explanations", "titles"):
            assert got[key] == _decode(expected[key]), key
        np.testing.assert_allclose(got["scores"], expected["scores"], rtol=1e-5, atol=1e-6)
        assert np.array(got["item_ids"]).shape == (3, k)
    assert all(not i.startswith("You care") for i in result["serving_default"]["explanations"][1])

    # TF Serving runs without XLA: no function in the SavedModel may ask for compilation.
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((path / "saved_model.pb").read_bytes())
    functions = [f for meta in saved.meta_graphs for f in meta.graph_def.library.function]
    assert functions
    for function in functions:
        assert not function.attr["_XlaMustCompile"].b, function.signature.name
        for node in function.node_def:
            assert not node.attr["_XlaMustCompile"].b, node.name


@pytest.mark.slow
def test_cli_trains_evaluates_and_exports(tmp_path, capsys):
    from pipelines import cli
    from pipelines.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    make_features(ws.features, num_users=150, num_items=40, per_user=8)
    argv = ["train-recommender", "--workspace", str(ws.root), "--epochs", "2",
            "--embedding-dim", "16", "--batch-size", "64", "--k", "5", "--seed", "1",
            "--temperatures", "0.1", "--ranker-epochs", "2", "--seeds", "2"]
    assert cli.main(argv) == 0
    metrics = json.loads((ws.stage_dir("train-recommender") / "metrics.json").read_text())
    assert set(metrics["test"]) == {"two-tower + ranker", "two-tower", "ease", "item-knn",
                                    "most-popular", "content", "exported"}
    # The served ranking: the choice re-ranked with the settings chosen on dev, within 2% of the
    # plain ranking's dev NDCG.
    assert metrics["rerank"] == metrics["training"]["rerank"]["chosen"]
    plain = metrics["training"]["rerank"]["grid"]["boost 0.0, penalty 0.0"]["dev_ndcg@5"]
    assert metrics["dev"]["exported"]["all"]["ndcg@5"] >= 0.98 * plain - 1e-9
    assert metrics["exported"] in {"ranker", "two_tower", "ease", "item_knn", "popularity",
                                   "content"}
    assert metrics["fallback"] == (metrics["exported"] != "ranker")
    for parts in metrics["test"].values():
        assert set(parts["all"]) == {"recall@5", "ndcg@5", "mrr", "users"}
        assert parts["all"]["users"] == 150
        assert parts["cold_start"]["users"] == len(range(3, 150, 20))
    assert metrics["training"]["two_tower"]["config"]["embedding_dim"] == 16
    assert metrics["training"]["two_tower"]["config"]["seeds"] == 2
    assert len(metrics["training"]["two_tower"]["dev_recall_per_tower"]) == 2
    assert len(metrics["training"]["ranker"]["dev_ndcg@5_per_epoch_per_seed"]) == 2
    assert (ws.stage_dir("train-recommender") / "training.png").stat().st_size > 1000
    assert (ws.recommender_model / "saved_model.pb").exists()
    assert "two-tower + ranker" in capsys.readouterr().out
    record = json.loads((ws.stage_dir("train-recommender") / "_stage.json").read_text())
    assert record["params"]["k"] == 5 and "two-tower" in record["summary"]["test"]
    # Up to date: --if-stale does nothing.
    assert cli.main(argv + ["--if-stale"]) == 0
    again = json.loads((ws.stage_dir("train-recommender") / "_stage.json").read_text())
    assert again["run_id"] == record["run_id"]


def test_the_recommend_command_lists_real_items_only():
    from pipelines.recommend import format_recommendations

    text = format_recommendations("u1", {
        "item_ids": ["i1", "i2", ""], "scores": [1.5, -0.25, float(np.finfo(np.float32).min)],
        "titles": ["One", "Two", ""], "explanations": ["Because.", "Also.", ""]})
    assert "1. i1 One  (score 1.500)" in text and "2. i2 Two  (score -0.250)" in text
    assert "3." not in text and "e+38" not in text


def test_exposure_cap_holds_every_item_to_the_cap_on_the_served_lists(exported):
    """`max_top1_share`: the offsets are fitted on every known user's served list, so no item
    opens more than that share of them; the served scores are the standardised ranker scores
    minus the offsets. (The planted lists are diverse, so the cap here is 8%, not 20%.)"""
    import tensorflow as tf

    from recommender.rerank import Rerank, rerank
    from recommender.ranking import ranker_scorer
    from recommender.serving_module import build_serving_module

    features, result = exported["features"], exported["result"]
    users = list(features.users.ids)
    plain = build_serving_module(result.exported, result.ranker, features, k=5)
    first = [row[0] for row in _decode(plain.serve(tf.constant(users))["item_ids"].numpy())]
    assert Counter(first).most_common(1)[0][1] / len(users) > 0.08  # needs the cap
    module = build_serving_module(result.exported, result.ranker, features, k=5,
                                  max_top1_share=0.08)
    offsets = module.item_offsets.numpy()
    assert np.count_nonzero(offsets) >= 1 and (offsets >= 0).all()
    out = module.serve(tf.constant(users))
    first = [row[0] for row in _decode(out["item_ids"].numpy())]
    assert Counter(first).most_common(1)[0][1] / len(users) <= 0.08
    rows = np.array([features.user_index[u] for u in users[:4]])
    expected = rerank(ranker_scorer(result.ranker, result.exported)(rows), np.zeros((4, 1)),
                      result.exported.popularity, Rerank(), offsets)
    for b, user in enumerate(users[:4]):
        ids = [features.item_index[i] for i in _decode(out["item_ids"].numpy())[b]]
        np.testing.assert_allclose(out["scores"].numpy()[b], expected[b, ids], atol=1e-3)
