"""Named ALBERT configs build backbones whose parameter counts match the closed-form formulas."""

import keras_hub
import pytest

from albert_tf.configs import CONFIGS, AlbertConfig, get_config


def albert_parameters(c: AlbertConfig) -> int:
    """ALBERT parameters written out: factorized embeddings + one shared layer per group."""
    embeddings = (c.vocabulary_size + c.max_sequence_length + 2) * c.embedding_dim
    embeddings += 2 * c.embedding_dim  # embedding LayerNorm
    projection = c.embedding_dim * c.hidden_dim + c.hidden_dim
    attention = 4 * (c.hidden_dim * c.hidden_dim + c.hidden_dim) + 2 * c.hidden_dim
    ffn = 2 * c.hidden_dim * c.intermediate_dim + c.intermediate_dim + c.hidden_dim
    layer = attention + ffn + 2 * c.hidden_dim
    pooler = c.hidden_dim * c.hidden_dim + c.hidden_dim
    return embeddings + projection + c.num_groups * layer + pooler


def test_nano_backbone_matches_formula():
    config = get_config("nano", vocabulary_size=100)
    backbone = keras_hub.models.AlbertBackbone(**config.backbone_kwargs())
    assert backbone.count_params() == albert_parameters(config)


def test_base_formula_lands_near_the_paper():
    base = get_config("base", vocabulary_size=30000)
    assert 11e6 < albert_parameters(base) < 13e6  # the paper's ALBERT-base: 12M


def test_unknown_config_and_bad_groups_are_clear_errors():
    with pytest.raises(ValueError, match="Unknown ALBERT config 'huge'"):
        get_config("huge")
    with pytest.raises(ValueError, match="divisible by `num_groups`"):
        CONFIGS["tiny"].replace(num_groups=3)


def test_bert_equivalent_has_same_depth_and_width():
    config = get_config("tiny")
    bert = config.bert_equivalent_kwargs()
    assert (bert["num_layers"], bert["hidden_dim"]) == (config.num_layers, config.hidden_dim)
    assert "embedding_dim" not in bert
