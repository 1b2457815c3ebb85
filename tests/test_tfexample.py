"""The TensorFlow-free Example encoder writes exactly what TensorFlow parses."""

import math

import numpy as np
import tensorflow as tf

from pipelines.records import document_features, document_to_bytes, tf_feature_spec
from pipelines.tfexample import encode_example


def tf_serialized(features):
    """The reference: the same features built with TensorFlow's own proto classes."""
    example = tf.train.Example()
    for name, (kind, values) in features.items():
        feature = example.features.feature[name]
        if kind == "bytes":
            feature.bytes_list.value.extend(v if isinstance(v, bytes) else v.encode() for v in values)
        elif kind == "float":
            feature.float_list.value.extend(values)
        else:
            feature.int64_list.value.extend(values)
    return example


def test_encoder_matches_tensorflow_on_every_kind_of_value():
    features = {
        "text": ("bytes", ["Grüße, 电池很好 \u2603", b"\x00raw\xff"]),
        "empty_bytes": ("bytes", []),
        "score": ("float", [1.5, -0.25, 3.4028e38, 0.0]),
        "empty_float": ("float", []),
        "ids": ("int64", [0, 1, 127, 128, 300, 2**40, -1, -(2**63), 2**63 - 1]),
        "empty_int": ("int64", []),
    }
    ours = tf.train.Example.FromString(encode_example(features))
    assert ours == tf_serialized(features)


def test_documents_parse_back_with_the_feature_spec():
    doc = {
        "id": "f.json:3", "kind": "labelled", "user": None, "item": "B01", "rating": 4.0,
        "timestamp": None, "title": "Great", "text": "The battery lasts.", "label": "pos",
        "labels": ["pos", "x"], "language": "en", "source": "f.json", "source_position": 3,
        "sentences": ["The battery lasts."], "split": "train",
        "aspects": [{"term": "battery", "start": 4, "end": 11, "polarity": "positive",
                     "category": ""}],
    }
    parsed = tf.io.parse_single_example(document_to_bytes(doc), tf_feature_spec())
    assert parsed["id"].numpy() == b"f.json:3" and parsed["user"].numpy() == b""
    assert parsed["rating"].numpy() == 4.0 and parsed["timestamp"].numpy() == -1
    assert parsed["split"].numpy() == b"train"
    assert parsed["labels"].numpy().tolist() == [b"pos", b"x"]
    assert parsed["aspect_term"].numpy().tolist() == [b"battery"]
    np.testing.assert_array_equal(parsed["aspect_start"].numpy(), [4])
    assert tf.train.Example.FromString(document_to_bytes(doc)) == tf_serialized(
        document_features(doc))
    assert math.isnan(tf.io.parse_single_example(
        document_to_bytes({**doc, "rating": None}), tf_feature_spec())["rating"].numpy())
