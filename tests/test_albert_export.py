"""The `text_features` SavedModel: aspects and their clause polarity, serving shapes, fresh load."""

import json
import os
import re
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from albert_tf.classifier import SENTIMENT_LABELS, OpinionClassifier, make_text_preprocessor
from albert_tf.configs import get_config
from albert_tf.export import CLAUSE_BOUNDARY, TextFeatures, aspect_pattern, export_text_features
from albert_tf.tokenizer import load_tokenizer

TERMS = {"battery": "battery", "battery life": "battery", "sound": "sound",
         "sound quality": "sound", "price": "price", "质量": "质量", "物流": "物流"}
TEXTS = [
    "The battery life is great but the sound is awful.",
    "Nothing to see here.",
    "SOUND QUALITY rocks; the battery is ok, and the price, well, high.",
    "",
    "电池很好",
    "Batteryless soundproofing is not an aspect.",
    "质量很好，但是物流太慢了。",
]


@pytest.fixture(scope="module")
def module(spm_model):
    keras.utils.set_random_seed(1)
    tokenizer = load_tokenizer(spm_model)
    config = get_config("nano", vocabulary_size=tokenizer.vocabulary_size())
    classifier = OpinionClassifier(keras_hub.models.AlbertBackbone(**config.backbone_kwargs()),
                                   num_sentiments=3, num_topics=2)
    return TextFeatures(classifier, make_text_preprocessor(tokenizer, 64), SENTIMENT_LABELS,
                        ["sports", "tech"], TERMS, max_aspects=4)


def reference_aspects(text: str) -> list[tuple[str, str]]:
    """(aspect, clause) pairs in order, found with Python's `re` independently of the graph."""
    pattern = re.compile(aspect_pattern(list(TERMS)))
    found = []
    for clause in re.split(CLAUSE_BOUNDARY, text.lower()):
        found += [(TERMS[m.group(1)], clause) for m in pattern.finditer(clause)]
    return found


def test_aspects_match_reference_and_take_their_own_clause_polarity(module):
    out = module.serve(tf.constant(TEXTS))
    for i, text in enumerate(TEXTS):
        expected = reference_aspects(text)[:4]
        count = int(out["aspect_count"][i])
        names = [a.decode() for a in out["aspect_terms"][i].numpy()]
        assert names[:count] == [a for a, _ in expected], text
        assert names[count:] == [""] * (4 - count)
        for j, (_, clause) in enumerate(expected):
            alone = module.serve(tf.constant([clause]))["sentiment"][0].numpy()
            np.testing.assert_allclose(out["aspect_polarity"][i, j], alone[2] - alone[0], atol=1e-5)
    assert reference_aspects(TEXTS[0]) == [("battery", "the battery life is great "),
                                           ("sound", " the sound is awful")]
    assert reference_aspects(TEXTS[-2]) == []  # word boundaries: no match inside other words
    # Chinese: no spaces, so no word boundaries; Chinese punctuation and 但是 end clauses.
    assert reference_aspects(TEXTS[-1]) == [("质量", "质量很好"), ("物流", "物流太慢了")]


def test_clause_boundaries_are_the_miners():
    from pipelines import aspect_mining

    assert aspect_mining._CLAUSE.pattern == CLAUSE_BOUNDARY


def test_outputs_follow_the_serving_contract(module):
    out = module.serve(tf.constant(TEXTS))
    batch = len(TEXTS)
    assert out["embedding"].shape == (batch, 32)
    assert out["sentiment"].shape == (batch, 3) and out["topic"].shape == (batch, 2)
    np.testing.assert_allclose(out["sentiment"].numpy().sum(-1), 1.0, atol=1e-5)
    assert set(out["sentiment_label"].numpy()) <= {b"negative", b"neutral", b"positive"}
    assert out["aspect_terms"].shape == out["aspect_polarity"].shape == (batch, 4)
    assert np.all(np.abs(out["aspect_polarity"].numpy()) <= 1.0)
    # A text's features do not depend on the other texts in its batch.
    single = module.serve(tf.constant([TEXTS[2]]))
    np.testing.assert_allclose(single["embedding"][0], out["embedding"][2], atol=1e-5)


def test_export_answers_in_a_fresh_process_with_only_tensorflow(module, tmp_path):
    export_text_features(module, tmp_path / "text_features")
    expected = module.serve(tf.constant(TEXTS))
    script = f"""
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401
fn = tf.saved_model.load({str(tmp_path / 'text_features')!r}).signatures["serving_default"]
out = fn(text=tf.constant({TEXTS!r}))
print(json.dumps({{k: v.numpy().tolist() if v.dtype != tf.string else
                  [[s.decode() for s in row] if v.shape.rank == 2 else row.decode()
                   for row in v.numpy()] for k, v in out.items()}}))
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("keras_hub", "keras_nlp", "albert_tf", "pipelines"))))
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    loaded, foreign = json.loads(lines[-2]), json.loads(lines[-1])
    assert foreign == []
    np.testing.assert_allclose(loaded["embedding"], expected["embedding"].numpy(), atol=1e-5)
    np.testing.assert_allclose(loaded["aspect_polarity"], expected["aspect_polarity"].numpy(),
                               atol=1e-5)
    assert loaded["aspect_terms"][0][:2] == ["battery", "sound"]

    # TF Serving runs without XLA: no function in the SavedModel may ask for compilation.
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((tmp_path / "text_features" / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        for function in meta_graph.graph_def.library.function:
            assert not function.attr["_XlaMustCompile"].b, function.signature.name
            for node in function.node_def:
                assert not node.attr["_XlaMustCompile"].b, node.name


@pytest.mark.slow
def test_the_minilm_teacher_exports_raw_text_features_tokenized_in_the_graph(tmp_path):
    """The packaged all-MiniLM-L6-v2 (a Hugging Face BERT folder) as the encoder: WordPiece runs
    inside the exported graph, which loads in a fresh TensorFlow-only process, XLA-free."""
    from albert_tf.classifier import load_encoder
    from albert_tf.distillation import minilm_folder
    from serving.check import check_saved_model

    tokenizer, backbone = load_encoder(str(minilm_folder()))
    assert isinstance(tokenizer, keras_hub.models.BertTokenizer)
    assert isinstance(backbone, keras_hub.models.BertBackbone) and backbone.hidden_dim == 384
    preprocessor = make_text_preprocessor(tokenizer, 32)
    assert isinstance(preprocessor, keras_hub.models.BertTextClassifierPreprocessor)
    keras.utils.set_random_seed(2)
    module = TextFeatures(OpinionClassifier(backbone, num_sentiments=3, num_topics=0),
                          preprocessor, SENTIMENT_LABELS, [], TERMS, max_aspects=4)
    expected = module.serve(tf.constant(TEXTS))
    assert expected["embedding"].shape == (len(TEXTS), 384)
    assert [a.decode() for a in expected["aspect_terms"].numpy()[0][:2]] == ["battery", "sound"]
    path = export_text_features(module, tmp_path / "text_features")
    report = check_saved_model(path, {"serving_default": {"text": TEXTS}})
    assert report["foreign_modules"] == [] and report["xla"] == []
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"](text=tf.constant(TEXTS))
    np.testing.assert_allclose(loaded["embedding"], expected["embedding"], atol=1e-5)
