"""Pretrained weights from a local Hugging Face checkpoint folder (`config.json`,
`model.safetensors`, `spiece.model`), as a user with `albert-base-v2` on disk has it.

The test writes a tiny ALBERT checkpoint in Hugging Face's layout from a keras-hub model's own
numbers (transposes and reshapes as `transformers` stores them), loads it through the same
`from_preset` path `pretrain --init-from-preset` and `finetune --preset` use, and checks the outputs
equal the model the numbers came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from albert_tf.bert import load_backbone
from albert_tf.configs import get_config
from albert_tf.tokenizer import load_tokenizer, preset_sentencepiece


def _hf_attention_kernel(kernel: np.ndarray, output: bool) -> np.ndarray:
    """keras-hub's [H, heads, head_dim] (output: [heads, head_dim, H]) -> torch's [out, in]."""
    matrix = kernel.reshape(-1, kernel.shape[-1]) if output else kernel.reshape(kernel.shape[0], -1)
    return matrix.T


def write_hf_albert(backbone, spm_model: Path, folder: Path) -> Path:
    """Save an `AlbertBackbone` as a Hugging Face `AlbertModel` checkpoint folder."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "albert", "architectures": ["AlbertModel"],
        "vocab_size": backbone.vocabulary_size, "embedding_size": backbone.embedding_dim,
        "hidden_size": backbone.hidden_dim, "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_heads, "intermediate_size": backbone.intermediate_dim,
        "num_hidden_groups": backbone.num_groups,
        "inner_group_num": backbone.num_inner_repetitions, "hidden_act": "gelu_new",
        "attention_probs_dropout_prob": 0.0, "hidden_dropout_prob": 0.0,
        "max_position_embeddings": backbone.max_sequence_length,
        "type_vocab_size": backbone.num_segments, "layer_norm_eps": 1e-12,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    value = lambda variable: np.asarray(variable.numpy(), dtype="float32")  # noqa: E731
    tensors = {
        "albert.embeddings.word_embeddings.weight": value(backbone.token_embedding.embeddings),
        "albert.embeddings.position_embeddings.weight":
            value(backbone.position_embedding.position_embeddings),
        "albert.embeddings.token_type_embeddings.weight":
            value(backbone.segment_embedding.embeddings),
        "albert.embeddings.LayerNorm.weight": value(backbone.embeddings_layer_norm.gamma),
        "albert.embeddings.LayerNorm.bias": value(backbone.embeddings_layer_norm.beta),
        "albert.encoder.embedding_hidden_mapping_in.weight":
            value(backbone.embeddings_projection.kernel).T,
        "albert.encoder.embedding_hidden_mapping_in.bias":
            value(backbone.embeddings_projection.bias),
        "albert.pooler.weight": value(backbone.pooled_dense.kernel).T,
        "albert.pooler.bias": value(backbone.pooled_dense.bias),
    }
    for group in range(backbone.num_groups):
        for inner in range(backbone.num_inner_repetitions):
            layer = backbone.get_layer(f"group_{group}_inner_layer_{inner}")
            attention = layer._self_attention_layer
            prefix = f"albert.encoder.albert_layer_groups.{group}.albert_layers.{inner}."
            for name, dense in (("query", attention.query_dense), ("key", attention.key_dense),
                                ("value", attention.value_dense),
                                ("dense", attention.output_dense)):
                tensors[f"{prefix}attention.{name}.weight"] = _hf_attention_kernel(
                    value(dense.kernel), output=name == "dense")
                tensors[f"{prefix}attention.{name}.bias"] = value(dense.bias).reshape(-1)
            tensors[f"{prefix}attention.LayerNorm.weight"] = value(
                layer._self_attention_layer_norm.gamma)
            tensors[f"{prefix}attention.LayerNorm.bias"] = value(
                layer._self_attention_layer_norm.beta)
            tensors[f"{prefix}ffn.weight"] = value(layer._feedforward_intermediate_dense.kernel).T
            tensors[f"{prefix}ffn.bias"] = value(layer._feedforward_intermediate_dense.bias)
            tensors[f"{prefix}ffn_output.weight"] = value(layer._feedforward_output_dense.kernel).T
            tensors[f"{prefix}ffn_output.bias"] = value(layer._feedforward_output_dense.bias)
            tensors[f"{prefix}full_layer_layer_norm.weight"] = value(
                layer._feedforward_layer_norm.gamma)
            tensors[f"{prefix}full_layer_layer_norm.bias"] = value(
                layer._feedforward_layer_norm.beta)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
              str(folder / "model.safetensors"))
    shutil.copy(spm_model, folder / "spiece.model")
    return folder


@pytest.fixture(scope="module")
def hf_albert(spm_model, tmp_path_factory):
    import keras

    keras.utils.set_random_seed(3)
    tokenizer = load_tokenizer(spm_model)
    backbone = get_config("nano", vocabulary_size=tokenizer.vocabulary_size()).build()
    folder = write_hf_albert(backbone, spm_model, tmp_path_factory.mktemp("hf") / "albert-nano")
    return backbone, tokenizer, folder


def test_a_hugging_face_albert_folder_loads_with_the_same_outputs(hf_albert):
    import keras_hub

    original, tokenizer, folder = hf_albert
    loaded = load_backbone(folder)
    assert isinstance(loaded, keras_hub.models.AlbertBackbone)
    assert loaded.count_params() == original.count_params()
    hf_tokenizer = keras_hub.models.AlbertTokenizer.from_preset(str(folder))
    texts = ["The battery lasts all day.", "Great sound but the case feels cheap."]
    as_lists = lambda ids: [[int(i) for i in row] for row in ids]  # noqa: E731
    assert as_lists(hf_tokenizer(texts)) == as_lists(tokenizer(texts))
    preprocessor = keras_hub.models.AlbertTextClassifierPreprocessor(hf_tokenizer,
                                                                     sequence_length=16)
    inputs = preprocessor(texts)
    out_loaded, out_original = loaded(inputs), original(inputs)
    for key in ("sequence_output", "pooled_output"):
        np.testing.assert_allclose(out_loaded[key], out_original[key], atol=1e-5, rtol=1e-5)


def test_the_sentencepiece_file_of_either_kind_of_preset(hf_albert, tmp_path):
    original, tokenizer, folder = hf_albert
    assert preset_sentencepiece(folder) == folder / "spiece.model"
    keras_preset = tmp_path / "keras-preset"
    original.save_to_preset(str(keras_preset))
    tokenizer.save_to_preset(str(keras_preset))
    assert preset_sentencepiece(keras_preset) == keras_preset / "assets/tokenizer/vocabulary.spm"
    assert preset_sentencepiece(keras_preset).read_bytes() == preset_sentencepiece(
        folder).read_bytes()
    with pytest.raises(FileNotFoundError, match="spiece.model"):
        preset_sentencepiece(tmp_path)
