"""General distillation: an ALBERT student learns a BERT teacher's layers on unlabelled text.

Four terms, each averaged over real tokens (`DistillationWeights` weighs them):
- `hidden`: mean squared error between the student's and the teacher's hidden states, the
  embedding output and every layer (TinyBERT), layers mapped uniformly when depths differ;
- `attention`: KL(teacher || student) of every mapped layer's attention probabilities per head
  and query (TinyBERT; MiniLM and "How to Distill your BERT" (2023) find attention transfer best);
- `value`: KL of the last layer's value relations, softmax(V V^T / sqrt(d)) per head (MiniLM);
- `sentence`: 1 - cosine of the mean-pooled sentence embeddings (the teacher's own use).

`LayerDistiller` is a Keras model over the student whose `train_step` runs the frozen teacher
alongside, so `training.fit_resumable` gives it checkpoints, a time budget, TensorBoard and the
progress log exactly as pretraining has them. Only the student is saved in its checkpoints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

from albert_tf.student import hidden_states, mean_pooled

LOSS_NAMES = ("hidden", "attention", "value", "sentence")


@dataclass(frozen=True)
class DistillationWeights:
    """How much each term counts in the total loss (0 switches a term off)."""

    hidden: float = 1.0
    attention: float = 1.0
    value: float = 1.0
    sentence: float = 1.0


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher layer each student layer (1-based, as states) learns from: uniform."""
    return [-(-i * teacher_layers // student_layers) for i in range(1, student_layers + 1)]


def _masked_mean(per_token, mask):
    """Mean of `[batch, T]` values over real tokens."""
    mask = tf.cast(mask, per_token.dtype)
    return tf.reduce_sum(per_token * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def _row_kl(teacher_p, student_p, query_mask):
    """KL(teacher || student) of `[batch, heads, T, T]` distributions, averaged over heads and
    real query rows."""
    eps = 1e-8
    kl = tf.reduce_sum(teacher_p * (tf.math.log(teacher_p + eps) - tf.math.log(student_p + eps)),
                       axis=-1)  # [batch, heads, T]
    return _masked_mean(tf.reduce_mean(kl, axis=1), query_mask)


def _value_relation(layer, layer_input, padding_mask):
    """softmax(V V^T / sqrt(d)) of `layer`'s value vectors, padding keys masked: `[B, h, T, T]`."""
    values = layer._self_attention_layer._value_dense(layer_input)  # [B, T, heads, d]
    values = tf.transpose(values, [0, 2, 1, 3])
    scores = tf.matmul(values, values, transpose_b=True)
    scores /= tf.sqrt(tf.cast(tf.shape(values)[-1], scores.dtype))
    key_mask = tf.cast(padding_mask, scores.dtype)[:, None, None, :]
    return tf.nn.softmax(scores + (1.0 - key_mask) * -1e9, axis=-1)


def distillation_losses(student, teacher, x, training: bool = False,
                        weights: DistillationWeights = DistillationWeights()) -> dict:
    """The four terms and their weighted `total` for one batch of packed inputs."""
    mask = x["padding_mask"]
    need_attention = weights.attention > 0
    s_states, s_att = hidden_states(student, x, training=training, attention=need_attention)
    t_states, t_att = hidden_states(teacher, x, training=False, attention=need_attention)
    t_states = [tf.stop_gradient(t) for t in t_states]
    mapping = layer_map(len(s_states) - 1, len(t_states) - 1)

    hidden = [_masked_mean(tf.reduce_mean(tf.square(s_states[0] - t_states[0]), -1), mask)]
    hidden += [_masked_mean(tf.reduce_mean(tf.square(s - t_states[j]), -1), mask)
               for s, j in zip(s_states[1:], mapping)]
    losses = {"hidden": tf.add_n(hidden) / len(hidden)}
    if need_attention:
        losses["attention"] = tf.add_n([_row_kl(tf.stop_gradient(t_att[j - 1]), a, mask)
                                        for a, j in zip(s_att, mapping)]) / len(s_att)
    if weights.value > 0:
        s_last = _value_relation(_last_layer(student), s_states[-2], mask)
        t_last = _value_relation(_last_layer(teacher), t_states[-2], mask)
        losses["value"] = _row_kl(tf.stop_gradient(t_last), s_last, mask)
    if weights.sentence > 0:
        cosine = tf.reduce_sum(mean_pooled(s_states[-1], mask)
                               * tf.stop_gradient(mean_pooled(t_states[-1], mask)), axis=-1)
        losses["sentence"] = tf.reduce_mean(1.0 - cosine)
    losses["total"] = tf.add_n([getattr(weights, name) * value for name, value in losses.items()])
    return losses


def _last_layer(backbone):
    layers = backbone.transformer_layers
    return layers[-1][-1] if isinstance(layers[-1], list) else layers[-1]


class _Frozen:
    """Holds the teacher out of Keras' tracking: its weights are neither trained nor saved."""

    def __init__(self, model):
        self.model = model


class LayerDistiller(keras.Model):
    """The student, trained by `fit` on batches of packed inputs to match a frozen teacher.

    Args:
        student: a keras-hub `AlbertBackbone` (see `albert_tf.student.build_student`).
        teacher: the keras-hub `BertBackbone` it learns from, sharing its tokenizer.
        weights: the loss weights.
    """

    def __init__(self, student, teacher, weights: DistillationWeights = DistillationWeights(),
                 **kwargs):
        super().__init__(**kwargs)
        self.student = student
        # Not an attribute Keras can see (nor a property: its saver walks those): the teacher is
        # loaded from its own folder, and the checkpoints hold only the student.
        self._teacher = _Frozen(teacher)
        teacher.trainable = False
        # Mean pooling is the sentence embedding; the [CLS] pooler gets no gradient.
        student.get_layer("pooled_dense").trainable = False
        self.loss_weights_ = weights
        names = ["total", *(n for n in LOSS_NAMES if getattr(weights, n) > 0)]
        self.trackers = {n: keras.metrics.Mean(name=n) for n in names}
        self.built = True  # the student is a built functional model; nothing else has weights

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def _record(self, losses):
        for name, tracker in self.trackers.items():
            tracker.update_state(losses[name])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            losses = distillation_losses(self.student, self._teacher.model, x, training=True,
                                         weights=self.loss_weights_)
        variables = self.student.trainable_variables
        gradients = tape.gradient(losses["total"], variables)
        self.optimizer.apply(gradients, variables)
        return self._record(losses)

    def test_step(self, data):
        x = data[0] if isinstance(data, tuple) else data
        return self._record(distillation_losses(self.student, self._teacher.model, x,
                                                weights=self.loss_weights_))

    def get_config(self):
        return {"weights": asdict(self.loss_weights_)}


def distill_layers_on_texts(student, teacher, preprocessor, texts, work_dir, *,
                            pairs=None, lengths=None, dev_texts=(), dev_pairs=None,
                            batch_size: int = 32, max_minutes: float = 2.0,
                            learning_rate: float = 2e-4, seed: int = 0,
                            jit_compile: bool = True,
                            weights: DistillationWeights = DistillationWeights()) -> dict:
    """Task-specific intermediate-layer distillation (TinyBERT's first task stage): the student
    backbone learns a *fine-tuned* teacher's layers on the task's own texts for `max_minutes`,
    before its head learns the teacher's predictions. Resumable from `work_dir`.

    `lengths` (tokens per text) groups batches by length and trims them, as fine-tuning does.
    Returns the steps, the wall time and the held-out (dev) losses before and after.
    """
    import time
    from pathlib import Path

    from albert_tf.text_tasks import text_dataset, unlabelled_batches
    from albert_tf.training import fit_resumable, make_optimizer, warmup_steps_for

    start = time.perf_counter()
    trim = lengths is not None
    dev_ds = (text_dataset(list(dev_texts)[:256], preprocessor, batch_size,
                           pairs=list(dev_pairs)[:256] if dev_pairs is not None else None,
                           trim=trim).cache() if len(dev_texts) else None)
    distiller = LayerDistiller(student, teacher, weights)
    # An upper bound on the steps: the budget ends the run, and the decay ends with the budget.
    total_steps = max(1, int(max_minutes * 60 * 4))
    optimizer = make_optimizer("adamw", learning_rate,
                               warmup_steps_for(total_steps // 10, max_minutes), total_steps)
    distiller.compile(optimizer=optimizer, jit_compile=jit_compile)
    before = distiller.evaluate(dev_ds, verbose=0, return_dict=True) if dev_ds else {}

    train_ds = unlabelled_batches(list(texts), preprocessor, batch_size, seed, lengths,
                                  list(pairs) if pairs is not None else None)

    work_dir = Path(work_dir)
    steps = fit_resumable(distiller, train_ds, total_steps=total_steps,
                          steps_per_checkpoint=100, checkpoint_dir=work_dir / "checkpoints",
                          log_dir=work_dir / "logs", keep_checkpoints=1,
                          max_minutes=max_minutes, anneal_in_budget=True)
    after = distiller.evaluate(dev_ds, verbose=0, return_dict=True) if dev_ds else {}
    return {"steps": int(steps), "wall_s": round(time.perf_counter() - start, 1),
            "dev_losses_before": {k: round(float(v), 4) for k, v in before.items()},
            "dev_losses_after": {k: round(float(v), 4) for k, v in after.items()}}
