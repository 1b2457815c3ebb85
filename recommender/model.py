"""The two-tower retrieval model: user profile -> query embedding, item profile -> candidate.

Both towers join an id embedding (collaborative signal) with the opinion-mining features of the
`features` stage (what the user cares about / what reviewers say about the item, and the mean
review-text embedding), so that users and items with few interactions still land in a sensible
place. The score of a (user, item) pair is the dot product of the two embeddings; training uses the
TFRS retrieval task (in-batch softmax over the batch's items) and the model implements only
`compute_loss`, as TFRS intends.

Inputs are dicts of tensors:
  query tower:     {"user_id": string [B], "aspect_weight": float [B, A], "embedding": float [B, D]}
  candidate tower: {"item_id": string [B], "aspect_score": float [B, A], "embedding": float [B, D]}
"""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs


class IdFeatureTower(tf.keras.Model):
    """Id embedding (StringLookup + Embedding, one out-of-vocabulary row) + dense features -> Dense.

    Args:
      vocabulary: the known ids; unknown ids share one learned out-of-vocabulary embedding.
      id_key: input key of the string id.
      feature_keys: input keys of the float feature vectors concatenated after the id embedding.
      embedding_dim: size of the id embedding and of the output embedding.
      seed: initializer seed, for repeatable training.
      normalize: L2-normalise each float feature vector on the way in and the output embedding on
        the way out, so scores are cosines (scaled by the task's temperature). Raw review-text
        embeddings have norms near 18, and unnormalised dot products of them made the in-batch
        softmax diverge on real data (losses and scores in the thousands).
    """

    def __init__(self, vocabulary: Sequence[str], id_key: str, feature_keys: Sequence[str],
                 embedding_dim: int = 32, seed: int = 0, normalize: bool = True, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(vocabulary), mask_token=None,
                                                   num_oov_indices=1)
        self.id_embedding = tf.keras.layers.Embedding(
            len(vocabulary) + 1, embedding_dim,
            embeddings_initializer=tf.keras.initializers.RandomNormal(stddev=0.05, seed=seed))
        self.projection = tf.keras.layers.Dense(
            embedding_dim, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=seed + 1))
        # === Config ===
        self.vocabulary = list(vocabulary)
        self.id_key = id_key
        self.feature_keys = list(feature_keys)
        self.embedding_dim = embedding_dim
        self.seed = seed
        self.normalize = normalize

    def call(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.id_embedding(self.lookup(inputs[self.id_key]))]
        for key in self.feature_keys:
            feature = tf.cast(inputs[key], tf.float32)
            parts.append(tf.math.l2_normalize(feature, axis=-1) if self.normalize else feature)
        output = self.projection(tf.concat(parts, axis=-1))
        return tf.math.l2_normalize(output, axis=-1) if self.normalize else output

    def get_config(self) -> dict:
        return {"vocabulary": self.vocabulary, "id_key": self.id_key,
                "feature_keys": self.feature_keys, "embedding_dim": self.embedding_dim,
                "seed": self.seed, "normalize": self.normalize}


def query_tower(user_ids: Sequence[str], embedding_dim: int = 32, seed: int = 0,
                use_features: bool = True) -> IdFeatureTower:
    """User id + `aspect_weight` + user text `embedding` -> query embedding (id only when
    `use_features` is False: the ID-only baseline)."""
    keys = ["aspect_weight", "embedding"] if use_features else []
    return IdFeatureTower(user_ids, "user_id", keys, embedding_dim, seed=seed, name="query_tower")


def candidate_tower(item_ids: Sequence[str], embedding_dim: int = 32, seed: int = 0,
                    use_features: bool = True) -> IdFeatureTower:
    """Item id + item text `embedding` + `aspect_score` -> candidate embedding."""
    keys = ["embedding", "aspect_score"] if use_features else []
    return IdFeatureTower(item_ids, "item_id", keys, embedding_dim, seed=seed + 100,
                          name="candidate_tower")


class RetrievalModel(tfrs.Model):
    """Two-tower retrieval on TFRS; batches are `{"user": query inputs, "item": candidate inputs}`.

    A batch may also carry `"sampling_probability"` ([B], the item's share of the training
    interactions): the in-batch negatives are drawn in proportion to popularity, so without this
    logQ correction the softmax learns popularity-debiased scores, which rank popular items too
    low for next-item prediction.

    Args:
      query_tower: maps the "user" dict to [B, E] embeddings.
      candidate_tower: maps the "item" dict to [B, E] embeddings.
      candidates: the catalogue as a dataset of candidate-tower input dicts; FactorizedTopK
        evaluates over it (id-based, re-embedded at each evaluation).
      ks: cut-offs of the FactorizedTopK metrics.
      temperature: optional softmax temperature of the retrieval loss.
      num_candidates: catalogue size, when known: metric cut-offs above it are dropped.

    Example:
      model = RetrievalModel(query_tower(users), candidate_tower(items), items_dataset)
      model.compile(tf.keras.optimizers.Adagrad(0.1))
      model.fit(train_dataset, epochs=5)
    """

    def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model,
                 candidates: tf.data.Dataset, ks: Sequence[int] = (1, 5, 10, 50),
                 temperature: float | None = None, num_candidates: int | None = None):
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        if num_candidates is not None:
            ks = [k for k in ks if k <= num_candidates] or [num_candidates]
        index = candidates.batch(256).map(
            lambda item: (item["item_id"], self.candidate_tower(item)))
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=index, ks=tuple(ks)),
            temperature=temperature,
            remove_accidental_hits=True,  # a repeated item in a batch is not its own negative
        )
        # The epoch's mean loss per interaction (TFRS reports only the last batch's sum).
        self.interaction_loss = tf.keras.metrics.Mean(name="interaction_loss")

    def compute_loss(self, features: dict[str, dict[str, tf.Tensor]], training: bool = False
                     ) -> tf.Tensor:
        queries = self.query_tower(features["user"])
        candidates = self.candidate_tower(features["item"])
        loss = self.task(queries, candidates, candidate_ids=features["item"]["item_id"],
                         candidate_sampling_probability=features.get("sampling_probability"),
                         compute_metrics=not training)
        if training:
            self.interaction_loss.update_state(loss / tf.cast(tf.shape(queries)[0], tf.float32))
        return loss
