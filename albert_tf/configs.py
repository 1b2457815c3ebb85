"""Named ALBERT sizes and their BERT equivalents (same depth and width, no sharing, E = H).

Also the parameter counts of both, written out by hand from keras-hub's `AlbertBackbone` and
`BertBackbone` (tests check them against built models), so that sizes too big to build here
(`base`, `large`) can still be compared. keras-hub is imported only when a model is built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class AlbertConfig:
    """Architecture of an ALBERT encoder; arguments named as in keras-hub's `AlbertBackbone`.

    `num_groups` = 1 shares one transformer layer across all `num_layers` (the paper's default).
    """

    num_layers: int
    num_heads: int
    hidden_dim: int
    intermediate_dim: int
    embedding_dim: int
    num_groups: int = 1
    num_inner_repetitions: int = 1
    dropout: float = 0.0
    max_sequence_length: int = 512
    vocabulary_size: int = 30000

    def __post_init__(self) -> None:
        if self.num_layers % self.num_groups:
            raise ValueError(
                "`num_layers` must be divisible by `num_groups`. Received: "
                f"num_layers={self.num_layers}, num_groups={self.num_groups}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                "`hidden_dim` must be divisible by `num_heads`. Received: "
                f"hidden_dim={self.hidden_dim}, num_heads={self.num_heads}"
            )

    def replace(self, **changes) -> "AlbertConfig":
        return dataclasses.replace(self, **changes)

    def backbone_kwargs(self) -> dict:
        """Keyword arguments for `keras_hub.models.AlbertBackbone`."""
        return dataclasses.asdict(self)

    def build(self, dtype=None):
        """The `keras_hub.models.AlbertBackbone` of this config (`dtype`: a Keras dtype policy)."""
        import keras_hub

        return keras_hub.models.AlbertBackbone(**self.backbone_kwargs(), dtype=dtype)

    def bert_equivalent(self, dtype=None):
        """A `keras_hub.models.BertBackbone` of the same depth, width, heads, intermediate size,
        vocabulary and positions: every layer its own weights, token embeddings of width H."""
        import keras_hub

        return keras_hub.models.BertBackbone(**self.bert_equivalent_kwargs(), dtype=dtype)

    def build_for(self, architecture: str, dtype=None):
        """`build()` for "albert", `bert_equivalent()` for "bert" (`pretrain --architecture`)."""
        if architecture not in ("albert", "bert"):
            raise ValueError(f"architecture must be albert or bert, not {architecture!r}")
        return self.build(dtype) if architecture == "albert" else self.bert_equivalent(dtype)

    def bert_equivalent_kwargs(self) -> dict:
        """Keyword arguments for `keras_hub.models.BertBackbone` of the same depth and width."""
        return {
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "max_sequence_length": self.max_sequence_length,
        }


CONFIGS: dict[str, AlbertConfig] = {
    # For unit tests: builds and runs in well under a second.
    "nano": AlbertConfig(
        num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, embedding_dim=16,
        max_sequence_length=128,
    ),
    # For the demo on 2 CPU cores: learns the sample data's vocabulary in a few minutes.
    "mini": AlbertConfig(
        num_layers=4, num_heads=4, hidden_dim=128, intermediate_dim=512, embedding_dim=64,
        max_sequence_length=256,
    ),
    # albert_tiny (brightmart's Chinese ALBERT): ~4M parameters with a 21k vocabulary.
    "tiny": AlbertConfig(
        num_layers=4, num_heads=12, hidden_dim=312, intermediate_dim=1248, embedding_dim=128
    ),
    "small": AlbertConfig(
        num_layers=6, num_heads=8, hidden_dim=512, intermediate_dim=2048, embedding_dim=128
    ),
    # The paper's ALBERT-base: 12M parameters with a 30k vocabulary.
    "base": AlbertConfig(
        num_layers=12, num_heads=12, hidden_dim=768, intermediate_dim=3072, embedding_dim=128
    ),
    "large": AlbertConfig(
        num_layers=24, num_heads=16, hidden_dim=1024, intermediate_dim=4096, embedding_dim=128
    ),
}


# Segment (token type) embeddings: keras-hub's default `num_segments` for both backbones.
NUM_SEGMENTS = 2


def _encoder_layer_parameters(hidden: int, intermediate: int) -> int:
    """One keras-hub `TransformerEncoder`: attention, its LayerNorm, the FFN and its LayerNorm."""
    attention = 4 * (hidden * hidden + hidden)  # query, key, value and output kernels + biases
    ffn = hidden * intermediate + intermediate + intermediate * hidden + hidden
    return attention + ffn + 2 * (2 * hidden)  # + gamma and beta of two LayerNorms


def _counts(token: int, position: int, segment: int, layer_norm: int, projection: int,
            layers: int, layer: int, pooler: int) -> dict[str, int]:
    embedding = token + position + segment + layer_norm + projection
    encoder = layers * layer
    return {
        "total": embedding + encoder + pooler,
        "embedding": embedding,
        "token_embedding": token,
        "encoder": encoder,
        "encoder_layers": layers,
        "pooler": pooler,
    }


def albert_parameter_count(config: AlbertConfig) -> dict[str, int]:
    """Parameters of `config.build()`, by hand: factorized V x E embeddings projected to H, and
    `num_groups x num_inner_repetitions` distinct encoder layers (each group is called
    `num_layers / num_groups` times: sharing saves parameters, not compute).

    Keys: `total`; `embedding` (token, position, segment, LayerNorm and the E -> H projection),
    `token_embedding`, `encoder`, `encoder_layers` (distinct layers), `pooler`.
    """
    c, e = config, config.embedding_dim
    return _counts(
        token=c.vocabulary_size * e,
        position=c.max_sequence_length * e,
        segment=NUM_SEGMENTS * e,
        layer_norm=2 * e,
        projection=e * c.hidden_dim + c.hidden_dim,
        layers=c.num_groups * c.num_inner_repetitions,
        layer=_encoder_layer_parameters(c.hidden_dim, c.intermediate_dim),
        pooler=c.hidden_dim * c.hidden_dim + c.hidden_dim,
    )


def bert_parameter_count(config: AlbertConfig) -> dict[str, int]:
    """Parameters of `config.bert_equivalent()`, by hand: V x H embeddings, no projection, and
    `num_layers` distinct encoder layers. Same keys as `albert_parameter_count`."""
    c, h = config, config.hidden_dim
    return _counts(
        token=c.vocabulary_size * h,
        position=c.max_sequence_length * h,
        segment=NUM_SEGMENTS * h,
        layer_norm=2 * h,
        projection=0,
        layers=c.num_layers,
        layer=_encoder_layer_parameters(h, c.intermediate_dim),
        pooler=h * h + h,
    )


def get_config(name: str, **overrides) -> AlbertConfig:
    """A named config with fields overridden, e.g. `get_config("tiny", vocabulary_size=8000)`."""
    if name not in CONFIGS:
        raise ValueError(f"Unknown ALBERT config {name!r}. Choose one of: {', '.join(CONFIGS)}")
    return CONFIGS[name].replace(**overrides)
