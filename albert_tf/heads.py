"""Task heads on an ALBERT backbone's outputs: sentence order (SOP), text classification and
the projection of the pooled sentence vector onto a distillation teacher's embedding."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="albert_tf")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean of a sequence's vectors over its real tokens: `(sequence_output, padding_mask)`.

    A briefly pretrained encoder's [CLS] vector barely depends on the input (it saturates the
    pooler's tanh), while the mean over tokens carries the sentence; heads and embeddings read it.
    """

    def call(self, sequence_output, padding_mask):
        mask = keras.ops.cast(padding_mask, sequence_output.dtype)[:, :, None]
        total = keras.ops.sum(sequence_output * mask, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(mask, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="albert_tf")
class ClassificationHead(keras.layers.Layer):
    """Dropout + dense classifier over a pooled sentence vector (`MaskedMeanPooling`); logits.

    Args:
        num_classes: number of output classes.
        dropout: dropout rate before the classifier.
    """

    def __init__(self, num_classes: int, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.num_classes = num_classes
        self.dropout = dropout
        # === Layers ===
        self.dropout_layer = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.logits = keras.layers.Dense(
            num_classes,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy,
            name="logits",
        )

    def build(self, input_shape):
        self.logits.build(input_shape)
        self.built = True

    def call(self, pooled_output, training=None):
        return self.logits(self.dropout_layer(pooled_output, training=training))

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "dropout": self.dropout})
        return config


@keras.saving.register_keras_serializable(package="albert_tf")
class SentenceOrderHead(ClassificationHead):
    """Predicts whether two segments are in their original order (ALBERT's SOP task).

    Reads the backbone's `pooled_output` ([CLS] through a tanh dense layer) and returns 2 logits:
    0 = in order, 1 = swapped.

    Args:
        dropout: dropout rate applied to the pooled output before the classifier.
    """

    def __init__(self, dropout: float = 0.0, **kwargs):
        kwargs.pop("num_classes", None)
        super().__init__(num_classes=2, dropout=dropout, **kwargs)


@keras.saving.register_keras_serializable(package="albert_tf")
class TeacherProjection(keras.layers.Layer):
    """The student's sentence vector in the teacher's space, for distillation.

    `MaskedMeanPooling` of the backbone's `sequence_output` over `padding_mask` (mean pooling, as
    the sentence-transformers teacher does), then a linear projection to `teacher_dim`. The
    cosine loss ignores the scale, so no normalisation here.

    Args:
        teacher_dim: the teacher's embedding size (384 for all-MiniLM-L6-v2).
    """

    def __init__(self, teacher_dim: int, **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.teacher_dim = teacher_dim
        # === Layers ===
        self.pooling = MaskedMeanPooling(dtype=self.dtype_policy, name="pooling")
        self.projection = keras.layers.Dense(
            teacher_dim,
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            dtype=self.dtype_policy,
            name="projection",
        )

    def build(self, sequence_output_shape, padding_mask_shape=None):
        self.projection.build((sequence_output_shape[0], sequence_output_shape[-1]))
        self.built = True

    def call(self, sequence_output, padding_mask):
        return self.projection(self.pooling(sequence_output, padding_mask))

    def compute_output_shape(self, sequence_output_shape, padding_mask_shape=None):
        return (sequence_output_shape[0], self.teacher_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"teacher_dim": self.teacher_dim})
        return config
