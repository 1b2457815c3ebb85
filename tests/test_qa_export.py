"""The `review_qa` SavedModel: in-graph tokenization and windows give exactly the answers of the
numpy path (`albert_tf.qa`), and the saved model answers in a fresh TensorFlow-only process."""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from albert_tf.qa import SpanQuestionAnswerer, predict_answers
from albert_tf.qa_export import ReviewQA, _SentencePieceOffsets, _WordPieceOffsets, export_review_qa
from albert_tf.spans import PieceAligner, WordPieceAligner
from tests.test_qa import aligner, dataset  # noqa: F401  (the module's SentencePiece fixture)
from tests.test_tagger import nano_backbone

TEXTS = ["The battery lasts all day.", "  Two  spaces, then\ttabs!", "Café crème: TOO sweet?",
         "ﬁne print", "", "这家酒店很好", "battery-life is 10/10 (really)"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "battery", "life", "is",
              "great", ",", "!", "cafe", "bat", "##tery", "##s", "un", "##know", "##n", "-", "s",
              "how", "?", "sound", "deep", "and", "warm", ".", "too", "sweet", "酒", "店"]


def ragged_rows(ragged) -> list[list[int]]:
    return [list(map(int, row)) for row in ragged.to_list()]


def check_offsets(aligner_, offsets, texts):
    ids, starts, ends = offsets(tf.constant(texts))
    for text, row_ids, row_starts, row_ends in zip(texts, ragged_rows(ids), ragged_rows(starts),
                                                   ragged_rows(ends)):
        pieces = aligner_.pieces(text)
        assert row_ids == [p.id for p in pieces], text
        data = text.encode()
        # Byte offsets: each piece's bytes decode to the aligner's characters of that piece
        # (a zero-width piece may differ: the aligner widens it to its character).
        for p, s, e in zip(pieces, row_starts, row_ends):
            if e > s and p.end - p.start == len(data[s:e].decode()):
                assert data[s:e].decode() == text[p.start:p.end], (text, p)


def test_sentencepiece_ids_and_offsets_match_the_aligner(aligner):  # noqa: F811
    check_offsets(aligner, _SentencePieceOffsets(aligner.proto), TEXTS)


@pytest.mark.parametrize("lowercase,strip_accents", [(True, True), (True, False), (False, False)])
def test_wordpiece_ids_and_offsets_match_the_aligner(lowercase, strip_accents):
    wordpiece = WordPieceAligner(VOCABULARY, lowercase=lowercase, strip_accents=strip_accents)
    check_offsets(wordpiece, _WordPieceOffsets(VOCABULARY, lowercase, strip_accents),
                  TEXTS + ["The Battery-life is GREAT, batterys!", "x" * 120 + " battery"])


def served(module: ReviewQA, questions, contexts) -> dict:
    out = module.serve(tf.constant(questions), tf.constant(contexts))
    return {k: v.numpy() for k, v in out.items()}


@pytest.fixture(scope="module")
def qa_model(aligner):  # noqa: F811
    keras.utils.set_random_seed(3)
    return SpanQuestionAnswerer(nano_backbone(aligner.vocabulary_size, num_layers=2))


def test_served_answers_equal_the_numpy_path_over_windows(aligner, qa_model):  # noqa: F811
    """Random weights, contexts spanning several 32-piece windows: same spans and scores."""
    rows = dataset(12, seed=7)
    questions = [q for q, _, _ in rows]
    contexts = [c + " " + c for _, c, _ in rows]  # long enough for 3+ windows
    expected = predict_answers(qa_model, aligner, questions, contexts, sequence_length=32,
                               stride=8)
    margins = sorted(a.margin for a in expected)
    threshold = float(margins[len(margins) // 2])  # half answered, half not
    module = ReviewQA(qa_model, aligner, sequence_length=32, threshold=threshold, stride=8,
                      max_question_pieces=16)
    got = served(module, questions, contexts)
    np.testing.assert_allclose(got["score"], [a.margin for a in expected], rtol=1e-4, atol=1e-4)
    for i, answer in enumerate(expected):
        if answer.margin > threshold:
            assert got["answered"][i]
            assert got["answer"][i].decode() == answer.text
            assert (got["answer_start"][i], got["answer_end"][i]) == (answer.start, answer.end)
            assert contexts[i][answer.start:answer.end] == answer.text
        else:
            assert not got["answered"][i] and got["answer"][i] == b""
            assert got["answer_start"][i] == -1 == got["answer_end"][i]
    assert 0 < got["answered"].sum() < len(rows)


def test_wordpiece_model_answers_with_character_offsets():
    """A BERT-vocabulary model (the teacher's family): answers are the context's own characters,
    accents and case kept, at character (not byte) offsets."""
    aligner_ = WordPieceAligner(VOCABULARY, lowercase=True, strip_accents=True)
    keras.utils.set_random_seed(1)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(VOCABULARY), num_layers=1,
                                             num_heads=2, hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=64)
    from albert_tf.qa import BertSpanQuestionAnswerer

    model = BertSpanQuestionAnswerer(backbone)
    questions = ["How is the sound?", "How is the battery?"]
    contexts = ["Ça — the sound is deep and warm. Café TOO sweet!", "酒店 battery great."]
    expected = predict_answers(model, aligner_, questions, contexts, sequence_length=64)
    got = served(ReviewQA(model, aligner_, sequence_length=64, threshold=-1e6,
                          max_question_pieces=16), questions, contexts)
    for i, answer in enumerate(expected):
        assert got["answer"][i].decode() == answer.text == contexts[i][answer.start:answer.end]
        assert (got["answer_start"][i], got["answer_end"][i]) == (answer.start, answer.end)


def test_empty_context_and_mismatched_batches(aligner, qa_model):  # noqa: F811
    module = ReviewQA(qa_model, aligner, sequence_length=32, threshold=-1e6,
                      max_question_pieces=16)
    got = served(module, ["How is the battery?", "How is it?"], ["", "The battery is great."])
    assert not got["answered"][0] and got["answer"][0] == b"" and got["score"][0] <= -1e8
    assert got["answered"][1]
    with pytest.raises(tf.errors.InvalidArgumentError, match="one entry each"):
        served(module, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="no room"):
        ReviewQA(qa_model, aligner, sequence_length=16, threshold=0.0, max_question_pieces=16)


def test_saved_model_answers_in_a_fresh_tensorflow_process(aligner, qa_model, tmp_path):  # noqa: F811
    from serving.check import check_saved_model

    questions, contexts = ["How is the screen?"], ["The screen is far too dim. The battery lasts."]
    module = ReviewQA(qa_model, aligner, sequence_length=32, threshold=-1e6, stride=8,
                      max_question_pieces=16)
    expected = served(module, questions, contexts)
    path = export_review_qa(module, tmp_path / "review_qa")
    report = check_saved_model(path, {"serving_default": {"question": questions,
                                                           "context": contexts}})
    assert report["signatures"]
    restored = tf.saved_model.load(str(path)).signatures["serving_default"]
    got = restored(question=tf.constant(questions), context=tf.constant(contexts))
    assert got["answer"].numpy()[0] == expected["answer"][0]
    np.testing.assert_allclose(got["score"].numpy(), expected["score"], rtol=1e-5, atol=1e-5)
