"""Pretraining learns, training resumes from checkpoints, presets round-trip."""

import json
import logging
import warnings

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from albert_tf.classifier import (
    LabelledTexts, OpinionClassifier, classification_dataset, compile_classifier,
    make_text_preprocessor,
)
from albert_tf.configs import get_config
from albert_tf.instances import Instances, instance_dataset
from albert_tf.pretraining import AlbertPretrainer, compile_pretrainer, make_mask_generator
from albert_tf.tokenizer import load_tokenizer
from albert_tf.training import StepCheckpoint, fit_resumable, make_optimizer, read_history
from pipelines.pretraining_data import run_pretraining_data_bare
from tests.conftest import make_review_corpus


def nano_backbone(tokenizer):
    config = get_config("nano", vocabulary_size=tokenizer.vocabulary_size())
    return keras_hub.models.AlbertBackbone(**config.backbone_kwargs())


def ordered_corpus(n: int, seed: int = 0) -> list[list[str]]:
    """Reviews told in order: an opening sentence, then a verdict; SOP can learn which comes first."""
    import random

    rng = random.Random(seed)
    opening = ["I bought these last month.", "First impressions were mixed.", "I ordered them on sale."]
    verdict = ["Then the battery died.", "Later the sound got worse.", "In the end I returned them."]
    return [[rng.choice(opening), rng.choice(verdict)] for _ in range(n)]


def test_losses_are_means_over_the_masked_tokens_and_the_segment_pairs(spm_model):
    # Padding mask slots and single-segment rows carry weight 0: they must not dilute the means
    # (a diluted SOP loss, present in a quarter of the rows of the real corpus, never learned).
    tokenizer = load_tokenizer(spm_model)
    keras.utils.set_random_seed(0)
    model = AlbertPretrainer(nano_backbone(tokenizer))
    compile_pretrainer(model, keras.optimizers.Adam(1e-3), jit_compile=False)
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(5, tokenizer.vocabulary_size(), [4, 16]).astype("int32"),
         "segment_ids": np.zeros([4, 16], "int32"), "padding_mask": np.ones([4, 16], "int32"),
         "mask_positions": rng.integers(1, 16, [4, 3]).astype("int32")}
    y = {"mlm": rng.integers(5, tokenizer.vocabulary_size(), [4, 3]).astype("int32"),
         "sop": np.array([0, 1, 0, 1], "int32")}
    w = {"mlm": np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]], "float32"),
         "sop": np.array([1, 0, 0, 1], "float32")}
    scores = model.evaluate(tf.data.Dataset.from_tensors((x, y, w)), return_dict=True, verbose=0)
    out = model.predict(x, verbose=0)

    def mean_cross_entropy(logits, labels, weights):
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return float(np.sum(np.asarray(losses) * weights) / np.sum(weights))

    assert scores["mlm_loss"] == pytest.approx(mean_cross_entropy(out["mlm"], y["mlm"], w["mlm"]),
                                               rel=1e-4)
    assert scores["sop_loss"] == pytest.approx(mean_cross_entropy(out["sop"], y["sop"], w["sop"]),
                                               rel=1e-4)
    assert scores["loss"] == pytest.approx(scores["mlm_loss"] + scores["sop_loss"], rel=1e-4)
    # --sop-weight scales the SOP term only.
    compile_pretrainer(model, keras.optimizers.Adam(1e-3), jit_compile=False, sop_weight=3.0)
    weighted = model.evaluate(tf.data.Dataset.from_tensors((x, y, w)), return_dict=True,
                              verbose=0)
    assert weighted["sop_loss"] == pytest.approx(scores["sop_loss"], rel=1e-4)
    assert weighted["loss"] == pytest.approx(scores["mlm_loss"] + 3 * scores["sop_loss"],
                                             rel=1e-4)


@pytest.mark.slow
def test_pretraining_learns_masked_lm_and_sop(spm_model, tmp_path):
    tokenizer = load_tokenizer(spm_model)
    corpus = make_review_corpus(300) + ordered_corpus(600)
    docs = [{"id": f"doc{i:05d}", "kind": "review", "text": " ".join(s), "sentences": s}
            for i, s in enumerate(corpus)]
    records = run_pretraining_data_bare(docs, spm_model, sequence_length=48,
                                        validation_fraction=0.0).records["train"]
    instances = Instances.from_records(records)
    masker = make_mask_generator(tokenizer.vocabulary_size(), tokenizer.mask_token_id,
                                 tokenizer.special_token_ids, sequence_length=48)
    # Real segment pairs ([CLS] A [SEP] B [SEP]): SOP takes off after ~200 steps and reached
    # 0.80-0.82 at step 500 for seeds 0-2 (0.59-0.78 at step 300).
    keras.utils.set_random_seed(0)
    model = AlbertPretrainer(nano_backbone(tokenizer))
    compile_pretrainer(model, make_optimizer("adamw", 3e-3, 20, 500), jit_compile=True)
    fit_resumable(
        model, lambda s, n: instance_dataset(instances, masker, 32, 48, start_step=s, num_steps=n),
        total_steps=500, steps_per_checkpoint=100, checkpoint_dir=tmp_path / "ckpt",
        log_dir=tmp_path / "logs", verbose=0,
    )
    history = read_history(tmp_path / "logs")
    assert [h["step"] for h in history] == [100, 200, 300, 400, 500]
    assert history[-1]["mlm_loss"] < 0.85 * history[0]["mlm_loss"]
    assert history[-1]["mlm_accuracy"] > history[0]["mlm_accuracy"] + 0.05
    assert history[-1]["sop_accuracy"] > 0.75  # chance is 0.5
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))


def _classifier_run(tokenizer, tmp_path, total_steps, max_minutes=None):
    texts = LabelledTexts()
    for i, doc in enumerate(make_review_corpus(200)):
        texts.add(" ".join(doc), sentiment=i % 3)
    preprocessor = make_text_preprocessor(tokenizer, 32)
    model = OpinionClassifier(nano_backbone(tokenizer), num_sentiments=3, num_topics=0)
    compile_classifier(model, make_optimizer("adamw", 1e-3, 5, total_steps), jit_compile=False)
    fit_resumable(
        model, lambda s, n: classification_dataset(texts, preprocessor, 16, 0, start_step=s,
                                                   num_steps=n),
        total_steps=total_steps, steps_per_checkpoint=10, checkpoint_dir=tmp_path / "ckpt",
        log_dir=tmp_path / "logs", keep_checkpoints=2, max_minutes=max_minutes, verbose=0,
    )
    return model


def _fresh_classifier(tokenizer):
    model = OpinionClassifier(nano_backbone(tokenizer), num_sentiments=3, num_topics=0)
    compile_classifier(model, make_optimizer("adamw", 1e-3, 5, 30), jit_compile=False)
    return model


def test_interrupted_training_resumes_at_its_checkpoint(spm_model, tmp_path, recwarn):
    tokenizer = load_tokenizer(spm_model)
    # A zero time budget stops after the first step, mid-chunk, and saves a checkpoint there.
    first = _classifier_run(tokenizer, tmp_path, total_steps=30, max_minutes=0)
    assert int(first.optimizer.iterations.numpy()) == 1
    # Without topics the topic head is frozen: no "Gradients do not exist" warning each run.
    assert not first.topic_head.trainable
    assert not [w for w in recwarn if "Gradients do not exist" in str(w.message)]

    # The checkpoint holds the whole state: a fresh model restores weights and step exactly.
    fresh = _fresh_classifier(tokenizer)
    assert StepCheckpoint.restore(fresh, tmp_path / "ckpt") == 1
    assert int(fresh.optimizer.iterations.numpy()) == 1
    for restored, trained in zip(fresh.get_weights(), first.get_weights()):
        np.testing.assert_array_equal(restored, trained)

    # Running the same command again continues from step 1 to the end, its chunks shifted by the
    # step it resumed at, and the short last chunk is no "ran out of data" warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = _classifier_run(tokenizer, tmp_path, total_steps=30)
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert int(second.optimizer.iterations.numpy()) == 30
    assert [h["step"] for h in read_history(tmp_path / "logs")] == [1, 11, 21, 30]
    state = json.loads((tmp_path / "ckpt" / "checkpoint.json").read_text())
    assert state["step"] == 30 and len(state["checkpoints"]) == 2
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.h5")) == state["checkpoints"]


def test_time_budget_stops_within_a_step_and_progress_is_logged(spm_model, tmp_path, caplog):
    """A budget far shorter than a chunk stops at the first step past it (not at the chunk's
    end); a run whose output is not a terminal logs its progress between chunks."""
    import time as time_lib

    tokenizer = load_tokenizer(spm_model)

    class SlowSteps(keras.callbacks.Callback):  # 50 ms a step: 10,000 steps would take 500 s
        def on_train_batch_end(self, batch, logs=None):
            time_lib.sleep(0.05)

    texts = LabelledTexts()
    for i, doc in enumerate(make_review_corpus(100)):
        texts.add(" ".join(doc), sentiment=i % 3)
    preprocessor = make_text_preprocessor(tokenizer, 32)
    model = OpinionClassifier(nano_backbone(tokenizer), num_sentiments=3, num_topics=0)
    compile_classifier(model, make_optimizer("adamw", 1e-3, 5, 10000), jit_compile=False)
    with caplog.at_level(logging.INFO, logger="opinionrec"):
        step = fit_resumable(
            model, lambda s, n: classification_dataset(texts, preprocessor, 8, 0, start_step=s,
                                                       num_steps=n),
            total_steps=10000, steps_per_checkpoint=10000, checkpoint_dir=tmp_path / "ckpt",
            log_dir=tmp_path / "logs", max_minutes=1.0, verbose=0, progress_seconds=0.5,
            extra_callbacks=[SlowSteps()], anneal_in_budget=True,
        )
    # Stopped inside the only chunk, at most 60 s / 50 ms = 1,200 steps in (a budget checked only
    # at the chunk's end would run all 10,000), and only once the minute had passed.
    assert step >= 1
    assert step <= 1201, f"ran {step} steps: the budget was not checked inside the chunk"
    last = read_history(tmp_path / "logs")[-1]
    assert last["step"] == step
    assert 60.0 <= last["wall_s"] < 60.0 + 30.0
    assert StepCheckpoint.restore(_fresh_classifier(tokenizer), tmp_path / "ckpt") == step
    assert "time budget of 1 min reached at step %d" % step in caplog.text
    progress = [r.getMessage() for r in caplog.records if "steps/s" in r.getMessage()]
    assert progress and progress[0].startswith("step ") and "/10000 (" in progress[0]
    assert "left (time budget)" in progress[0]  # the budget ends before the schedule
    # The decay ends with the budget, not at the 10,000 planned steps: the rate has annealed
    # (planned for 10,000 steps, it would still be 90% of its peak at step 1,000).
    assert last["learning_rate"] < 0.1 * 1e-3, last["learning_rate"]


def test_restore_without_checkpoint_starts_at_zero(spm_model, tmp_path):
    tokenizer = load_tokenizer(spm_model)
    assert StepCheckpoint.restore(_fresh_classifier(tokenizer), tmp_path / "nothing") == 0


def test_preset_round_trip_gives_identical_outputs(spm_model, tmp_path):
    tokenizer = load_tokenizer(spm_model)
    backbone = nano_backbone(tokenizer)
    backbone.save_to_preset(str(tmp_path / "preset"))
    tokenizer.save_to_preset(str(tmp_path / "preset"))

    loaded = keras_hub.models.AlbertBackbone.from_preset(str(tmp_path / "preset"))
    loaded_tokenizer = keras_hub.models.AlbertTokenizer.from_preset(str(tmp_path / "preset"))
    preprocessor = make_text_preprocessor(tokenizer, 24)
    x = preprocessor(tf.constant(["The battery life is excellent.", "电池很好"]))
    np.testing.assert_array_equal(
        np.asarray(tokenizer("Great sound, 电池很好")),
        np.asarray(loaded_tokenizer("Great sound, 电池很好")),
    )
    np.testing.assert_allclose(
        backbone(x)["sequence_output"].numpy(), loaded(x)["sequence_output"].numpy(), atol=1e-6
    )


def test_float32_copy_of_a_mixed_bfloat16_backbone_has_its_weights_in_float32():
    import numpy as np

    from albert_tf.configs import get_config
    from pipelines.pretrain import float32_copy

    config = get_config("nano", vocabulary_size=100)
    plain = config.build()
    assert float32_copy(plain) is plain
    mixed = config.build("mixed_bfloat16")
    twin = float32_copy(mixed)
    assert twin.dtype_policy.name == "float32" and mixed.dtype_policy.name == "mixed_bfloat16"
    for a, b in zip(mixed.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = {"token_ids": np.array([[2, 7, 9, 3, 0]]), "segment_ids": np.zeros([1, 5], "int32"),
         "padding_mask": np.array([[1, 1, 1, 1, 0]])}
    out_mixed = np.asarray(mixed(x)["sequence_output"], "float32")
    out_twin = np.asarray(twin(x)["sequence_output"])
    assert out_twin.dtype == np.float32
    np.testing.assert_allclose(out_twin, out_mixed, atol=0.1)  # bf16 has ~3 significant digits


def test_budgeted_runs_warm_up_over_a_few_steps_so_the_rate_reaches_its_peak():
    """Under --max-minutes a run ends long before its planned steps (82 of 10,000 in `run
    --minutes 20`): a warm-up of 10% of the plan would keep the rate at a fraction of its peak."""
    from albert_tf.training import BUDGET_WARMUP_STEPS, WarmupLinearDecay, warmup_steps_for

    assert warmup_steps_for(500, None) == warmup_steps_for(500, 0) == 500
    assert warmup_steps_for(500, 8.4) == BUDGET_WARMUP_STEPS
    assert warmup_steps_for(5, 8.4) == 5
    schedule = WarmupLinearDecay(1e-3, warmup_steps_for(1000, 8.4), 10_000)
    assert float(schedule(80)) > 0.99e-3  # at the step a budgeted run reaches, about the peak
    assert float(WarmupLinearDecay(1e-3, 1000, 10_000)(80)) < 0.1e-3  # the unbudgeted plan


def test_opinion_batches_are_trimmed_and_predictions_keep_the_input_order(spm_model):
    from albert_tf.classifier import predict_probabilities
    from albert_tf.text_tasks import token_lengths

    keras.utils.set_random_seed(0)  # before the tokenizer: reseeding resets its resource
    tokenizer = load_tokenizer(spm_model)
    texts = LabelledTexts()
    for i in range(64):
        texts.add("great " if i % 2 else "the battery died after a week and then " * 4,
                  sentiment=i % 3)
    preprocessor = make_text_preprocessor(tokenizer, 64)
    lengths = token_lengths(preprocessor, texts.texts)
    ds = classification_dataset(texts, preprocessor, 8, 0, num_steps=8, lengths=lengths)
    widths = sorted(int(x["token_ids"].shape[1]) for x, _, _ in ds)
    assert widths[0] == 16 and widths[-1] > 16  # short batches cut to 16, long ones wider
    model = OpinionClassifier(nano_backbone(tokenizer), num_sentiments=3, num_topics=0)
    probabilities = predict_probabilities(model, preprocessor, texts.texts)["sentiment"]
    padded = model.predict(preprocessor(tf.constant(texts.texts)), verbose=0)["sentiment"]
    np.testing.assert_allclose(probabilities, keras.ops.convert_to_numpy(
        keras.ops.softmax(padded)), atol=1e-5)
