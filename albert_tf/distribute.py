"""Data-parallel training with tf.distribute: one machine's devices, or several machines.

`make_strategy(name)` picks the strategy. The model must be built and compiled inside
`strategy.scope()`; `fit` then splits every global batch across the replicas (datasets get
`distribute_dataset_options()`) and all-reduces the gradients, so `--batch-size` stays the global
batch and the learning-rate schedule needs no change.

Under `MultiWorkerMirroredStrategy` every machine runs the same command with its own `TF_CONFIG`.
Each step is a collective every worker must join, so the workers must make the same calls in the
same order: the same number of steps (`any_worker` to agree on stopping early), the same start
step on resumption (`sync_from_chief`), the same `evaluate` calls. Only the chief writes
checkpoints, logs and presets (`is_chief`); the others write to a throw-away folder
(`worker_scratch_dir`), as in the Keras multi-worker guide, or skip writing: saving weights
involves no collective, so the chief may save alone. But save and load weights outside
`strategy.scope()`: Keras' (de)serializer creates a throw-away optimizer, and a variable created
in the scope is a broadcast that every worker must join (only the optimizer's `build` belongs in
the scope).

Two limits, measured with TF 2.21 / Keras 3.15 on CPU:
- XLA: a `jit_compile` step cannot hold the cross-worker collectives ("No registered
  'CollectiveGatherV2' OpKernel for XLA_CPU_JIT") nor variables on several local devices, so
  `jit_compile_for` turns it off whenever there is more than one replica (Keras' own
  `jit_compile="auto"` does the same under tf.distribute).
- Keras 3 bugs stop `fit` with more than one replica; `patch_keras_for_distribution` works around
  them and `make_strategy` applies it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import tensorflow as tf

log = logging.getLogger("opinionrec")

STRATEGIES = ("none", "mirrored", "multi-worker")

TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def parse_tf_config(raw: str | None = None) -> dict:
    """The `TF_CONFIG` of a multi-worker run, checked; ValueError saying what it must hold.

    `raw` defaults to the `TF_CONFIG` environment variable.
    """
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    hint = (f"set TF_CONFIG on every machine to the cluster and that machine's task, e.g. "
            f"TF_CONFIG='{TF_CONFIG_EXAMPLE}' (the same cluster list everywhere; task index 0 on "
            "the chief, 1 on the next machine, ...)")
    if not raw or not raw.strip():
        raise ValueError(f"--strategy multi-worker needs the TF_CONFIG environment variable: "
                         f"{hint}")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {hint}") from None
    if not isinstance(config, Mapping):
        raise ValueError(f"TF_CONFIG must be a JSON object: {hint}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, Mapping) or not cluster:
        raise ValueError(f'TF_CONFIG has no "cluster" of "host:port" lists: {hint}')
    for task_type, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ValueError(f'TF_CONFIG cluster["{task_type}"] must be a non-empty list of '
                             f'"host:port" strings. Received: {addresses!r}; {hint}')
    if not isinstance(task, Mapping) or "type" not in task or "index" not in task:
        raise ValueError(f'TF_CONFIG has no "task" with a "type" and an "index": {hint}')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not in the cluster "
                         f"({', '.join(cluster)}): {hint}")
    if isinstance(index, bool) or not isinstance(index, int) or \
            not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index {index!r} is out of range for the "
                         f"{len(cluster[task_type])} {task_type!r} addresses: {hint}")
    return dict(config)


def make_strategy(name: str | None) -> tf.distribute.Strategy:
    """The strategy for `--strategy`: none (the default), mirrored or multi-worker.

    - none: TensorFlow's default strategy (one device, plain `fit`);
    - mirrored: `MirroredStrategy` over this machine's GPUs (the CPU when there are none),
      gradients all-reduced in memory;
    - multi-worker: `MultiWorkerMirroredStrategy` over the machines of `TF_CONFIG`, gradients
      all-reduced with ring collectives over gRPC (CPU-only machines and loopback work; with GPUs,
      AUTO picks NCCL).

    Create it first thing, before other TensorFlow calls: multi-worker sets up the cluster.
    """
    name = (name or "none").lower()
    if name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        patch_keras_for_distribution()
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        parse_tf_config()
        implementation = tf.distribute.experimental.CommunicationImplementation
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=implementation.AUTO if tf.config.list_physical_devices("GPU")
            else implementation.RING
        )
        patch_keras_for_distribution()
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}. Received: {name!r}")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans more than one worker process."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and \
        strategy.extended._in_multi_worker_mode()


def task_of(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None]:
    """This process's (task type, index) in the cluster; (None, None) on a single worker."""
    if not is_multi_worker(strategy):
        return None, None
    resolver = strategy.cluster_resolver
    return resolver.task_type, resolver.task_id


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints, logs and presets: always on a single worker;
    in a cluster, the "chief" task, or worker 0 when the cluster names no chief."""
    task_type, task_id = task_of(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def worker_scratch_dir(base: Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this worker writes what `base` would hold: `base` itself on the chief, a fresh
    temporary folder on the others (delete it when done, or use `chief_dir`)."""
    if is_chief(strategy):
        return Path(base)
    task_type, task_id = task_of(strategy)
    return Path(tempfile.mkdtemp(prefix=f"opinionrec-{task_type}{task_id}-{Path(base).name}-"))


@contextmanager
def chief_dir(base: Path, strategy: tf.distribute.Strategy) -> Iterator[Path]:
    """`worker_scratch_dir` as a context: a non-chief worker's folder is deleted on exit."""
    path = worker_scratch_dir(base, strategy)
    try:
        yield path
    finally:
        if path != Path(base):
            shutil.rmtree(path, ignore_errors=True)


def jit_compile_for(strategy: tf.distribute.Strategy, requested: bool,
                    dtype: str = "float32") -> bool:
    """`requested`, unless the strategy has several replicas, which XLA cannot compile for, or
    `dtype` is mixed_bfloat16 without a GPU: XLA:CPU's bf16 matmuls are slower than oneDNN's."""
    if requested and strategy.num_replicas_in_sync > 1:
        log.info("XLA off: a jit-compiled step cannot hold the all-reduce of %d replicas",
                 strategy.num_replicas_in_sync)
        return False
    if requested and dtype == "mixed_bfloat16" and not tf.config.list_physical_devices("GPU"):
        log.info("XLA off: on a CPU, oneDNN's bf16 kernels outrun XLA's")
        return False
    return requested


def distribute_dataset_options() -> tf.data.Options:
    """tf.data options for a training or evaluation dataset that `fit` distributes.

    Our datasets come from in-memory tensors (`from_tensor_slices`), so there are no files to
    shard by. DATA sharding makes every worker build the same global batches (their order is a pure
    function of seed and step) and keep only its replicas' slices of each: a global batch of B rows
    is split into B / replicas rows per replica (also for the length buckets' varying batch sizes),
    never duplicated. (AUTO would fall back to DATA too, with a warning.)
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def with_distribute_options(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` with `distribute_dataset_options()`; harmless without a strategy."""
    return dataset.with_options(distribute_dataset_options())


def any_worker(flag: bool, strategy: tf.distribute.Strategy) -> bool:
    """True on every worker if `flag` is true on any: a collective, so call it on all workers at
    the same point (e.g. to stop at the same chunk boundary when one worker's time is up)."""
    if not is_multi_worker(strategy):
        return flag

    @tf.function
    def total(value):
        return strategy.reduce("SUM", strategy.run(tf.identity, args=(value,)), axis=None)

    return bool(total(tf.constant(1.0 if flag else 0.0)).numpy() > 0)


def sync_from_chief(model, strategy: tf.distribute.Strategy) -> int:
    """Copy the chief's weights and optimizer state (hence its step) to every worker; return
    the step. A collective: every worker calls it, e.g. right after restoring a checkpoint, so
    that workers that could not read the chief's checkpoint folder resume from the same state.

    Builds the optimizer (in the scope) where restoring did not; restore outside the scope."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        with strategy.scope():
            optimizer.build(model.trainable_variables)
    if not is_multi_worker(strategy):
        return int(optimizer.iterations.numpy()) if optimizer is not None else 0
    variables = list(model.weights) + (list(optimizer.variables) if optimizer else [])
    variables = [v for v in variables
                 if v.dtype in ("float16", "bfloat16", "float32", "float64", "int32", "int64")]
    values = [v.value for v in variables]

    @tf.function
    def from_first_replica():
        def replica_fn():
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)  # the chief's replica
            mine = [tf.where(first, tf.identity(v), tf.zeros_like(v)) for v in values]
            out = list(mine)
            # all_reduce packs one dtype at a time; the same order on every worker
            for dtype in sorted({m.dtype for m in mine}, key=lambda d: d.name):
                index = [i for i, m in enumerate(mine) if m.dtype == dtype]
                for i, reduced in zip(index, context.all_reduce("SUM", [mine[i] for i in index])):
                    out[i] = reduced
            return out

        return strategy.run(replica_fn)

    synced = from_first_replica()
    for variable, value in zip(variables, synced):
        variable.assign(strategy.experimental_local_results(value)[0])
    return int(optimizer.iterations.numpy()) if optimizer is not None else 0


_PATCHED = False


def patch_keras_for_distribution() -> None:
    """Work around Keras 3 bugs that stop `fit` / `evaluate` with more than one replica.

    Both sit in `keras.src.backend.tensorflow.trainer` (keras-team/keras#20329, #20585,
    #21069; tensorflow/tensorflow#72388):

    - before the first step Keras reduces a whole input batch across the replicas just to learn
      its shapes; `strategy.reduce` rejects a dict of inputs across workers and boolean inputs
      (our padding mask) across local devices. One replica's batch has the same shapes and
      dtypes, so that is used instead (no communication);
    - across workers the step's metric results, scalars, go through
      `strategy.reduce("MEAN", v, axis=0)`, which rejects rank 0; scalars are averaged over the
      replicas with `axis=None` instead, so every worker logs the same values.

    Idempotent; one replica (the default strategy) takes Keras' own code paths unchanged.
    """
    global _PATCHED
    if _PATCHED:
        return
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not hasattr(tf_trainer, "reduce_per_replica") or \
            not hasattr(tf_trainer.TensorFlowTrainer, "_maybe_symbolic_build"):
        log.warning("this Keras has no reduce_per_replica / _maybe_symbolic_build to patch; "
                    "training with several replicas may fail")
        _PATCHED = True
        return
    original_reduce = tf_trainer.reduce_per_replica
    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):
            def mean(v):
                first = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
                return strategy.reduce("MEAN", v, axis=None if first.shape.rank == 0 else 0)

            return tree.map_structure(mean, values)
        return original_reduce(values, strategy, reduction)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or strategy.num_replicas_in_sync == 1:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues) else v,
                next(it),
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    _PATCHED = True
