"""Character spans <-> BIO tags over SentencePiece pieces: offsets, cuts, round trips, decoding."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import sentencepiece as spm

from albert_tf.spans import (
    BEGIN,
    INSIDE,
    OUTSIDE,
    TAGS,
    Piece,
    PieceAligner,
    resolve_overlaps,
    span_f1,
    spans_to_tags,
    strip_span,
    tags_to_spans,
)
from albert_tf.tokenizer import load_tokenizer, train_sentencepiece
from tests.conftest import make_review_corpus

ENGLISH = ["The battery-life is great, the screen is dim.", "Screen, keyboard and battery: fine.",
           "I love the keyboard.", "The battery died after a week."]
# Repeated so that "这家酒店" becomes one piece and "酒店" a span inside it.
CHINESE = ["这家酒店的服务很好。", "这家酒店很干净，服务一般。", "这家酒店的早餐不错。",
           "房间很大，服务很好。", "我喜欢这个屏幕和键盘。", "MacBook的屏幕很亮，keyboard也好用。"]
ODD = ["ＡＢＣ  ﬁne Café😀ÉTÉ", "½ ㎏ x\u00a0y\u200bz", "e\u0301te\u0301",
       "  Leading and trailing  ", "ＢATTERY\tlife\nis\u3000OK", ""]


@pytest.fixture(scope="module")
def proto(tmp_path_factory) -> bytes:
    sentences = [s for doc in make_review_corpus(100) for s in doc] + ENGLISH * 10 + CHINESE * 10
    path = train_sentencepiece(sentences, tmp_path_factory.mktemp("spans") / "spm.model",
                               vocabulary_size=200)
    return path.read_bytes()


@pytest.fixture(scope="module")
def aligner(proto) -> PieceAligner:
    return PieceAligner(proto)


def spans_of(text: str, *terms: str) -> list[tuple[int, int]]:
    """The first occurrence of each term, as a character span."""
    spans = []
    for term in terms:
        start = text.index(term)
        spans.append((start, start + len(term)))
    return spans


def round_trip(aligner: PieceAligner, text: str, spans: list[tuple[int, int]]):
    pieces = aligner.pieces(text, cut_at=[c for span in spans for c in span])
    return tags_to_spans(pieces, spans_to_tags(pieces, spans), text)


@pytest.mark.parametrize("text", ENGLISH + CHINESE + ODD)
def test_pieces_are_sentencepiece_ids_with_character_offsets(aligner, proto, text):
    sp = spm.SentencePieceProcessor(model_proto=proto)
    pieces = aligner.pieces(text)
    assert [p.id for p in pieces] == sp.encode(text)
    # In order, inside the text, and every non-blank character belongs to some piece.
    assert all(0 <= p.start <= p.end <= len(text) for p in pieces)
    assert all(a.start <= b.start and a.end <= b.end for a, b in zip(pieces, pieces[1:]))
    covered = {i for p in pieces for i in range(p.start, p.end)}
    assert {i for i, c in enumerate(text) if strip_span(c, (0, 1))} <= covered
    # A piece's characters normalize to the piece, except unknown pieces and pieces sharing
    # an expanded character ("ﬁ" -> "f", "i").
    for k, p in enumerate(pieces):
        shared = any(q.start < p.end and q.end > p.start for q in pieces[:k] + pieces[k + 1:])
        if p.id != sp.unk_id() and p.end > p.start and not shared:
            piece = sp.id_to_piece(p.id)
            assert sp.normalize(text[p.start:p.end]).strip("▁") == piece.strip("▁"), (p, piece)


def test_offsets_are_characters_not_bytes(aligner):
    text = "这家酒店的服务 ÉTÉ"
    pieces = aligner.pieces(text)
    assert [text[p.start:p.end] for p in pieces if text[p.start:p.end] == "的"] == ["的"]
    assert pieces[-1].end == len(text) < len(text.encode())
    # Pieces made from one expanded character ("ﬁ" -> "f", "i") all cover it.
    pieces = [p for p in aligner.pieces("the ﬁx") if p.end > 4]
    assert [(p.start, p.end) for p in pieces] == [(4, 5), (4, 5), (5, 6)]
    assert round_trip(aligner, "the ﬁx", [(4, 6)]) == [(4, 6)]


def test_aligner_pickles_as_its_proto(aligner):
    import pickle

    restored = pickle.loads(pickle.dumps(aligner))
    assert restored.proto == aligner.proto
    assert restored.pieces(ENGLISH[0], cut_at=[6]) == aligner.pieces(ENGLISH[0], cut_at=[6])


def test_whole_text_ids_match_keras_hub_tokenizer(aligner, proto):
    texts = ENGLISH + CHINESE + [t for t in ODD if t]
    tokenizer = load_tokenizer(proto)
    expected = [list(keras.ops.convert_to_numpy(ids)) for ids in tokenizer(texts)]
    assert [[p.id for p in aligner.pieces(t)] for t in texts] == expected


def ids(pieces: list[Piece]) -> list[int]:
    return [p.id for p in pieces]


def test_cuts_at_existing_piece_boundaries_change_no_id(aligner):
    """(Offsets may: a segment's first piece does not cover the whitespace before the cut.)"""
    for text in ENGLISH + CHINESE:
        pieces = aligner.pieces(text)
        cuts = [p.end for p in pieces if p.end > p.start]
        assert ids(aligner.pieces(text, cut_at=cuts)) == ids(pieces), text


def test_segment_continuing_a_word_gets_no_dummy_prefix(aligner, proto):
    sp = spm.SentencePieceProcessor(model_proto=proto)
    text = "The battery-life is great"
    cut = text.index("-life")
    after = [p for p in aligner.pieces(text, cut_at=[cut]) if p.start >= cut]
    assert [sp.id_to_piece(p.id) for p in after][:1] == ["-"]
    assert ids(after) == ids([p for p in aligner.pieces(text) if p.start >= cut])
    # Inside a Chinese word too: no "▁" piece appears at the cut.
    text = "这家酒店的服务很好"
    pieces = aligner.pieces(text, cut_at=[2])
    assert not sp.id_to_piece(next(p for p in pieces if p.start >= 2).id).startswith("▁")
    # A segment after whitespace keeps the "▁" the whole text has there.
    text = "great  battery"
    assert ids(aligner.pieces(text, cut_at=[7])) == ids(aligner.pieces(text))


@pytest.mark.parametrize("text, terms", [
    ("The battery-life is great, the screen is dim.", ["battery", "screen"]),
    ("The battery-life is great", ["life"]),
    ("Screen, keyboard and battery: fine.", ["Screen", "keyboard", "battery"]),
    ("I love the keyboard", ["keyboard"]),
    ("Battery life and screen resolution are superb", ["Battery life", "screen resolution"]),
    ("THE SCREEN IS DIM", ["SCREEN"]),
    ("Great  battery, awful  screen.", ["battery", "screen"]),
    ("battery", ["battery"]),
    ("ＡＢＣ ﬁne Café😀ÉTÉ", ["ＡＢＣ", "ﬁne", "Café", "ÉTÉ"]),
])
def test_english_round_trip_is_exact(aligner, text, terms):
    spans = spans_of(text, *terms)
    assert round_trip(aligner, text, spans) == sorted(spans)


@pytest.mark.parametrize("text, terms", [
    ("这家酒店的服务很好", ["酒店", "服务"]),
    ("这家酒店很干净，服务一般。", ["这家酒店", "干净"]),
    ("我喜欢MacBook的屏幕和keyboard", ["MacBook", "屏幕", "keyboard"]),
    ("MacBook的屏幕很亮，keyboard也好用。", ["Book", "屏", "key"]),
])
def test_chinese_and_mixed_round_trip_is_exact(aligner, text, terms):
    spans = spans_of(text, *terms)
    assert round_trip(aligner, text, spans) == sorted(spans)


def test_span_inside_a_piece_is_cut_out_of_it(aligner):
    text = "这家酒店的服务很好"
    hotel = spans_of(text, "酒店")[0]
    whole = aligner.pieces(text)
    assert any(p.start < hotel[0] < p.end for p in whole), "the vocabulary should join 这家酒店"
    pieces = aligner.pieces(text, cut_at=hotel)
    tags = spans_to_tags(pieces, [hotel])
    assert "".join(text[p.start:p.end] for p, t in zip(pieces, tags) if t != OUTSIDE) == "酒店"
    # Decoding the whole text's pieces can only give the joined piece back.
    assert tags_to_spans(whole, spans_to_tags(whole, [hotel]), text) == [(0, 4)]


def test_spans_to_tags_marks_begin_and_inside(aligner):
    text = "Battery life and screen resolution are superb"
    spans = spans_of(text, "Battery life", "screen")
    pieces = aligner.pieces(text, cut_at=[c for s in spans for c in s])
    tags = spans_to_tags(pieces, spans)
    groups: list[str] = []
    for piece, tag in zip(pieces, tags):
        if tag == BEGIN:
            groups.append("")
        if tag != OUTSIDE:
            groups[-1] += text[piece.start:piece.end]
    assert [g.strip() for g in groups] == ["Battery life", "screen"]
    assert tags.count(INSIDE) == len([t for t in tags if t != OUTSIDE]) - 2 > 0
    assert {TAGS[t] for t in tags} == {"O", "B", "I"}


def test_overlapping_gold_spans_keep_the_first_then_the_longer():
    assert resolve_overlaps([(4, 10), (0, 6), (0, 3), (12, 15), (12, 15)]) == [(0, 6), (12, 15)]
    assert resolve_overlaps([(5, 9), (5, 7), (7, 8), (0, 0)]) == [(5, 9)]
    pieces = [Piece(10, 0, 3), Piece(11, 3, 6), Piece(12, 6, 9)]
    assert spans_to_tags(pieces, [(3, 9), (0, 6)]) == [BEGIN, INSIDE, OUTSIDE]


def test_decoding_edge_cases():
    text = "aa bb cc dd"
    pieces = [Piece(5, 0, 2), Piece(6, 2, 5), Piece(7, 5, 8), Piece(8, 8, 11)]
    o, b, i = OUTSIDE, BEGIN, INSIDE
    assert tags_to_spans(pieces, [b, i, o, o], text) == [(0, 5)]
    assert tags_to_spans(pieces, [o, i, i, o], text) == [(3, 8)]  # I after O starts a span
    assert tags_to_spans(pieces, [b, b, i, o], text) == [(0, 2), (3, 8)]  # B after B
    assert tags_to_spans(pieces, [o, o, o, b], text) == [(9, 11)]  # trailing B
    assert tags_to_spans(pieces, [i, o, b, i], text) == [(0, 2), (6, 11)]
    assert tags_to_spans(pieces, [b, i], text) == [(0, 5)]  # fewer tags: truncated text
    assert tags_to_spans(pieces, [o] * 4, text) == []
    # A whitespace-only piece decodes to nothing; a zero-width one adds nothing.
    assert tags_to_spans([Piece(5, 0, 1), Piece(6, 1, 1)], [b, b], " x") == []
    # Typed tags (B-k = 1 + 2k, I-k = 2 + 2k): an I of another type starts a new span.
    assert tags_to_spans(pieces, [1, 2, 4, 0], text) == [(0, 5), (6, 8)]


def test_strip_span():
    assert strip_span("  battery  ", (0, 11)) == (2, 9)
    assert strip_span("a\u200bb\u00a0", (1, 4)) == (2, 3)
    assert strip_span("   ", (0, 3)) is None
    assert strip_span("abc", (-2, 10)) == (0, 3)


def test_span_f1():
    gold = [[(0, 3), (4, 7)], [(1, 2)], []]
    predicted = [[(0, 3)], [(1, 3)], [(5, 6)]]
    scores = span_f1(gold, predicted)
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx(1 / 3)
    assert span_f1([[]], [[]])["f1"] == 0.0
    with pytest.raises(ValueError, match="Received: 1 and 2"):
        span_f1([[]], [[], []])


def test_wordpiece_aligner_matches_bert_tokenization_with_offsets():
    """`WordPieceAligner` gives keras-hub's `BertTokenizer` ids (uncased, accents stripped) and
    each piece's characters in the original text; a cut splits a word into "##" pieces."""
    import keras_hub

    from albert_tf.spans import WordPieceAligner, aligner_for

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "battery", "life", "is",
                  "great", ",", "!", "cafe", "bat", "##tery", "##s", "un", "##know", "##n", "-",
                  "s"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True,
                                               strip_accents=True)
    aligner = aligner_for(tokenizer)
    assert isinstance(aligner, WordPieceAligner)
    texts = ["The Battery-life is GREAT, batterys!", "  Café unknown!!", "the xyz battery"]
    for text in texts:
        pieces = aligner.pieces(text)
        assert [p.id for p in pieces] == np.asarray(tokenizer(text)).tolist(), text
    text = "The Battery-life is GREAT, batterys!"
    assert [text[p.start:p.end] for p in aligner.pieces(text)] == [
        "The", "Battery", "-", "life", "is", "GREAT", ",", "battery", "s", "!"]
    assert [(p.start, p.end, vocabulary[p.id]) for p in aligner.pieces("Café")] == [
        (0, 4, "cafe")]
    # A gold span ending inside a word: a cut there, the rest continuing as "##" pieces.
    assert [vocabulary[p.id] for p in aligner.pieces("batterys")] == ["battery", "##s"]
    cut = aligner.pieces("batterys", cut_at=[3])
    assert [(p.start, p.end, vocabulary[p.id]) for p in cut] == [
        (0, 3, "bat"), (3, 7, "##tery"), (7, 8, "##s")]
    assert [vocabulary[p.id] for p in aligner.pieces("xyz")] == ["[UNK]"]
