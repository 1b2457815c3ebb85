"""The hand-written ALBERT and BERT parameter formulas equal the built keras-hub backbones."""

import pytest

from albert_tf.configs import albert_parameter_count, bert_parameter_count, get_config

EMBEDDING_LAYERS = ("token_embedding", "position_embedding", "segment_embedding",
                    "embeddings_layer_norm", "embedding_projection")


def embedding_parameters(backbone) -> int:
    """Everything before the first encoder layer (BERT has no `embedding_projection`)."""
    names = {layer.name for layer in backbone.layers}
    return sum(backbone.get_layer(n).count_params() for n in EMBEDDING_LAYERS if n in names)


VARIANTS = [
    get_config("nano", vocabulary_size=300),
    get_config("tiny", vocabulary_size=1000, max_sequence_length=128),
    get_config("nano", vocabulary_size=300, num_layers=4, num_groups=2, num_inner_repetitions=2),
]


@pytest.mark.parametrize("config", VARIANTS, ids=["nano", "tiny", "groups2_inner2"])
def test_formulas_count_every_weight_of_the_built_backbones(config):
    albert, bert = config.build(), config.bert_equivalent()
    expected_albert, expected_bert = albert_parameter_count(config), bert_parameter_count(config)
    assert albert.count_params() == expected_albert["total"]
    assert embedding_parameters(albert) == expected_albert["embedding"]
    assert albert.token_embedding.count_params() == expected_albert["token_embedding"]
    assert bert.count_params() == expected_bert["total"]
    assert embedding_parameters(bert) == expected_bert["embedding"]
    assert bert.token_embedding.count_params() == expected_bert["token_embedding"]
    # Same depth and width; only ALBERT factorizes and shares.
    assert (bert.num_layers, bert.hidden_dim, bert.num_heads, bert.intermediate_dim) == (
        config.num_layers, config.hidden_dim, config.num_heads, config.intermediate_dim)
    assert bert.token_embedding.output_dim == config.hidden_dim
    assert expected_albert["encoder_layers"] == config.num_groups * config.num_inner_repetitions


def test_base_lands_near_the_paper_albert_12m_bert_108m():
    base = get_config("base", vocabulary_size=30000)
    albert, bert = albert_parameter_count(base), bert_parameter_count(base)
    assert 11e6 < albert["total"] < 13e6  # the paper's ALBERT-base: 12M
    assert 107e6 < bert["total"] < 111e6  # BERT-base: 108M (110M with its 30522-token vocabulary)
    assert bert["total"] / albert["total"] >= 8
    # ALBERT-base is cheap to build: the formula holds at full size too.
    assert base.build().count_params() == albert["total"]


def test_sharing_saves_parameters_not_depth():
    config = get_config("small", vocabulary_size=8000)
    shared = albert_parameter_count(config)
    unshared = albert_parameter_count(config.replace(num_groups=config.num_layers))
    assert unshared["encoder"] == config.num_layers * shared["encoder"]
    assert unshared["embedding"] == shared["embedding"]
