"""Training the retrieval model on the train split, with early stopping on dev Recall@k.

Keras `fit` drives the epochs (progress bar, TensorBoard, TFRS's FactorizedTopK on dev), and a
callback measures the EVAL.md dev metric (seen items excluded) after each epoch, keeping the best
weights: the TFRS metric ranks the whole catalogue including seen items, so it is not the figure
we select on.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from recommender import evaluate as evaluation
from recommender.data import FeatureSet
from recommender.model import RetrievalModel, candidate_tower, query_tower

log = logging.getLogger("opinionrec")


@dataclass(frozen=True)
class TrainConfig:
    """Training options (the `train-recommender` command's flags)."""

    epochs: int = 8
    embedding_dim: int = 32
    batch_size: int = 128
    learning_rate: float = 0.1
    temperature: float = 0.1  # softmax temperature over cosine scores
    use_features: bool = True  # False: the ID-only two-tower baseline
    seed: int = 0
    patience: int = 2  # epochs without a better dev Recall@k before stopping; 0 disables
    logq_correction: bool = True  # correct in-batch negatives for popularity sampling
    k: int = 10
    ranker_epochs: int = 30  # the DCN ranker's maximum epochs (dev NDCG@k picks one)
    ranker_patience: int = 4
    # Inner leave-last-out splits the ranker's training lists come from (each one peels another
    # item off the end of every train history): more lists, a ranker that generalises better.
    ranker_splits: int = 3
    # Two-tower models and rankers trained with seeds seed, seed+1, ...: the towers' cosines are
    # averaged (the served vectors are theirs concatenated, over sqrt(n)), and so are the
    # rankers' logits. On a few thousand interactions one seed's test NDCG@10 swings by 0.02
    # (Magazine_Subscriptions: 0.103-0.123 over 4 seeds).
    seeds: int = 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: RetrievalModel
    history: dict[str, list[float]] = field(default_factory=dict)
    dev_recall: list[float] = field(default_factory=list)
    best_epoch: int = 0


def user_inputs(features: FeatureSet, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Query-tower inputs for user rows."""
    users = features.users
    return {"user_id": users.ids[rows].astype(str), "aspect_weight": users.aspect_weight[rows],
            "embedding": users.embedding[rows]}


def item_inputs(features: FeatureSet, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Candidate-tower inputs for item rows."""
    items = features.items
    return {"item_id": items.ids[rows].astype(str), "aspect_score": items.aspect_score[rows],
            "embedding": items.embedding[rows]}


def interaction_dataset(features: FeatureSet, frame: pd.DataFrame, batch_size: int,
                        shuffle_seed: int | None = None, logq_correction: bool = True
                        ) -> tf.data.Dataset:
    """`{"user", "item", "sampling_probability"}` batches of interactions (shuffled when seeded).

    `sampling_probability` is each item's share of `frame`: the chance that an in-batch negative
    is that item, which the retrieval task subtracts (in log space) from the logits.
    """
    item_rows = frame["item_row"].to_numpy()
    data = {"user": user_inputs(features, frame["user_row"].to_numpy()),
            "item": item_inputs(features, item_rows)}
    if logq_correction:
        share = np.bincount(item_rows, minlength=len(features.items)) / max(len(item_rows), 1)
        data["sampling_probability"] = share[item_rows].astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(data)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(frame), seed=shuffle_seed, reshuffle_each_iteration=True)
    # Whole batches only (when there is at least one): every step sees the same number of
    # in-batch negatives, so losses are comparable.
    drop_remainder = shuffle_seed is not None and len(frame) >= batch_size
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def embed(tower: tf.keras.Model, inputs: dict[str, np.ndarray], batch: int = 4096) -> np.ndarray:
    """Run a tower over numpy inputs in batches; returns [n, E] float32."""
    n = len(next(iter(inputs.values())))
    parts = [tower({k: tf.constant(v[i:i + batch]) for k, v in inputs.items()}).numpy()
             for i in range(0, n, batch)]
    return np.concatenate(parts) if parts else np.zeros((0, tower.embedding_dim), "float32")


def tower_vectors(model: RetrievalModel, features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """Query-tower outputs of every user [U, E] and candidate-tower outputs of every item [N, E]."""
    items = embed(model.candidate_tower, item_inputs(features, np.arange(len(features.items))))
    users = embed(model.query_tower, user_inputs(features, np.arange(len(features.users))))
    return users, items


def ensemble_vectors(results: list[TrainResult], features: FeatureSet
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Users' [U, n*E] and items' [N, n*E] vectors of n trained two-tower models: each model's
    unit vectors concatenated, over sqrt(n), so a dot product is the mean of the n cosines and
    the vectors stay unit length."""
    parts = [tower_vectors(result.model, features) for result in results]
    scale = np.float32(1.0 / np.sqrt(len(parts)))
    return (np.concatenate([users for users, _ in parts], axis=1) * scale,
            np.concatenate([items for _, items in parts], axis=1) * scale)


def train_towers(features: FeatureSet, split: evaluation.Split, config: TrainConfig,
                 first: TrainResult | None = None) -> list[TrainResult]:
    """`config.seeds` two-tower models, seeds `config.seed` onward (`first`: the first one,
    already trained); dev, where `split` has it, picks each one's epoch."""
    results = [first] if first is not None else []
    for offset in range(len(results), max(config.seeds, 1)):
        results.append(train_retrieval(features, split,
                                       replace(config, seed=config.seed + offset)))
    return results


def model_scorer(model: RetrievalModel, features: FeatureSet) -> evaluation.Scorer:
    """Dot-product scores of every user against the whole catalogue (embeddings computed once)."""
    users, items = tower_vectors(model, features)
    return lambda rows: users[rows] @ items.T


class DevMetricCallback(tf.keras.callbacks.Callback):
    """After each epoch: dev Recall@k under the EVAL.md protocol; keep the best weights; stop early.

    Ties keep the earlier epoch. The metric is added to Keras' logs (`dev_recall@k`) so it reaches
    the progress bar and TensorBoard.
    """

    def __init__(self, features: FeatureSet, split: evaluation.Split, k: int, patience: int):
        super().__init__()
        self._features, self._split, self._k, self._patience = features, split, k, patience
        self.recalls: list[float] = []
        self.best_epoch = -1
        self._best_weights = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        scorer = model_scorer(self.model, self._features)
        metrics = evaluation.evaluate(scorer, self._split, len(self._features.items), "dev",
                                      self._k)["all"]
        recall = metrics[f"recall@{self._k}"]
        self.recalls.append(recall)
        if logs is not None:
            logs[f"dev_recall@{self._k}"] = recall
        if self.best_epoch < 0 or recall > self.recalls[self.best_epoch]:
            self.best_epoch = epoch
            self._best_weights = self.model.get_weights()
        elif self._patience and epoch - self.best_epoch >= self._patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class EpochLog(tf.keras.callbacks.Callback):
    """One short log line per epoch (Keras' own line is long and lists the train-time
    FactorizedTopK metrics, which are zero because they are only computed on validation data)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        shown = [f"{name} {logs[key]:.4f}" for name, key in (
            ("loss per interaction", "interaction_loss"),
            ("val top-10 accuracy", "val_factorized_top_k/top_10_categorical_accuracy"))
            if key in logs]
        shown += [f"{key} {value:.4f}" for key, value in logs.items() if key.startswith("dev_")]
        log.info("train-recommender: epoch %d/%d: %s", epoch + 1, self.params.get("epochs", 0),
                 ", ".join(shown))


def train_retrieval(features: FeatureSet, split: evaluation.Split, config: TrainConfig,
                    log_dir: Path | None = None, verbose: int = 0) -> TrainResult:
    """Train the two-tower model on `split.train`; dev picks the epoch; deterministic per seed."""
    if split.train.empty:
        raise ValueError("No train interactions: every user has at most two interactions.")
    tf.keras.utils.set_random_seed(config.seed)
    items = tf.data.Dataset.from_tensor_slices(
        item_inputs(features, np.arange(len(features.items))))
    model = RetrievalModel(
        query_tower(features.users.ids.astype(str), config.embedding_dim, config.seed,
                    config.use_features),
        candidate_tower(features.items.ids.astype(str), config.embedding_dim, config.seed,
                        config.use_features),
        items, temperature=config.temperature, num_candidates=len(features.items))
    model.compile(optimizer=tf.keras.optimizers.Adagrad(config.learning_rate),
                  jit_compile=False)  # TF Serving runs without XLA; keep one code path
    callbacks: list[tf.keras.callbacks.Callback] = []
    dev_callback = None
    if not split.dev.empty:
        dev_callback = DevMetricCallback(features, split, config.k, config.patience)
        callbacks.append(dev_callback)
    callbacks.append(EpochLog())
    if log_dir is not None:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(log_dir), profile_batch=0))
    train = interaction_dataset(features, split.train, config.batch_size, config.seed,
                                config.logq_correction)
    dev = (interaction_dataset(features, split.dev, 1024, logq_correction=False)
           if not split.dev.empty else None)
    history = model.fit(train, epochs=config.epochs, validation_data=dev, callbacks=callbacks,
                        verbose=verbose)
    result = TrainResult(model=model, history={k: [float(x) for x in v]
                                               for k, v in history.history.items()})
    # TFRS' `loss` is the last batch's sum; `interaction_loss` is the epoch's mean per interaction.
    result.history["loss"] = result.history.pop("interaction_loss", result.history["loss"])
    if dev_callback is not None:
        result.dev_recall = dev_callback.recalls
        result.best_epoch = dev_callback.best_epoch
        log.info("train-recommender: dev recall@%d per epoch %s; kept epoch %d", config.k,
                 [round(r, 4) for r in dev_callback.recalls], dev_callback.best_epoch + 1)
    else:
        result.best_epoch = config.epochs - 1
    return result
