"""`--strategy`: strategy names, TF_CONFIG checks, and a real two-worker training run."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from albert_tf.distribute import (
    STRATEGIES,
    any_worker,
    chief_dir,
    distribute_dataset_options,
    is_chief,
    jit_compile_for,
    make_strategy,
    parse_tf_config,
    sync_from_chief,
    worker_scratch_dir,
)
from tests.conftest import REPO_ROOT

WORKER_TIMEOUT_S = 300  # normally ~30 s; generous for a loaded machine


def test_make_strategy_names(monkeypatch):
    default = tf.distribute.get_strategy()
    assert make_strategy(None) is default and make_strategy("none") is default
    assert isinstance(make_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert STRATEGIES == ("none", "mirrored", "multi-worker")
    with pytest.raises(ValueError, match="none, mirrored, multi-worker"):
        make_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r"needs the TF_CONFIG.*\"cluster\": \{\"worker\""):
        make_strategy("multi-worker")


@pytest.mark.parametrize("raw, message", [
    ("", "needs the TF_CONFIG"),
    ("{cluster: 1}", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', 'no "cluster"'),
    ('{"cluster": {"worker": "h:1"}, "task": {"type": "worker", "index": 0}}',
     "non-empty list of"),
    ('{"cluster": {"worker": ["h:1"]}}', 'no "task"'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}',
     "not in the cluster"),
    ('{"cluster": {"worker": ["h:1", "h:2"]}, "task": {"type": "worker", "index": 2}}',
     "out of range"),
])
def test_tf_config_errors_say_what_it_must_hold(raw, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_tf_config(raw)
    assert '"task": {"type": "worker", "index": 0}' in str(error.value)  # the example


def test_single_worker_helpers(tmp_path):
    strategy = make_strategy("none")
    config = parse_tf_config(
        '{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, '
        '"task": {"type": "worker", "index": 1}}')
    assert config["task"]["index"] == 1
    assert is_chief(strategy)
    assert worker_scratch_dir(tmp_path / "logs", strategy) == tmp_path / "logs"
    with chief_dir(tmp_path / "ckpt", strategy) as path:
        assert path == tmp_path / "ckpt"
    assert jit_compile_for(strategy, True) and not jit_compile_for(strategy, False)
    # bf16 trains without XLA on a CPU (oneDNN's bf16 path), with it on a GPU.
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert jit_compile_for(strategy, True, "mixed_bfloat16") == has_gpu
    assert any_worker(True, strategy) and not any_worker(False, strategy)
    policy = distribute_dataset_options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    assert sync_from_chief(model, strategy) == 0 and model.optimizer.built


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _weights(path) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


@pytest.mark.slow
def test_two_workers_train_in_sync(spm_model, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env = {"PATH": os.environ.get("PATH", ""), "TF_CPP_MIN_LOG_LEVEL": "2",
           "TF_USE_LEGACY_KERAS": "1"}
    workers = []
    for index in range(2):
        out = tmp_path / f"worker{index}"
        out.mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        with open(out / "stderr.txt", "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.distribute_worker", "--spm-model", str(spm_model),
                 "--out", str(out), "--steps", "5", "--batch-size", "8", "--xla"],
                cwd=REPO_ROOT, env={**env, "TF_CONFIG": tf_config},
                stdout=subprocess.DEVNULL, stderr=stderr,
            )
        workers.append((proc, out))

    def stderr_tails() -> str:
        return "\n".join(f"--- worker {i} stderr:\n" + (out / "stderr.txt").read_text()[-3000:]
                         for i, (_, out) in enumerate(workers))

    try:
        for proc, _ in workers:
            proc.wait(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"workers still running after {WORKER_TIMEOUT_S} s\n{stderr_tails()}")
    finally:
        for proc, _ in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc, _ in workers] == [0, 0], stderr_tails()

    r0, r1 = (json.loads((out / "result.json").read_text()) for _, out in workers)
    assert (r0["chief"], r1["chief"]) == (True, False)
    for r in (r0, r1):
        assert r["replicas"] == 2 and r["step"] == 5
        assert r["jit_compile"] is False  # asked for XLA: off with several replicas
        assert r["synced_step"] == 3  # the chief's optimizer step, on both workers
        assert r["stop_votes"] == [True, False, True]  # any_worker: one vote is enough
    # Each worker got its half of every global batch: split, not duplicated.
    lengths = r0["first_batch_lengths"]["global"]
    assert r1["first_batch_lengths"]["global"] == lengths and len(lengths) == 8
    assert r0["first_batch_lengths"]["local"] == lengths[:4]
    assert r1["first_batch_lengths"]["local"] == lengths[4:]
    # Metrics are averaged over the workers, so both log the same values.
    assert r0["history"] == r1["history"]
    # The chief checkpoints into the real folder; worker 1's scratch folder is gone.
    assert (workers[0][1] / "checkpoints" / "final.weights.h5").exists()
    assert r1["checkpoint_dir"] != str(workers[1][1] / "checkpoints")
    assert not os.path.exists(r1["checkpoint_dir"])

    initial = [_weights(out / "initial.npz") for _, out in workers]
    final = [_weights(out / "final.npz") for _, out in workers]
    # Worker 1 shifted its weights by +1 before `sync_from_chief`: the chief's won.
    for a, b in zip(*initial):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(*final):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(initial[0], final[0]))
    assert moved > 1e-3, "training did not change the weights"
