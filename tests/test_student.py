"""The ALBERT student of a BERT teacher: inheritance, general distillation, the stage, export."""

import json

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from albert_tf.layer_distillation import (DistillationWeights, LayerDistiller, distillation_losses,
                                          layer_map)
from albert_tf.student import (StudentShape, build_student, embedding_agreement,
                               embedding_factors, hidden_states, measure_inheritance,
                               parameter_count, student_config)

WORDS = ("the battery life is great but sound awful price high screen works well cheap "
         "broke after a week love it hate this fast slow good bad phone case fit size").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS))]
SENTENCES = [
    "the battery life is great", "but the sound is awful", "price is high",
    "the screen works well", "cheap case broke after a week", "love it", "hate this phone",
    "fast and good", "slow and bad", "the case fit the phone", "size is good", "great sound",
]


@pytest.fixture(scope="module")
def nano_teacher():
    keras.utils.set_random_seed(3)
    teacher = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=2, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32, dropout=0.0)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCAB, lowercase=True)
    return teacher, tokenizer


def _batches(tokenizer, texts=SENTENCES, sequence_length=16):
    pre = keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer,
                                                          sequence_length=sequence_length)
    return [pre(tf.constant(texts[i:i + 6])) for i in range(0, len(texts), 6)]


def test_embedding_factors_are_the_best_rank_e_approximation():
    table = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    token_e, projection = embedding_factors(table, 5)
    assert token_e.shape == (40, 5) and projection.shape == (5, 12)
    np.testing.assert_allclose(projection @ projection.T, np.eye(5), atol=1e-5)  # orthonormal
    singular = np.linalg.svd(table, compute_uv=False)
    error = np.sum((table - token_e @ projection) ** 2)
    np.testing.assert_allclose(error, np.sum(singular[5:] ** 2), rtol=1e-4)  # Eckart-Young


def test_the_student_is_an_albert_with_factorized_embeddings_and_one_shared_layer(nano_teacher):
    teacher, _ = nano_teacher
    student, report = build_student(teacher, StudentShape(embedding_dim=4))
    assert isinstance(student, keras_hub.models.AlbertBackbone)
    assert (student.embedding_dim, student.hidden_dim, student.num_layers,
            student.num_groups) == (4, 16, 2, 1)
    assert student.token_embedding.embeddings.shape == (len(VOCAB), 4)
    assert student.embeddings_projection.kernel.shape == (4, 16)
    assert len(student.transformer_layers) == 1 and len(student.transformer_layers[0]) == 1
    assert parameter_count(student) < parameter_count(teacher)
    assert report["teacher_layers"] == [0, 1] and 0 < report["embedding_energy_kept"] < 1
    # "average": the shared layer's weights are the mean of the teacher's layers.
    shared = student.transformer_layers[0][0].weights[0].numpy()
    mean = np.mean([layer.weights[0].numpy() for layer in teacher.transformer_layers], axis=0)
    np.testing.assert_allclose(shared, mean, atol=1e-6)
    with pytest.raises(ValueError, match="below the teacher's hidden size"):
        student_config(teacher, StudentShape(embedding_dim=16))
    with pytest.raises(ValueError, match="layers 0..1"):
        build_student(teacher, StudentShape(embedding_dim=4, shared_from="7"))


def test_right_after_inheritance_the_student_computes_what_the_teacher_computes(nano_teacher):
    """With a one-layer teacher whose embedding table has rank E - 1, inheritance loses nothing:
    the student's outputs are the teacher's; a randomly initialised student is far off."""
    _, tokenizer = nano_teacher
    keras.utils.set_random_seed(4)
    teacher = keras_hub.models.BertBackbone(
        vocabulary_size=len(VOCAB), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32, dropout=0.0)
    rng = np.random.default_rng(0)
    low_rank = rng.normal(size=(len(VOCAB), 11)) @ rng.normal(size=(11, 16)) * 0.05
    low_rank -= low_rank.mean(axis=1, keepdims=True)  # already centred: BERT's LayerNorm centres
    teacher.token_embedding.embeddings.assign(low_rank.astype(np.float32))
    for table in (teacher.position_embedding.position_embeddings,
                  teacher.segment_embedding.embeddings):
        table.assign(np.zeros(table.shape, np.float32))
    batches = _batches(tokenizer)
    student, report = build_student(teacher, StudentShape(embedding_dim=12))
    assert report["embedding_energy_kept"] > 0.999
    inherited = embedding_agreement(student, teacher, batches)
    random_student = keras_hub.models.AlbertBackbone(**student_config(teacher, StudentShape(12)))
    random = embedding_agreement(random_student, teacher, batches)
    assert inherited["sentence_cosine"] > 0.99 and inherited["hidden_mse"] < 1e-3
    assert random["hidden_mse"] > 100 * inherited["hidden_mse"]


def test_inheritance_choices_are_measured_side_by_side(nano_teacher):
    teacher, tokenizer = nano_teacher
    rows = measure_inheritance(teacher, _batches(tokenizer), embedding_dims=(4, 8),
                               choices=("average", "first"))
    assert [(r["embedding_dim"], r["shared_from"]) for r in rows] == [
        (4, "average"), (4, "first"), (8, "average"), (8, "first")]
    assert rows[2]["embedding_energy_kept"] > rows[0]["embedding_energy_kept"]
    assert all(-1 <= r["sentence_cosine"] <= 1 and r["hidden_mse"] >= 0 for r in rows)


def test_hidden_states_match_the_backbones_own_outputs(nano_teacher):
    teacher, tokenizer = nano_teacher
    student, _ = build_student(teacher, StudentShape(embedding_dim=4))
    x = _batches(tokenizer)[0]
    for backbone, depth in ((teacher, 2), (student, 2)):
        states, attentions = hidden_states(backbone, x)
        assert len(states) == depth + 1 and len(attentions) == depth
        np.testing.assert_allclose(states[-1], backbone(x)["sequence_output"], atol=1e-5)
        assert attentions[0].shape == (6, 2, 16, 16)
        np.testing.assert_allclose(np.sum(attentions[0], axis=-1), 1.0, atol=1e-5)


def test_layer_map_is_uniform():
    assert layer_map(6, 6) == [1, 2, 3, 4, 5, 6]
    assert layer_map(3, 6) == [2, 4, 6]
    assert layer_map(4, 2) == [1, 1, 2, 2]  # a deeper student repeats, never the embeddings


def test_general_distillation_losses_fall_and_only_the_student_learns(nano_teacher):
    teacher, tokenizer = nano_teacher
    keras.utils.set_random_seed(5)
    student, _ = build_student(teacher, StudentShape(embedding_dim=4))
    teacher_before = [w.numpy().copy() for w in teacher.weights]
    distiller = LayerDistiller(student, teacher)
    distiller.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    batches = _batches(tokenizer)
    before = {k: float(v) for k, v in distillation_losses(student, teacher, batches[0]).items()}
    assert set(before) == {"hidden", "attention", "value", "sentence", "total"}
    ds = tf.data.Dataset.from_tensor_slices(SENTENCES * 4).batch(6).map(
        keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=16))
    distiller.fit(ds.repeat(), steps_per_epoch=60, epochs=1, verbose=0)
    after = {k: float(v) for k, v in distillation_losses(student, teacher, batches[0]).items()}
    assert after["total"] < 0.7 * before["total"]
    assert after["hidden"] < before["hidden"] and after["attention"] < before["attention"]
    for old, new in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(old, new.numpy())
    # A weight of zero removes a term.
    only_hidden = distillation_losses(student, teacher, batches[0],
                                      weights=DistillationWeights(1.0, 0.0, 0.0, 0.0))
    assert set(only_hidden) == {"hidden", "total"}


def test_distillation_losses_of_a_trimmed_batch_equal_the_padded_ones(nano_teacher):
    """Grouped distillation trims each batch to the width it needs; the losses must not move
    (every term averages over real tokens only, and padded keys are masked)."""
    from albert_tf.text_tasks import trim_padding

    teacher, tokenizer = nano_teacher
    keras.utils.set_random_seed(6)
    student, _ = build_student(teacher, StudentShape(embedding_dim=4))
    padded = _batches(tokenizer, sequence_length=32)[0]
    trimmed = trim_padding(padded, (8, 16, 32))
    assert trimmed["token_ids"].shape[1] == 8 < padded["token_ids"].shape[1]
    full = distillation_losses(student, teacher, padded)
    cut = distillation_losses(student, teacher, trimmed)
    for name in full:
        np.testing.assert_allclose(float(cut[name]), float(full[name]), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def nano_teacher_folder(nano_teacher, tmp_path_factory):
    teacher, tokenizer = nano_teacher
    folder = tmp_path_factory.mktemp("teacher")
    teacher.save_to_preset(str(folder))
    tokenizer.save_to_preset(str(folder))
    return folder


def test_distill_stage_resumes_and_saves_a_student_preset(nano_teacher_folder, tmp_path):
    from pipelines.cli import main

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"{a}. {b}" for a in SENTENCES for b in SENTENCES[::3]) + "\n")
    ws = tmp_path / "ws"
    args = ["distill", "--workspace", str(ws), "--teacher", str(nano_teacher_folder),
            "--texts", str(texts), "--embedding-dim", "4", "--steps", "12",
            "--checkpoint-every", "6", "--batch-size", "8", "--sequence-length", "32",
            "--held-out-fraction", "0.1", "--no-xla", "--max-minutes", "0"]
    assert main(args) == 0
    metrics = json.loads((ws / "distill" / "metrics.json").read_text())
    assert metrics["step"] == 12 and metrics["parameter_ratio"] > 1
    assert metrics["mean_batch_width"] < 32  # grouped by length, batches trimmed
    assert metrics["held_out_texts"] > 0 and metrics["history"]
    assert metrics["held_out_final"]["hidden_mse"] < metrics["held_out_at_init"]["hidden_mse"]
    assert any((ws / "distill" / "logs").rglob("events.out.tfevents*"))  # TensorBoard
    # The preset is an ALBERT backbone with the teacher's WordPiece tokenizer.
    from albert_tf.classifier import load_encoder

    tokenizer, backbone = load_encoder(str(ws / "distill" / "preset"))
    assert isinstance(backbone, keras_hub.models.AlbertBackbone) and backbone.embedding_dim == 4
    assert isinstance(tokenizer, keras_hub.models.BertTokenizer)
    # Run again with the same options: it resumes from the step-12 checkpoint, trains nothing.
    state = json.loads((ws / "distill" / "checkpoints" / "checkpoint.json").read_text())
    assert state["step"] == 12
    assert main(args) == 0
    again = json.loads((ws / "distill" / "metrics.json").read_text())
    assert again["step"] == 12 and len(again["history"]) == len(metrics["history"])
    np.testing.assert_allclose(again["held_out_final"]["hidden_mse"],
                               metrics["held_out_final"]["hidden_mse"], rtol=1e-5)
    # The same texts from another path (a copied corpus) still resume.
    copy = tmp_path / "copy.txt"
    copy.write_bytes(texts.read_bytes())
    assert main([*args[:6], str(copy), *args[7:]]) == 0
    assert json.loads((ws / "distill" / "checkpoints" / "checkpoint.json").read_text())["step"] == 12
    assert len(json.loads((ws / "distill" / "metrics.json").read_text())["history"]) == \
        len(metrics["history"])
    # `compare` on a workspace with a student and no pretraining data: the student beside its
    # teacher (each profiled in its own processes), the race left out.
    assert main(["compare", "--workspace", str(ws), "--batch-size", "2", "--sequence-length",
                 "16", "--repeats", "1"]) == 0
    result = json.loads((ws / "compare" / "encoders.json").read_text())
    teacher, student = result["profiles"]["teacher"], result["profiles"]["student"]
    assert (teacher["class"], student["class"]) == ("BertBackbone", "AlbertBackbone")
    assert student["params"] < teacher["params"] and student["peak_rss_mb"] > 0
    assert all(v > 0 for v in student["tokens_per_s"].values())
    assert "fewer than teacher" in (ws / "compare" / "encoders.md").read_text()
    assert not (ws / "compare" / "compare.json").exists()


def _layer_stage_fixture(kind: str):
    """A nano sentiment set, or an aspect-term set over the same sentences ("battery" and
    "screen" are the terms)."""
    import re

    from pipelines.quality.datasets import Dataset, Example

    good = ("great", "good", "love it", "works well", "fast")
    texts = [f"{s} {n}" if n else s for n, s in enumerate(s for s in SENTENCES for _ in range(3))]
    if kind == "aspect_terms":  # distinct texts, as the splits need
        examples = [Example(t, None, spans=tuple(m.span() for m in re.finditer(
            r"\b(?:battery|screen)\b", t))) for t in texts]
        labels, metrics = [], ("precision", "recall", "f1")
    else:
        examples = [Example(t, "positive" if any(w in t for w in good) else "negative")
                    for t in texts]
        labels, metrics = ["negative", "positive"], ("accuracy",)
    return Dataset(name="nano", task=kind, language="en", labels=labels, train=examples[:24],
                   dev=examples[24:30], test=examples[30:], metrics=metrics,
                   description="test fixture")


@pytest.mark.parametrize("kind", ["classification", "aspect_terms"])
def test_the_layer_stage_of_task_distillation_moves_the_student_to_the_fine_tuned_teacher(
        nano_teacher, nano_teacher_folder, tmp_path, kind):
    """`layer_minutes`: before the head learns the teacher's predictions (a class, or a tag on
    every token), the student's layers learn the fine-tuned teacher's on the task's texts
    (TinyBERT's first task stage): the dev losses fall, and the head's stage still has budget
    left."""
    from pipelines import tasks

    data = _layer_stage_fixture(kind)
    options = dict(batch_size=8, learning_rate=3e-3, eval_every=5, xla=False,
                   linear_probe="off", epochs=4)
    tasks.train_task(data, nano_teacher_folder, tmp_path / "teacher", tasks.TaskOptions(**options))
    teacher, tokenizer = nano_teacher
    student, _ = build_student(teacher, StudentShape(4, None, "average"))
    student.save_to_preset(str(tmp_path / "student"))
    tokenizer.save_to_preset(str(tmp_path / "student"))
    summary = tasks.train_task(data, tmp_path / "student", tmp_path / "distilled",
                               tasks.TaskOptions(**options, teacher_model=str(tmp_path / "teacher"),
                                                 max_minutes=1.0, layer_minutes=0.4,
                                                 layer_learning_rate=5e-3))
    stage = summary["layer_distillation"]
    assert stage["steps"] > 0
    assert stage["dev_losses_after"]["hidden"] < stage["dev_losses_before"]["hidden"]
    assert stage["dev_losses_after"]["total"] < stage["dev_losses_before"]["total"]
    assert summary["steps"] > 0  # the head's stage had budget left


def test_the_student_exports_raw_text_features_in_a_fresh_process(nano_teacher, tmp_path):
    """The student with the teacher's WordPiece tokenizer exports a raw-text `text_features`
    SavedModel that loads in a TensorFlow-only process, XLA-free."""
    from albert_tf.classifier import (SENTIMENT_LABELS, OpinionClassifier, load_encoder,
                                      make_text_preprocessor)
    from albert_tf.export import TextFeatures, export_text_features
    from serving.check import check_saved_model

    teacher, tokenizer = nano_teacher
    student, _ = build_student(teacher, StudentShape(embedding_dim=4))
    from albert_tf.bert import wordpiece_for

    student.save_to_preset(str(tmp_path / "preset"))
    wordpiece_for(tokenizer, keras_hub.models.AlbertBackbone).save_to_preset(
        str(tmp_path / "preset"))
    tokenizer, backbone = load_encoder(str(tmp_path / "preset"))
    module = TextFeatures(OpinionClassifier(backbone, num_sentiments=3, num_topics=0),
                          make_text_preprocessor(tokenizer, 16), SENTIMENT_LABELS, [],
                          {"battery": "battery", "sound": "sound"}, max_aspects=2)
    texts = ["the battery life is great but the sound is awful", "", "love it"]
    expected = module.serve(tf.constant(texts))
    path = export_text_features(module, tmp_path / "text_features")
    report = check_saved_model(path, {"serving_default": {"text": texts}})
    assert report["foreign_modules"] == [] and report["xla"] == []
    loaded = tf.saved_model.load(str(path)).signatures["serving_default"](text=tf.constant(texts))
    np.testing.assert_allclose(loaded["embedding"], expected["embedding"], atol=1e-5)
    assert [a.decode() for a in expected["aspect_terms"].numpy()[0][:2]] == ["battery", "sound"]
