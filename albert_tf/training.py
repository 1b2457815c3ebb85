"""Training plumbing shared by pretraining and fine-tuning: schedule, resumable checkpoints, logs.

Training runs as `fit` over "epochs" of `steps_per_checkpoint` steps each. After every such chunk
the full state (weights and optimizer, hence the step and the learning-rate schedule position) is
saved; a restarted run restores the newest checkpoint, and the data pipeline, which is a pure
function of (seed, step), continues from that step.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import keras
import tensorflow as tf

log = logging.getLogger("opinionrec")

# Our datasets are ordered on purpose (a pure function of seed and step, for exact resumption);
# Keras' reminder that it does not shuffle a tf.data.Dataset is noise here.
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")

CHECKPOINT_STATE = "checkpoint.json"


# Under a time budget a run rarely reaches its planned steps (on 2 cores `run --minutes 20` fits
# 70-90 of them), so a warm-up sized as a share of the plan would never finish: the learning rate
# then stays a fraction of its peak for the whole run (pretrain: 82 of 500 warm-up steps, MLM loss
# 9.20 -> 8.79). Budgeted runs warm up over at most this many steps.
BUDGET_WARMUP_STEPS = 20


def warmup_steps_for(planned_warmup: int, max_minutes: float | None) -> int:
    """The warm-up to use: `planned_warmup`, capped at `BUDGET_WARMUP_STEPS` under a budget."""
    return planned_warmup if not max_minutes else min(planned_warmup, BUDGET_WARMUP_STEPS)


@keras.saving.register_keras_serializable(package="albert_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak_learning_rate`, then linear decay to zero at `total_steps`.

    The end of the decay is a variable (`decay_end`): under a time budget `BudgetedDecay` moves
    it to the step the budget will actually reach, so the rate anneals to zero by the end.
    """

    def __init__(self, peak_learning_rate: float, warmup_steps: int, total_steps: int):
        self.peak_learning_rate = peak_learning_rate
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay_end = tf.Variable(float(max(total_steps, warmup_steps + 1)), trainable=False,
                                     dtype=tf.float32, name="decay_end")

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.cast(max(self.warmup_steps, 1), "float32")
        total = keras.ops.maximum(keras.ops.cast(self.decay_end, "float32"),
                                  float(self.warmup_steps + 1))
        rise = step / warmup
        fall = keras.ops.maximum(0.0, (total - step) / (total - warmup))
        return self.peak_learning_rate * keras.ops.where(step < warmup, rise, fall)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def make_optimizer(
    name: str,
    learning_rate: float,
    warmup_steps: int,
    total_steps: int,
    weight_decay: float = 0.01,
    clipnorm: float | None = 1.0,
) -> keras.optimizers.Optimizer:
    """AdamW or LAMB with warm-up + linear decay; no weight decay on biases and LayerNorms."""
    schedule = WarmupLinearDecay(learning_rate, warmup_steps, total_steps)
    if name == "adamw":
        optimizer = keras.optimizers.AdamW(
            schedule, weight_decay=weight_decay, epsilon=1e-6, clipnorm=clipnorm
        )
    elif name == "lamb":
        optimizer = keras.optimizers.Lamb(schedule, weight_decay=weight_decay, epsilon=1e-6)
    else:
        raise ValueError(f"`optimizer` must be 'adamw' or 'lamb'. Received: {name!r}")
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def _with_optimizer(model: keras.Model, skip: Sequence[object]) -> list[object]:
    optimizer = getattr(model, "optimizer", None)
    return [*skip, *([optimizer] if optimizer is not None else [])]


def save_inference_weights(model: keras.Model, path: str | Path,
                           skip: Sequence[object] = ()) -> None:
    """`model`'s weights without its optimizer's state (and without `skip`).

    `model.save_weights` keeps the optimizer's moments too: a file three times the weights. A
    kept or exported model needs only the weights; resuming reads `StepCheckpoint`'s files.
    """
    keras.saving.save_weights(model, path, objects_to_skip=_with_optimizer(model, skip))


def load_inference_weights(model: keras.Model, path: str | Path,
                           skip: Sequence[object] = ()) -> None:
    """Weights written by `save_inference_weights` (or with optimizer state, which is ignored)
    into `model`, compiled or not: its optimizer is left alone, so Keras has nothing to warn of."""
    keras.saving.load_weights(model, path, objects_to_skip=_with_optimizer(model, skip))


class WeightsOnlyTask:
    """Mixin for keras-hub tasks: the `task.weights.h5` that `save_to_preset` writes and
    `from_preset` reads holds the head's weights alone. keras-hub's own also keeps the optimizer's
    moments of the whole model (181 MB beside the teacher's 91 MB of weights) and warns on load."""

    def save_task_weights(self, filepath: str | Path) -> None:
        save_inference_weights(self, filepath, skip=[self.backbone])

    def load_task_weights(self, filepath: str | Path) -> None:
        load_inference_weights(self, filepath, skip=[self.backbone])


class StepCheckpoint(keras.callbacks.Callback):
    """Saves weights + optimizer state at the end of every chunk; keeps the newest `keep`."""

    def __init__(self, directory: Path, keep: int = 3):
        super().__init__()
        self.directory = Path(directory)
        self.keep = keep

    @staticmethod
    def latest(directory: Path) -> dict | None:
        state_path = Path(directory) / CHECKPOINT_STATE
        if not state_path.exists():
            return None
        state = json.loads(state_path.read_text())
        return state if (Path(directory) / state["latest"]).exists() else None

    @classmethod
    def restore(cls, model: keras.Model, directory: Path) -> int:
        """Load the newest checkpoint into a built, compiled model; return its step (0 if none)."""
        state = cls.latest(directory)
        if state is None:
            return 0
        if model.optimizer is not None and not model.optimizer.built:
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)
        # Outside any strategy scope: Keras' loader makes a throwaway optimizer, whose variables
        # would be a cross-worker broadcast inside a multi-worker scope.
        model.load_weights(Path(directory) / state["latest"])
        log.info("resumed from %s at step %d", state["latest"], state["step"])
        return int(state["step"])

    def on_epoch_end(self, epoch, logs=None):
        self.directory.mkdir(parents=True, exist_ok=True)
        step = int(self.model.optimizer.iterations.numpy())
        name = f"ckpt-{step:08d}.weights.h5"
        tmp = self.directory / f".{name}.tmp.weights.h5"
        self.model.save_weights(tmp)
        tmp.replace(self.directory / name)
        state = self.latest(self.directory) or {"checkpoints": []}
        checkpoints = [c for c in state.get("checkpoints", []) if c != name] + [name]
        for old in checkpoints[: -self.keep]:
            (self.directory / old).unlink(missing_ok=True)
        state = {"latest": name, "step": step, "checkpoints": checkpoints[-self.keep :]}
        tmp_state = self.directory / (CHECKPOINT_STATE + ".tmp")
        tmp_state.write_text(json.dumps(state, indent=2))
        tmp_state.replace(self.directory / CHECKPOINT_STATE)


class TimeBudget(keras.callbacks.Callback):
    """Stops training within one step of `max_minutes` after this run's training began (after
    the step that crosses it; a multi-worker run stops at the next chunk boundary instead, where
    every worker agrees). Keras then ends the chunk early: its validation and checkpoint run at
    that step, so a restart resumes from it."""

    def __init__(self, max_minutes: float | None, strategy=None):
        super().__init__()
        self.max_seconds = None if max_minutes is None else max_minutes * 60.0
        self.start: float | None = None
        self.strategy = strategy
        self.reached = False
        if strategy is not None:
            from albert_tf.distribute import is_multi_worker

            self.per_step = not is_multi_worker(strategy)
        else:
            self.per_step = True

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = time.perf_counter()

    def _time_up(self) -> bool:
        return self.max_seconds is not None and time.perf_counter() - self.start >= self.max_seconds

    def _stop(self) -> None:
        if not self.reached:
            log.info("time budget of %g min reached at step %d; stopping",
                     self.max_seconds / 60, int(self.model.optimizer.iterations.numpy()))
        self.reached = True
        self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        if self.per_step and self._time_up():
            self._stop()

    def on_epoch_end(self, epoch, logs=None):
        if self.max_seconds is None:
            return
        time_up = self._time_up()
        if not self.per_step:
            from albert_tf.distribute import any_worker

            time_up = any_worker(time_up, self.strategy)  # all workers stop at the same chunk
        if time_up:
            self._stop()


class BudgetedDecay(keras.callbacks.Callback):
    """Ends the learning-rate decay where the time budget will end training.

    The planned steps come from a guess of the speed (the quality harness's first fine-tune of
    an encoder guesses 3,000 tokens/s; a 2-core machine fine-tunes a 6-layer BERT at ~900), and a
    schedule planned for 1,300 steps that the budget stops at 200 trains at its peak rate
    throughout, never annealed. Every `every_seconds`, from the speed measured since the first
    update (compilation left out) and the budget left, this sets the schedule's `decay_end` to
    the step training will reach, never past the plan.
    """

    def __init__(self, schedule: WarmupLinearDecay, budget: TimeBudget, planned_steps: int,
                 every_seconds: float = 10.0):
        super().__init__()
        self.schedule, self.budget, self.planned_steps = schedule, budget, planned_steps
        self.every_seconds = every_seconds
        self.mark: tuple[float, int] | None = None
        self.last = 0.0

    def on_train_begin(self, logs=None):
        self.mark, self.last = None, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last < self.every_seconds or self.budget.start is None:
            return
        self.last = now
        step = int(self.model.optimizer.iterations.numpy())
        if self.mark is None:  # the speed is measured from here: compilation is behind
            self.mark = (now, step)
            return
        since, first = self.mark
        if step <= first:
            return
        rate = (step - first) / (now - since)
        left = max(0.0, self.budget.start + self.budget.max_seconds - now)
        end = min(float(self.planned_steps), step + 1 + rate * left)
        self.schedule.decay_end.assign(end)


class ProgressLog(keras.callbacks.Callback):
    """A log line every `every_seconds` of training (step, loss, speed, time left), for output
    that is not a terminal: Keras' own line comes only once a chunk, which may be minutes."""

    def __init__(self, total_steps: int, every_seconds: float = 30.0,
                 budget: TimeBudget | None = None):
        super().__init__()
        self.total_steps = total_steps
        self.every_seconds = every_seconds
        self.budget = budget  # its end, when sooner, is the time left
        self.last: float | None = None
        self.last_step = 0

    def on_train_begin(self, logs=None):
        self.last = None  # the speed is measured from the end of the first step (compilation)

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.last is None:
            self.last, self.last_step = now, int(self.model.optimizer.iterations.numpy())
            return
        if now - self.last < self.every_seconds:
            return
        step = int(self.model.optimizer.iterations.numpy())
        rate = (step - self.last_step) / (now - self.last)
        left = (self.total_steps - step) / rate if rate > 0 else float("inf")
        until = ""
        budget = self.budget
        if budget is not None and budget.max_seconds is not None and budget.start is not None:
            budget_left = budget.start + budget.max_seconds - now
            if budget_left < left:
                left, until = max(budget_left, 0.0), " (time budget)"
        loss = (logs or {}).get("loss")
        log.info("step %d/%d (%.0f%%)%s, %.2f steps/s, about %s left%s", step, self.total_steps,
                 100 * step / max(1, self.total_steps),
                 f", loss {float(loss):.4f}" if loss is not None else "", rate,
                 _duration(left), until)
        self.last, self.last_step = now, step


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class MetricsLog(keras.callbacks.Callback):
    """Writes every chunk's metrics against the global step: TensorBoard scalars + history.jsonl.

    `tokens_per_step` turns step time into throughput (sequence slots per second).
    """

    def __init__(self, log_dir: Path, tokens_per_step: int | None = None):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.tokens_per_step = tokens_per_step
        self.writer = None
        self.chunk_start = time.perf_counter()
        self.chunk_start_step = 0
        self.run_start = time.perf_counter()

    def on_train_begin(self, logs=None):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.writer = tf.summary.create_file_writer(str(self.log_dir))
        self.run_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.chunk_start = time.perf_counter()
        self.chunk_start_step = int(self.model.optimizer.iterations.numpy())

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        seconds = time.perf_counter() - self.chunk_start
        record = {k: float(v) for k, v in (logs or {}).items()}
        record["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        steps = step - self.chunk_start_step
        if steps > 0 and seconds > 0:
            record["steps_per_second"] = steps / seconds
            if self.tokens_per_step:
                record["tokens_per_second"] = steps * self.tokens_per_step / seconds
        with self.writer.as_default():
            for key, value in record.items():
                tf.summary.scalar(key, value, step=step)
        self.writer.flush()
        record.update(step=step, wall_s=round(time.perf_counter() - self.run_start, 2))
        with open(self.log_dir / "history.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


def fit_resumable(
    model: keras.Model,
    make_train_dataset: Callable[[int, int], tf.data.Dataset],
    total_steps: int,
    steps_per_checkpoint: int,
    checkpoint_dir: Path,
    log_dir: Path,
    validation_data: tf.data.Dataset | None = None,
    keep_checkpoints: int = 3,
    max_minutes: float | None = None,
    tokens_per_step: int | None = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int | str | None = None,
    strategy=None,
    progress_seconds: float = 30.0,
    anneal_in_budget: bool = False,
) -> int:
    """Train `model` to `total_steps`, resuming from the newest checkpoint; return the final step.

    `make_train_dataset(start_step, num_steps)` must return `num_steps` batches starting at global
    step `start_step`. With a tf.distribute `strategy` (build and compile the model in its scope,
    but call this outside it), only the chief writes checkpoints and logs. `max_minutes` stops
    training within one step of the budget (`TimeBudget`), with a checkpoint at that step; with
    `anneal_in_budget` a `WarmupLinearDecay` schedule's decay ends there too (`BudgetedDecay`):
    fine-tunes, whose model is scored when the budget ends, use it. Pretraining and distillation
    keep their plan: measured on the demo's 80-step distillation, annealing within the budget
    lowered the held-out cosine to the teacher (0.80 -> 0.74), and their presets are continued.
    """
    start_step = StepCheckpoint.restore(model, checkpoint_dir)
    chief = True
    if strategy is not None:
        from albert_tf.distribute import is_chief, is_multi_worker, sync_from_chief

        chief = is_chief(strategy)
        if is_multi_worker(strategy):
            # Workers that cannot see the chief's checkpoints resume from its state too.
            start_step = sync_from_chief(model, strategy)
    # Equal chunks that cover `total_steps` (overshooting by less than one step per chunk).
    epochs = math.ceil(total_steps / max(1, min(steps_per_checkpoint, total_steps)))
    steps_per_checkpoint = math.ceil(total_steps / epochs)
    initial_epoch = start_step // steps_per_checkpoint
    if initial_epoch >= epochs:
        log.info("already trained to step %d of %d", start_step, total_steps)
        return start_step
    terminal = sys.stdout.isatty()
    budget = TimeBudget(max_minutes, strategy)
    progress = ProgressLog(epochs * steps_per_checkpoint, progress_seconds, budget)
    writers = [  # only the chief writes checkpoints and logs
        StepCheckpoint(checkpoint_dir, keep=keep_checkpoints),
        MetricsLog(log_dir, tokens_per_step=tokens_per_step),
        *([] if terminal else [progress]),
    ] if chief else []
    callbacks = [*writers, budget, *(extra_callbacks or [])]
    schedule = getattr(model.optimizer, "_learning_rate", None)  # Keras keeps the schedule here
    if (anneal_in_budget and max_minutes and isinstance(schedule, WarmupLinearDecay)
            and budget.per_step):
        # (multi-worker runs keep the plan: workers must agree on every step's rate)
        schedule.decay_end.assign(float(max(schedule.total_steps, schedule.warmup_steps + 1)))
        callbacks.append(BudgetedDecay(schedule, budget, schedule.total_steps))
    with warnings.catch_warnings():
        # A run stopped by its time budget mid-chunk resumes mid-chunk: its chunks then end
        # `start_step` % chunk later, and the last one is short, which Keras reports as running
        # out of data. The data ends exactly at the planned step, so that is no error here.
        if start_step % steps_per_checkpoint:
            warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            make_train_dataset(start_step, epochs * steps_per_checkpoint - start_step),
            epochs=epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=steps_per_checkpoint,
            validation_data=validation_data,
            validation_steps=known_steps(validation_data),
            callbacks=callbacks,
            # A live progress bar on a terminal; a line per chunk (and ProgressLog's every
            # `progress_seconds`) in logs and CI.
            verbose=verbose if verbose is not None else (1 if terminal else 2),
        )
    return int(model.optimizer.iterations.numpy())


def known_steps(dataset: tf.data.Dataset | None) -> int | None:
    """The batches of a held-out dataset (counted with one pass when tf.data cannot tell): Keras,
    told, stops there instead of reading to the end and warning that it "ran out of data"."""
    if not isinstance(dataset, tf.data.Dataset):
        return None
    cardinality = int(dataset.cardinality())
    if cardinality == tf.data.UNKNOWN_CARDINALITY:
        cardinality = int(dataset.reduce(0, lambda count, _: count + 1))
    return cardinality if cardinality > 0 else None


def read_history(log_dir: Path) -> list[dict]:
    """The per-chunk records `MetricsLog` wrote, oldest first."""
    path = Path(log_dir) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
