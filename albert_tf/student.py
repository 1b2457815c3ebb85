"""An ALBERT student that inherits a BERT teacher's weights (weight inheritance before distillation).

The student is a keras-hub `AlbertBackbone` over the teacher's vocabulary: factorized embeddings
(E < H) and one transformer layer shared by all `num_layers` passes, with the teacher's width H,
heads and feed-forward size. Instead of starting from noise it starts from the teacher ("Extract
Then Distill", 2021):

- token embedding and its projection from a truncated SVD of the teacher's `[V, H]` embedding
  matrix (`W ~ U_E S_E V_E^T`: the student keeps `U_E S_E` as its `[V, E]` table and `V_E^T` as
  the `E -> H` projection, both turned by one reflection, see `embedding_factors`);
- position and segment embeddings projected onto the same E directions;
- ALBERT normalises the E-dimensional sum where BERT normalises the H-dimensional one; since
  `V_E^T` preserves norms, `LN_H(x V_E^T) ~ LN_E(x) V_E^T sqrt(E/H)` up to centring, so the
  projection carries `sqrt(E/H)`, BERT's gamma and beta;
- the shared layer from the teacher's layers: one of them, or their element-wise average
  (`shared_from`; `measure_inheritance` compares them).

`hidden_states` runs either backbone layer by layer and returns what the distillation losses
compare: every layer's output and attention probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import keras_hub
import numpy as np

SHARED_FROM_CHOICES = ("average", "first", "middle", "last")


@dataclass(frozen=True)
class StudentShape:
    """The student's own choices; everything else (H, heads, FFN, vocabulary) is the teacher's.

    Args:
        embedding_dim: E, the factorized embedding width (ALBERT-base: 128).
        num_layers: passes of the shared layer; default the teacher's depth.
        shared_from: which teacher layer(s) initialise the shared layer: "average" of all,
            "first", "middle", "last", or a layer index as a string.
    """

    embedding_dim: int = 128
    num_layers: int | None = None
    shared_from: str = "average"


def student_config(teacher: keras_hub.models.BertBackbone, shape: StudentShape) -> dict:
    """The `AlbertBackbone` keyword arguments of the student of `teacher`."""
    if shape.embedding_dim >= teacher.hidden_dim:
        raise ValueError(f"embedding_dim {shape.embedding_dim} must be below the teacher's hidden "
                         f"size {teacher.hidden_dim} (factorized embeddings)")
    return dict(
        vocabulary_size=teacher.vocabulary_size,
        num_layers=shape.num_layers or teacher.num_layers,
        num_heads=teacher.num_heads,
        embedding_dim=shape.embedding_dim,
        hidden_dim=teacher.hidden_dim,
        intermediate_dim=teacher.intermediate_dim,
        num_groups=1,
        num_inner_repetitions=1,
        dropout=0.0,
        max_sequence_length=teacher.max_sequence_length,
        num_segments=teacher.num_segments,
    )


def _teacher_layer_indices(shared_from: str, num_layers: int) -> list[int]:
    named = {"average": list(range(num_layers)), "first": [0], "middle": [num_layers // 2],
             "last": [num_layers - 1]}
    if shared_from in named:
        return named[shared_from]
    try:
        index = int(shared_from)
    except ValueError:
        raise ValueError(f"shared_from must be one of {SHARED_FROM_CHOICES} or a layer index, "
                         f"not {shared_from!r}") from None
    if not 0 <= index < num_layers:
        raise ValueError(f"shared_from={index}: the teacher has layers 0..{num_layers - 1}")
    return [index]


def embedding_factors(embeddings: np.ndarray, embedding_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Truncated SVD of a `[V, H]` table: (`[V, E]` = U_E S_E R, `[E, H]` = R V_E^T), the best
    rank-E approximation of the table (Eckart-Young).

    R is the reflection that turns the weakest kept direction into the all-ones direction of the
    E coordinates: ALBERT's LayerNorm subtracts the mean over E, which then removes only that
    direction's (small) share instead of a slice of every direction."""
    u, s, vt = np.linalg.svd(embeddings.astype(np.float64), full_matrices=False)
    token_e, projection = u[:, :embedding_dim] * s[:embedding_dim], vt[:embedding_dim]
    weakest = np.zeros(embedding_dim)
    weakest[-1] = 1.0
    direction = weakest - np.full(embedding_dim, 1 / np.sqrt(embedding_dim))
    reflection = np.eye(embedding_dim) - 2 * np.outer(direction, direction) / (
        direction @ direction)
    return (token_e @ reflection).astype(np.float32), (reflection @ projection).astype(np.float32)


def inherit_from_teacher(student: keras_hub.models.AlbertBackbone,
                         teacher: keras_hub.models.BertBackbone,
                         shared_from: str = "average") -> dict:
    """Set the student's weights from the teacher's (see the module docstring); returns what was
    done: the share of the embedding table's energy the E directions keep, and the layers used."""
    embedding_dim, hidden_dim = student.embedding_dim, teacher.hidden_dim
    table = keras.ops.convert_to_numpy(teacher.token_embedding.embeddings)
    token_e, projection = embedding_factors(table, embedding_dim)
    student.token_embedding.embeddings.assign(token_e)
    basis = projection.T  # [H, E], orthonormal columns
    position = keras.ops.convert_to_numpy(teacher.position_embedding.position_embeddings)
    student.position_embedding.position_embeddings.assign(position @ basis)
    segment = keras.ops.convert_to_numpy(teacher.segment_embedding.embeddings)
    student.segment_embedding.embeddings.assign(segment @ basis)
    norm_t, norm_s = teacher.embeddings_layer_norm, student.embeddings_layer_norm
    norm_s.gamma.assign(np.ones([embedding_dim], np.float32))
    norm_s.beta.assign(np.zeros([embedding_dim], np.float32))
    gamma = keras.ops.convert_to_numpy(norm_t.gamma)
    scale = np.sqrt(embedding_dim / hidden_dim)
    student.embeddings_projection.kernel.assign((projection * scale * gamma[None, :])
                                                .astype(np.float32))
    student.embeddings_projection.bias.assign(keras.ops.convert_to_numpy(norm_t.beta))

    indices = _teacher_layer_indices(shared_from, teacher.num_layers)
    shared = student.transformer_layers[0][0]
    sources = [teacher.transformer_layers[i] for i in indices]
    for target, *origins in zip(shared.weights, *(s.weights for s in sources)):
        values = [keras.ops.convert_to_numpy(o) for o in origins]
        target.assign(np.mean(values, axis=0).astype(np.float32))
    student.pooled_dense.set_weights(teacher.pooled_dense.get_weights())
    kept = float(np.sum(token_e.astype(np.float64) ** 2) / np.sum(table.astype(np.float64) ** 2))
    return {"embedding_energy_kept": kept, "shared_from": shared_from, "teacher_layers": indices}


def build_student(teacher: keras_hub.models.BertBackbone, shape: StudentShape = StudentShape(),
                  dtype: str = "float32") -> tuple[keras_hub.models.AlbertBackbone, dict]:
    """A new `AlbertBackbone` student initialised from `teacher`, and the inheritance report."""
    student = keras_hub.models.AlbertBackbone(**student_config(teacher, shape), dtype=dtype)
    return student, inherit_from_teacher(student, teacher, shape.shared_from)


def parameter_count(backbone) -> int:
    """Trainable and frozen weights of a backbone, the shared layer counted once."""
    return int(sum(np.prod(w.shape) for w in backbone.weights))


# === Layer-by-layer states ===


def _layers_in_order(backbone) -> list:
    if isinstance(backbone, keras_hub.models.AlbertBackbone):
        per_group = backbone.num_layers // backbone.num_groups
        return [layer for group in backbone.transformer_layers
                for _ in range(per_group) for layer in group]
    return list(backbone.transformer_layers)


def hidden_states(backbone, inputs: dict, training: bool = False,
                  attention: bool = True) -> tuple[list, list]:
    """(states, attentions) of an ALBERT or BERT backbone: states[0] is the embedding output and
    states[i] the output of layer i (so states[-1] is `sequence_output`); attentions[i-1] the
    `[batch, heads, T, T]` attention probabilities of layer i (empty unless `attention`)."""
    token_ids = inputs["token_ids"]
    tokens = backbone.token_embedding(token_ids)
    x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens),
                                 backbone.segment_embedding(inputs["segment_ids"])))
    x = backbone.embeddings_layer_norm(x)
    x = backbone.embeddings_dropout(x, training=training)
    if isinstance(backbone, keras_hub.models.AlbertBackbone):
        x = backbone.embeddings_projection(x)
    states, attentions = [x], []
    for layer in _layers_in_order(backbone):
        if attention:
            x, probabilities = layer(x, padding_mask=inputs["padding_mask"], training=training,
                                     return_attention_scores=True)
            attentions.append(probabilities)
        else:
            x = layer(x, padding_mask=inputs["padding_mask"], training=training)
        states.append(x)
    return states, attentions


def mean_pooled(sequence_output, padding_mask):
    """Mean over real tokens, L2-normalised: the teacher's sentence embedding."""
    mask = keras.ops.cast(padding_mask, sequence_output.dtype)[:, :, None]
    mean = keras.ops.sum(sequence_output * mask, axis=1) / keras.ops.maximum(
        keras.ops.sum(mask, axis=1), 1e-9)
    return keras.ops.normalize(mean, axis=-1, order=2)


def embedding_agreement(student, teacher, batches: Sequence[dict]) -> dict:
    """How close the student is to the teacher on `batches` of packed inputs: mean cosine of
    their sentence embeddings and mean squared error of the last hidden states (real tokens)."""
    cosines, errors = [], []
    for x in batches:
        s_out = student(x)["sequence_output"]
        t_out = teacher(x)["sequence_output"]
        cos = keras.ops.sum(mean_pooled(s_out, x["padding_mask"])
                            * mean_pooled(t_out, x["padding_mask"]), axis=-1)
        cosines.extend(keras.ops.convert_to_numpy(cos).tolist())
        mask = keras.ops.convert_to_numpy(x["padding_mask"]).astype(bool)
        diff = keras.ops.convert_to_numpy(s_out - t_out)[mask]
        errors.append(float(np.mean(diff ** 2)))
    return {"sentence_cosine": float(np.mean(cosines)), "hidden_mse": float(np.mean(errors))}


def measure_inheritance(teacher, batches: Sequence[dict], embedding_dims: Sequence[int] = (128,),
                        choices: Sequence[str] = SHARED_FROM_CHOICES) -> list[dict]:
    """Agreement right after initialisation for each (E, shared_from): which start is best."""
    rows = []
    for embedding_dim in embedding_dims:
        for choice in choices:
            student, report = build_student(teacher, StudentShape(embedding_dim, None, choice))
            rows.append({"embedding_dim": embedding_dim, "shared_from": choice,
                         "embedding_energy_kept": round(report["embedding_energy_kept"], 4),
                         **embedding_agreement(student, teacher, batches)})
    return rows
