"""Task models and heads survive a config round trip with every argument set to a non-default."""

import copy

import keras
import keras_hub
import numpy as np

from albert_tf.classifier import OpinionClassifier
from albert_tf.configs import get_config
from albert_tf.heads import ClassificationHead, SentenceOrderHead
from albert_tf.pretraining import AlbertPretrainer


def backbone():
    return keras_hub.models.AlbertBackbone(**get_config("nano", vocabulary_size=50).backbone_kwargs())


def inputs(batch=2, length=8):
    return {"token_ids": np.full((batch, length), 7, "int32"),
            "segment_ids": np.zeros((batch, length), "int32"),
            "padding_mask": np.ones((batch, length), "int32")}


def test_classifier_config_round_trip_and_outputs():
    model = OpinionClassifier(backbone(), num_sentiments=5, num_topics=4, dropout=0.3,
                              name="opinions")
    config = model.get_config()
    # keras-hub's `Task.from_config` deserializes the backbone in place: give it a copy.
    restored = OpinionClassifier.from_config(copy.deepcopy(config))
    assert restored.get_config() == config
    out = model(inputs())
    assert out["sentiment"].shape == (2, 5) and out["topic"].shape == (2, 4)


def test_pretrainer_config_round_trip_and_outputs():
    model = AlbertPretrainer(backbone(), dropout=0.2, name="pretrainer")
    config = model.get_config()
    assert AlbertPretrainer.from_config(copy.deepcopy(config)).get_config() == config
    out = model({**inputs(), "mask_positions": np.array([[1, 2, 3]] * 2, "int32")})
    assert out["mlm"].shape == (2, 3, 50) and out["sop"].shape == (2, 2)


def test_heads_config_round_trip():
    for head in (ClassificationHead(num_classes=7, dropout=0.4), SentenceOrderHead(dropout=0.3)):
        restored = type(head).from_config(head.get_config())
        assert restored.get_config() == head.get_config()
    assert SentenceOrderHead().num_classes == 2
    assert keras.saving.get_registered_name(SentenceOrderHead) == "albert_tf>SentenceOrderHead"
