"""ALBERT against its BERT equivalent on this machine: speed, memory, size and learning per minute.

The measurements `opinionrec compare` and `benchmarks/albert_vs_bert.py` share (Keras only):

- `matmul_peak_flops`: the machine's fp32 peak, from a chain of large `tf.matmul`s;
- `encoder_flops`: forward FLOPs of an encoder, to turn inference time into a fraction of that peak;
- `inference_throughput` / `train_step_throughput`: tokens/s of a forward pass and of training
  steps, as a plain `tf.function` graph or XLA-compiled (`jit_compile`), compile time apart;
- `checkpoint_megabytes`: size of the saved weights;
- `pretrain_for`: MLM + SOP pretraining on a workspace's `pretraining-data` instances for a
  wall-clock budget, with held-out MLM and SOP accuracy along the way (the learning curve).

Each variant runs in a fresh process (`run_isolated`: `python -m albert_tf.comparison TASK ...`),
so its peak RSS (`ru_maxrss`) and its TensorFlow state (thread pools, XLA caches, dtype policy)
are its own. MB here are 2^20 bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from albert_tf.configs import AlbertConfig

log = logging.getLogger("opinionrec")

# Evaluating a finite dataset of unknown length ends with Keras' "ran out of data" reminder.
warnings.filterwarnings("ignore", message="Your input ran out of data")

KINDS = ("albert", "bert")
DTYPES = ("float32", "mixed_bfloat16")
MB = 2**20
REPO_ROOT = Path(__file__).resolve().parents[1]


def build_backbone(kind: str, config: AlbertConfig, dtype: str = "float32"):
    """`config.build()` for "albert", `config.bert_equivalent()` for "bert", in `dtype`."""
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: {kind!r}")
    if dtype not in DTYPES:
        raise ValueError(f"`dtype` must be one of {DTYPES}. Received: {dtype!r}")
    policy = None if dtype == "float32" else dtype
    return config.build(policy) if kind == "albert" else config.bert_equivalent(policy)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports `ru_maxrss` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# === Peak and FLOPs ===


def matmul_peak_flops(size: int = 2048, chain: int = 8, repeats: int = 5) -> dict[str, Any]:
    """fp32 FLOP/s of this machine: a chain of `chain` `size x size` matmuls in one tf.function.

    Measured as a plain graph and XLA-compiled (one warm-up call each, then the median of
    `repeats` calls); `flops` is the better of the two. Each call does `chain * 2 * size^3` FLOPs.
    """
    import tensorflow as tf

    scale = size**-0.5  # keeps the chained products near unit scale
    x = tf.random.normal([size, size], seed=1) * scale
    weights = tf.random.normal([chain, size, size], seed=2) * scale

    def body(x, weights):
        for i in range(chain):
            x = tf.matmul(x, weights[i])
        return tf.reduce_sum(x)

    flops_per_call = chain * 2 * size**3
    out: dict[str, Any] = {}
    for name, jit in (("graph", False), ("xla", True)):
        fn = tf.function(body, jit_compile=jit)
        fn(x, weights).numpy()
        seconds = _median_seconds(lambda: fn(x, weights).numpy(), repeats)
        out[f"{name}_flops"] = flops_per_call / seconds
    out["flops"] = max(out["graph_flops"], out["xla_flops"])
    out["method"] = (f"chain of {chain} fp32 {size}x{size} tf.matmul in one tf.function, "
                     f"median of {repeats} calls after a warm-up, graph and jit_compile; the max")
    return out


def encoder_flops(config: AlbertConfig, batch: int, seq_len: int, kind: str = "albert") -> int:
    """Forward FLOPs of the encoder on `batch x seq_len` tokens: 2 x MACs of every dense layer
    (attention projections, FFN, ALBERT's E -> H projection, pooler) plus the attention score
    (QK^T) and context (AV) matmuls. Embedding lookups, softmax and LayerNorms are left out.

    ALBERT shares weights, not compute: it runs `num_layers x num_inner_repetitions` layer calls.
    """
    h, i, n = config.hidden_dim, config.intermediate_dim, seq_len
    per_token_layer = 2 * (4 * h * h + 2 * h * i) + 2 * 2 * n * h  # dense + scores and context
    if kind == "albert":
        calls = config.num_layers * config.num_inner_repetitions
        per_token = calls * per_token_layer + 2 * config.embedding_dim * h
    elif kind == "bert":
        per_token = config.num_layers * per_token_layer
    else:
        raise ValueError(f"`kind` must be one of {KINDS}. Received: {kind!r}")
    return batch * n * per_token + batch * 2 * h * h


# === Speed ===


def train_on_batch(model, x, y, weights) -> None:
    """One training step on a batch with dict labels and weights.

    keras-hub's `Task.train_on_batch` converts `y` and `sample_weight` to one tensor, which
    fails on the pretrainer's `{"mlm", "sop"}` dicts; Keras' own `train_on_batch` takes them
    (the pretrainer has no preprocessor to apply)."""
    import keras
    import tensorflow as tf

    x, y, weights = tf.nest.map_structure(tf.convert_to_tensor, (x, y, weights))
    keras.Model.train_on_batch(model, x, y, sample_weight=weights)


def synthetic_batch(vocabulary_size: int, batch: int, seq_len: int, masks: int | None = None,
                    seed: int = 0) -> tuple[dict, dict, dict]:
    """A full-length pretraining batch `(x, y, weights)` of random tokens: two segments, no
    padding, `masks` masked positions per row (default 15%) and SOP labels."""
    import numpy as np

    from albert_tf.pretraining import mask_selection_length

    rng = np.random.default_rng(seed)
    masks = masks or mask_selection_length(seq_len)
    segment_ids = np.zeros([batch, seq_len], np.int32)
    segment_ids[:, seq_len // 2 :] = 1
    positions = np.sort(np.stack([rng.choice(np.arange(1, seq_len), masks, replace=False)
                                  for _ in range(batch)]), axis=1).astype(np.int32)
    x = {
        "token_ids": rng.integers(5, vocabulary_size, [batch, seq_len], dtype=np.int32),
        "segment_ids": segment_ids,
        "padding_mask": np.ones([batch, seq_len], np.int32),
        "mask_positions": positions,
    }
    y = {"mlm": rng.integers(5, vocabulary_size, [batch, masks], dtype=np.int32),
         "sop": rng.integers(0, 2, [batch], dtype=np.int32)}
    weights = {"mlm": np.ones([batch, masks], np.float32), "sop": np.ones([batch], np.float32)}
    return x, y, weights


def inference_throughput(backbone, batch: int = 32, seq_len: int = 128, jit_compile: bool = True,
                         repeats: int = 5) -> dict[str, float]:
    """Median tokens/s of the backbone's forward pass as `tf.function(jit_compile=...)`, on
    full-length random batches; `first_call_s` is the first call (tracing, plus XLA compilation
    with jit) and `compile_s` what it took beyond a steady call."""
    import tensorflow as tf

    x, _, _ = synthetic_batch(backbone.vocabulary_size, batch, seq_len)
    x = {k: tf.constant(v) for k, v in x.items() if k != "mask_positions"}

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        out = backbone(x, training=False)
        return tf.reduce_sum(tf.cast(out["sequence_output"], "float32")) + tf.reduce_sum(
            tf.cast(out["pooled_output"], "float32"))

    start = time.perf_counter()
    forward(x).numpy()
    first = time.perf_counter() - start
    seconds = _median_seconds(lambda: forward(x).numpy(), repeats)
    return {"tokens_per_s": batch * seq_len / seconds, "median_s": seconds,
            "first_call_s": first, "compile_s": max(0.0, first - seconds)}


def train_step_throughput(pretrainer, batches: list, jit_compile: bool = True,
                          learning_rate: float = 1e-4) -> dict[str, float]:
    """Tokens/s (token slots of `x["token_ids"]`) of training steps on `batches`, median over the
    steps after the first; the first step (tracing, XLA compilation) is `compile_s`.

    Compiles `pretrainer` afresh (AdamW, `compile_pretrainer`), so its optimizer state restarts.
    """
    from albert_tf.pretraining import compile_pretrainer
    from albert_tf.training import make_optimizer

    if len(batches) < 2:
        raise ValueError("`batches` needs at least 2 batches: one to compile, one to time.")
    optimizer = make_optimizer("adamw", learning_rate, 0, 10**9)
    compile_pretrainer(pretrainer, optimizer, jit_compile=jit_compile)
    times = []
    for x, y, weights in batches:
        start = time.perf_counter()
        train_on_batch(pretrainer, x, y, weights)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times[1:])
    tokens = int(batches[0][0]["token_ids"].shape[0] * batches[0][0]["token_ids"].shape[1])
    return {"tokens_per_s": tokens / seconds, "median_step_s": seconds,
            "compile_s": max(0.0, times[0] - seconds), "steps": len(times) - 1}


def checkpoint_megabytes(backbone) -> float:
    """Size of the backbone's weights saved as `.weights.h5`, in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backbone.weights.h5"
        backbone.save_weights(path)
        return path.stat().st_size / MB


def speed_profile(kind: str, config: AlbertConfig, batch: int = 32, seq_len: int = 128,
                  dtype: str = "float32", jit_modes: tuple[bool, ...] = (False, True),
                  repeats: int = 5, train_steps: int = 4, seed: int = 0) -> dict[str, Any]:
    """Size and speed of one variant at `batch x seq_len`: built parameter counts, checkpoint MB,
    and inference and training tokens/s for each of `jit_modes` (keys "xla" and "graph")."""
    import keras

    from albert_tf.pretraining import AlbertPretrainer

    keras.utils.set_random_seed(seed)
    backbone = build_backbone(kind, config, dtype)
    out: dict[str, Any] = {
        "kind": kind, "dtype": dtype, "batch": batch, "sequence_length": seq_len,
        "params": backbone.count_params(),
        "token_embedding_params": backbone.token_embedding.count_params(),
        "checkpoint_mb": checkpoint_megabytes(backbone),
        "inference": {}, "training": {},
    }
    for jit in jit_modes:
        mode = "xla" if jit else "graph"
        log.info("speed: %s %s inference, %s", kind, dtype, mode)
        out["inference"][mode] = inference_throughput(backbone, batch, seq_len, jit, repeats)
    pretrainer = AlbertPretrainer(backbone)
    batches = [synthetic_batch(config.vocabulary_size, batch, seq_len, seed=seed + i)
               for i in range(train_steps + 1)]
    for jit in jit_modes:
        mode = "xla" if jit else "graph"
        log.info("speed: %s %s training, %s", kind, dtype, mode)
        out["training"][mode] = train_step_throughput(pretrainer, batches, jit)
    return out


def preset_profile(preset: str, batch: int = 32, seq_len: int = 128, dtype: str = "float32",
                   jit_modes: tuple[bool, ...] = (False, True), repeats: int = 5) -> dict[str, Any]:
    """Size and inference speed of a pretrained backbone read from a preset folder (keras-hub or
    Hugging Face): parameters, checkpoint MB and tokens/s per mode, in `dtype`."""
    import keras_hub

    backbone = keras_hub.models.Backbone.from_preset(str(preset), dtype=dtype)
    out: dict[str, Any] = {
        "preset": str(preset), "class": type(backbone).__name__, "dtype": dtype,
        "batch": batch, "sequence_length": seq_len, "params": backbone.count_params(),
        "token_embedding_params": backbone.token_embedding.count_params(),
        "checkpoint_mb": checkpoint_megabytes(backbone), "inference": {},
    }
    for jit in jit_modes:
        mode = "xla" if jit else "graph"
        log.info("speed: %s %s inference, %s", preset, dtype, mode)
        out["inference"][mode] = inference_throughput(backbone, batch, seq_len, jit, repeats)
    return out


def encoder_profile(preset: str | Path, batch: int = 32, seq_len: int = 128,
                    repeats: int = 5) -> dict[str, Any]:
    """One encoder preset's size, float32 (graph and XLA) and mixed_bfloat16 (graph) inference
    speed and peak RSS, each dtype measured in its own process."""
    f32 = run_isolated("preset", preset=str(preset), batch=batch, seq_len=seq_len,
                       dtype="float32", jit_modes=[False, True], repeats=repeats)
    bf16 = run_isolated("preset", preset=str(preset), batch=batch, seq_len=seq_len,
                        dtype="mixed_bfloat16", jit_modes=[False], repeats=repeats)
    return {"preset": str(preset), "class": f32["class"], "params": f32["params"],
            "token_embedding_params": f32["token_embedding_params"],
            "checkpoint_mb": round(f32["checkpoint_mb"], 1),
            "tokens_per_s": {"float32_graph": f32["inference"]["graph"]["tokens_per_s"],
                             "float32_xla": f32["inference"]["xla"]["tokens_per_s"],
                             "bf16_graph": bf16["inference"]["graph"]["tokens_per_s"]},
            "xla_compile_s": f32["inference"]["xla"]["compile_s"],
            "peak_rss_mb": round(f32["peak_rss_mb"], 0)}


# === Learning in a time budget ===


def _fmt(accuracy: float | None) -> str:
    return "n/a" if accuracy is None else f"{accuracy:.3f}"


def _evaluate(pretrainer, eval_ds, has_pairs: bool = True) -> tuple[float, float | None]:
    """Held-out (MLM, SOP) accuracy; SOP is None when no held-out instance is a pair."""
    scores = pretrainer.evaluate(eval_ds, return_dict=True, verbose=0)
    return float(scores["mlm_accuracy"]), float(scores["sop_accuracy"]) if has_pairs else None


def pretrain_for(
    backbone_kind: str,
    config: AlbertConfig,
    instances_dir: str | Path,
    minutes: float,
    batch_size: int = 32,
    sequence_length: int | None = None,
    dtype: str = "float32",
    jit_compile: bool | None = None,
    eval_every_s: float | None = None,
    eval_instances: int = 2000,
    learning_rate: float = 1e-3,
    warmup_steps: int = 100,
    batching: str = "bucketed",
    seed: int = 0,
    mask_rate: float = 0.15,
) -> dict[str, Any]:
    """Pretrain (MLM + SOP, as `opinionrec pretrain` does) for `minutes` of training time.

    Reads `<instances_dir>` (a `pretraining-data` folder) and trains an `AlbertPretrainer` on
    `backbone_kind`'s backbone with AdamW, a linear warm-up over `warmup_steps`, then a constant
    `learning_rate` (no decay: the number of steps is whatever fits the budget). Batches are
    `batching` "bucketed" (by length, `batch_size x sequence_length` token slots, dynamic SOP
    swaps) or "padded"; training masks `mask_rate` of the tokens. Held-out MLM and SOP accuracy
    (the first `eval_instances` validation instances, 15% masked, the same masks every time) are
    measured at step 0, every `eval_every_s` seconds
    of training (default: a tenth of the budget) and at the end. Neither evaluation nor
    compiling steps (tracing and XLA compilation: the first step of each batch shape, and any
    step 10x slower than the median, `compile_seconds`) are charged to the budget, so XLA and
    graph variants get the same time to learn. `jit_compile` defaults to XLA for float32 and
    off for mixed_bfloat16 (oneDNN's bf16 kernels were the fast path on CPU without XLA).

    Returns the curve `[[seconds, step, mlm_accuracy, sop_accuracy], ...]`, the final held-out
    accuracies, steps, real tokens trained on and training tokens/s (real tokens).
    """
    import keras
    import numpy as np

    from albert_tf.instances import load_instances, pretraining_batches, read_schema
    from albert_tf.pretraining import NO_SOP_LABEL, AlbertPretrainer, compile_pretrainer
    from albert_tf.training import make_optimizer

    jit = (dtype == "float32") if jit_compile is None else jit_compile
    budget = minutes * 60.0
    eval_every = eval_every_s if eval_every_s else max(budget / 10, 1.0)
    schema = read_schema(instances_dir)
    sequence_length = sequence_length or schema["sequence_length"]
    if sequence_length < schema["sequence_length"]:
        raise ValueError(f"`sequence_length` {sequence_length} is shorter than the instances "
                         f"({schema['sequence_length']})")
    config = config.replace(vocabulary_size=schema["vocabulary_size"],
                            max_sequence_length=max(config.max_sequence_length, sequence_length))

    keras.utils.set_random_seed(seed)
    train = load_instances(instances_dir, "train")
    held_out = load_instances(instances_dir, "validation")
    held_out = held_out.take(min(len(held_out), eval_instances))
    if not len(train) or not len(held_out):
        raise ValueError(f"{instances_dir}: needs training and validation instances "
                         f"({len(train)} and {len(held_out)})")
    has_pairs = bool(np.any(held_out.sop_label != NO_SOP_LABEL))
    if not has_pairs:
        log.warning("pretrain_for: no held-out instance has two segments; SOP accuracy is None")
    chunk = 500  # steps per planned stretch of batches; the next stretch continues the plan
    batches = pretraining_batches(train, held_out, schema, batching, batch_size,
                                  sequence_length, seed=seed, mask_rate=mask_rate)
    stretch = functools.partial(batches.train, num_steps=chunk)
    eval_ds = batches.held_out

    backbone = build_backbone(backbone_kind, config, dtype)
    pretrainer = AlbertPretrainer(backbone)
    compile_pretrainer(pretrainer, make_optimizer("adamw", learning_rate, warmup_steps, 10**9),
                       jit_compile=jit)
    log.info("pretrain_for: %s %s, %d parameters, XLA %s, %.1f min on %d instances (%s)",
             backbone_kind, dtype, backbone.count_params(), "on" if jit else "off", minutes,
             len(train), batching)

    eval_seconds = time.perf_counter()
    curve = [[0.0, 0, *_evaluate(pretrainer, eval_ds, has_pairs)]]
    eval_seconds = time.perf_counter() - eval_seconds
    trained = 0.0  # seconds of training charged to the budget
    compile_seconds = 0.0  # first steps of each batch shape (tracing, XLA), not charged
    shapes: set[tuple[int, ...]] = set()
    recent: list[float] = []  # charged step times
    step = 0
    tokens = charged_tokens = 0
    next_eval = eval_every
    wall_start = time.perf_counter()
    iterator = iter(stretch(0))
    while trained < budget:
        try:
            x, y, weights = next(iterator)
        except StopIteration:
            iterator = iter(stretch(step))
            continue
        shape = tuple(x["token_ids"].shape) + tuple(x["mask_positions"].shape)
        start = time.perf_counter()
        train_on_batch(pretrainer, x, y, weights)
        seconds = time.perf_counter() - start
        real_tokens = int(np.sum(x["padding_mask"]))
        # Keras retraces with relaxed shapes once it has seen two, and XLA then compiles each
        # shape again: a step 10x slower than usual is compiling too.
        usual = statistics.median(recent[-50:]) if len(recent) >= 3 else None
        if shape in shapes and (usual is None or seconds < 10 * usual):
            trained += seconds
            charged_tokens += real_tokens
            recent.append(seconds)
        else:
            shapes.add(shape)
            compile_seconds += seconds
        step += 1
        tokens += real_tokens
        if trained >= next_eval and trained < budget:
            start = time.perf_counter()
            scores = _evaluate(pretrainer, eval_ds, has_pairs)
            curve.append([round(trained, 2), step, *scores])
            eval_seconds += time.perf_counter() - start
            log.info("pretrain_for: %s %s %.0f s, step %d: held-out MLM %.3f, SOP %s",
                     backbone_kind, dtype, trained, step, curve[-1][2], _fmt(curve[-1][3]))
            next_eval += eval_every
    start = time.perf_counter()
    mlm, sop = _evaluate(pretrainer, eval_ds, has_pairs)
    eval_seconds += time.perf_counter() - start
    curve.append([round(trained, 2), step, mlm, sop])
    log.info("pretrain_for: %s %s done: %d steps in %.0f s; held-out MLM %.3f, SOP %s",
             backbone_kind, dtype, step, trained, mlm, _fmt(sop))
    return {
        "kind": backbone_kind, "dtype": dtype, "jit_compile": jit, "batching": batching,
        "batch_tokens": batches.batch_tokens, "buckets": batches.buckets,
        "minutes": minutes, "train_seconds": round(trained, 2),
        "wall_seconds": round(time.perf_counter() - wall_start, 2),
        "eval_seconds": round(eval_seconds, 2), "compile_seconds": round(compile_seconds, 2),
        "steps": step, "tokens": tokens,
        "tokens_per_s": charged_tokens / trained if trained else 0.0,
        "mlm_accuracy": mlm, "sop_accuracy": sop, "curve": curve,
        "params": backbone.count_params(), "train_instances": len(train),
        "held_out_instances": len(held_out), "learning_rate": learning_rate,
        "mask_rate": mask_rate,
    }


# === One variant per process ===

TASKS = {
    "peak": matmul_peak_flops,
    "speed": speed_profile,
    "preset": preset_profile,
    "pretrain": pretrain_for,
}


def run_isolated(task: str, **kwargs) -> dict[str, Any]:
    """Run `TASKS[task](**kwargs)` in a fresh Python process; its result plus `peak_rss_mb`.

    An `AlbertConfig` argument travels as its fields. The child's log lines go to this
    process's stderr; a failure raises `RuntimeError` with the child's exit code.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {sorted(TASKS)}. Received: {task!r}")
    payload = {k: ({"__config__": dataclasses.asdict(v)} if isinstance(v, AlbertConfig) else v)
               for k, v in kwargs.items()}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "albert_tf.comparison", task,
                   "--kwargs", json.dumps(payload, default=str), "--out", str(out)]
        code = subprocess.run(command, env=env).returncode
        if code or not out.exists():
            raise RuntimeError(f"comparison task {task!r} ({kwargs.get('kind') or ''}"
                               f"{kwargs.get('backbone_kind') or ''}) failed with exit code {code}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    """Child-process entry point of `run_isolated`: one task, result JSON to `--out`."""
    parser = argparse.ArgumentParser(
        prog="python -m albert_tf.comparison",
        description="Run one comparison measurement in this process and write its result as "
        "JSON (used by `opinionrec compare` so that every variant gets a fresh process).")
    parser.add_argument("task", choices=sorted(TASKS), help="what to measure")
    parser.add_argument("--kwargs", default="{}", help="the task's keyword arguments, as JSON")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kwargs = {k: (AlbertConfig(**v["__config__"]) if isinstance(v, dict) and "__config__" in v
                  else v) for k, v in json.loads(args.kwargs).items()}
    if "jit_modes" in kwargs:
        kwargs["jit_modes"] = tuple(kwargs["jit_modes"])
    result = TASKS[args.task](**kwargs)
    result["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
