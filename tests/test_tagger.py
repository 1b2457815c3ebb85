"""TokenTagger: config round trip, packing, and learning aspect terms from a written fixture."""

from __future__ import annotations

import copy
import random
import re

import keras
import keras_hub
import numpy as np
import pytest

from albert_tf.classifier import make_text_preprocessor
from albert_tf.configs import get_config
from albert_tf.spans import BEGIN, OUTSIDE, PieceAligner, span_f1
from albert_tf.tagger import (
    TokenTagger,
    compile_tagger,
    encode_for_tagging,
    model_inputs,
    predict_spans,
    tagging_dataset,
)
from albert_tf.tokenizer import load_tokenizer, train_sentencepiece

# Review sentences written for this test: aspect terms in [brackets], and distractor nouns
# (box, courier, sister, price, delivery) that are never aspects.
ASPECTS = ["battery", "screen", "keyboard", "battery life", "trackpad", "speakers", "fan",
           "webcam", "charger", "hinge"]
TEMPLATES = [
    "The [{a}] is great.",
    "I love the [{a}] on this laptop.",
    "[{A}] died after a week, sadly.",
    "The box was damaged but the [{a}] works fine.",
    "My sister says the [{a}] is too dim.",
    "Honestly the [{a}] and the [{b}] are both excellent.",
    "The courier was late; the [{a}] was worth the wait.",
    "Not happy with the [{a}], the price was fair though.",
    "After two months the [{a}] still feels solid.",
    "It arrived on Tuesday and the [{a}] stopped working.",
    "Terrible [{a}], great [{b}].",
    "The [{a}] is noisy and the delivery took ages.",
]
SEQUENCE_LENGTH = 32


def parse(marked: str) -> tuple[str, list[tuple[int, int]]]:
    """`"The [screen] is dim"` -> the text without brackets and its bracketed spans."""
    text, spans, start = "", [], 0
    for char in marked:
        if char == "[":
            start = len(text)
        elif char == "]":
            spans.append((start, len(text)))
        else:
            text += char
    return text, spans


def fixture_sentences() -> list[tuple[str, list[tuple[int, int]]]]:
    """Every template with every aspect (and a random second one), in a fixed random order."""
    rng = random.Random(0)
    rows = {}
    for template in TEMPLATES:
        for a in ASPECTS:
            b = rng.choice([x for x in ASPECTS if x != a])
            text, spans = parse(template.format(a=a, b=b, A=a.capitalize()))
            rows[text] = spans
    rows = sorted(rows.items())
    rng.shuffle(rows)
    return rows


# 120 sentences: the held-out ones pair templates and aspects that training never paired.
SENTENCES = fixture_sentences()
TRAIN, HELD_OUT = SENTENCES[:90], SENTENCES[90:]


@pytest.fixture(scope="module")
def proto(tmp_path_factory) -> bytes:
    path = train_sentencepiece([text for text, _ in TRAIN] * 5,
                               tmp_path_factory.mktemp("tagger") / "spm.model",
                               vocabulary_size=250)
    return path.read_bytes()


def nano_backbone(vocabulary_size: int, num_layers: int = 2):
    return keras_hub.models.AlbertBackbone(**get_config(
        "nano", vocabulary_size=vocabulary_size, num_layers=num_layers
    ).backbone_kwargs())


# keras-hub's `Task` compiles with a default optimizer that is saved unbuilt: harmless.
@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
def test_tagger_config_round_trip_and_outputs(tmp_path):
    model = TokenTagger(nano_backbone(50), num_tags=5, dropout=0.3, name="tagger")
    config = model.get_config()
    # keras-hub's `Task.from_config` deserializes the backbone in place: give it a copy.
    assert TokenTagger.from_config(copy.deepcopy(config)).get_config() == config
    assert keras.saving.get_registered_name(TokenTagger) == "albert_tf>TokenTagger"
    assert not model.backbone.get_layer("pooled_dense").trainable
    x = {"token_ids": np.full((2, 8), 7, "int32"), "segment_ids": np.zeros((2, 8), "int32"),
         "padding_mask": np.ones((2, 8), "int32")}
    logits = model(x)
    assert logits.shape == (2, 8, 5)
    model.save(tmp_path / "tagger.keras")
    restored = keras.models.load_model(tmp_path / "tagger.keras")
    assert isinstance(restored, TokenTagger)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)),
                               keras.ops.convert_to_numpy(logits), atol=1e-6)


def test_encode_packs_cls_pieces_sep_and_labels(proto):
    aligner = PieceAligner(proto)
    texts = ["The battery is great.", "Honestly the keyboard and the screen are both excellent."]
    spans = [[(4, 11)], [(13, 21), (30, 36)]]
    encoded = encode_for_tagging(aligner, texts, spans, sequence_length=SEQUENCE_LENGTH)
    n = len(encoded["pieces"][0])
    ids = encoded["token_ids"][0]
    assert ids[0] == aligner.cls_id and ids[n + 1] == aligner.sep_id
    assert (ids[n + 2:] == aligner.pad_id).all()
    assert list(ids[1:n + 1]) == [p.id for p in encoded["pieces"][0]]
    assert encoded["padding_mask"][0].sum() == n + 2 and not encoded["segment_ids"].any()
    weight = encoded["sample_weight"][0]
    assert weight[0] == 0 and weight[n + 1] == 0 and weight[1:n + 1].all()
    labels = encoded["labels"][0]
    assert sorted(set(labels[1:n + 1])) == [OUTSIDE, BEGIN] and labels[0] == OUTSIDE
    assert encoded["truncated_spans"].tolist() == [0, 0]

    # A short sequence keeps the first pieces: "screen" is cut off and "keyboard" loses its
    # last piece; the kept pieces of a cut span are masked out, teaching neither B/I nor O.
    pieces = aligner.pieces(texts[1], cut_at=[13, 21, 30, 36])
    keyboard = [i for i, p in enumerate(pieces) if p.start < 21 and p.end > 13]
    assert len(keyboard) > 1, "the test vocabulary should split 'keyboard'"
    length = keyboard[-1] + 2
    short = encode_for_tagging(aligner, texts, spans, sequence_length=length)
    assert short["truncated_spans"].tolist() == [0, 2]
    assert short["pieces"][1] == pieces[:length - 2]
    assert short["sample_weight"][1, 1:1 + keyboard[0]].all()
    assert not short["sample_weight"][1, 1 + keyboard[0]:].any()


def test_inference_packing_matches_classifier_preprocessing(proto):
    """Whole-text packing gives keras-hub's `[CLS] text [SEP]` ids, truncation included."""
    aligner = PieceAligner(proto)
    texts = [text for text, _ in HELD_OUT[:4]] + ["ＡＢＣ  ﬁne Café, naïve.", "这家酒店很好"]
    for length in (SEQUENCE_LENGTH, 8):
        encoded = encode_for_tagging(aligner, texts, None, sequence_length=length)
        packed = make_text_preprocessor(load_tokenizer(proto), length)(texts)
        for key in ("token_ids", "padding_mask", "segment_ids"):
            np.testing.assert_array_equal(encoded[key], keras.ops.convert_to_numpy(packed[key]))
        assert not encoded["labels"].any() and not encoded["truncated_spans"].any()


def the_noun_baseline(text: str) -> list[tuple[int, int]]:
    """A lexicon-free guess: the word after every "the"."""
    return [m.span(1) for m in re.finditer(r"\bthe (\w+)", text, re.IGNORECASE)]


@pytest.mark.slow
def test_tagger_learns_aspect_terms_with_xla(proto):
    """A random-init nano backbone learns to tag aspect terms of held-out sentences.

    Measured: held-out exact-span F1 0.86-0.92 over seeds 0-2 (untrained 0.03-0.10; the
    "word after the" baseline 0.70). XLA compilation is most of this test's time.
    """
    keras.utils.set_random_seed(0)
    aligner = PieceAligner(proto)
    train = encode_for_tagging(aligner, [t for t, _ in TRAIN], [s for _, s in TRAIN],
                               SEQUENCE_LENGTH)
    assert not train["truncated_spans"].any()
    texts, gold = [t for t, _ in HELD_OUT], [s for _, s in HELD_OUT]
    model = TokenTagger(nano_backbone(aligner.vocabulary_size, num_layers=1), dropout=0.1)
    compile_tagger(model, keras.optimizers.Adam(3e-3), jit_compile=True)
    # Compiled first, so the trained model's predictions reuse this XLA predict function.
    untrained = span_f1(gold, predict_spans(model, aligner, texts, SEQUENCE_LENGTH))

    # Plain arrays work (one epoch); then a shuffled dataset, since keras-hub's `Task.fit`
    # ignores `shuffle=True` for arrays.
    model.fit(model_inputs(train), train["labels"], sample_weight=train["sample_weight"],
              batch_size=18, epochs=1, verbose=0)
    history = model.fit(tagging_dataset(train, batch_size=18, seed=0), epochs=19, verbose=0)
    assert history.history["loss"][-1] < 0.1

    trained = span_f1(gold, predict_spans(model, aligner, texts, SEQUENCE_LENGTH))
    baseline = span_f1(gold, [the_noun_baseline(t) for t in texts])
    print(f"held-out F1: trained {trained['f1']:.3f}, untrained {untrained['f1']:.3f}, "
          f"'word after the' {baseline['f1']:.3f}")
    assert untrained["f1"] < 0.3
    assert trained["f1"] > 0.75, (trained, untrained, baseline)
    assert trained["f1"] > baseline["f1"] > untrained["f1"]
