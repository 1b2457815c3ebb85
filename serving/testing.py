"""Tiny SavedModels with the shapes a serving API must handle, for tests and examples.

`save_toy_model` writes a raw-string model whose signatures cover the REST API's cases:

- `serving_default`: `text` [batch] string -> `scores` [batch, 3] float (length of the text times
  `scale * [1, 2, 3]`), `tokens` [batch, 2] string (first two words, padded with ""),
  `length` [batch] int32, `text_bytes` [batch] string (the input; `_bytes` => b64 in JSON);
- `length`: `text` -> `length` only (a single output: plain values in responses);
- `pair`: `text` string [batch] and `weight` float [batch] -> `weighted` float [batch] and
  `echo` string [batch] (two inputs of different dtypes);
- `scaled`: `x` float [batch, 3] and `k` int32 scalar -> `y` float [batch, 3] and `total` float
  scalar (a rank-0 input and output, like a recommender's `k`: columnar requests only);
- `words`: `text` -> `words` [batch, 4] string, tokenized by a TF Text op (as TF Serving links
  TF Text in, a server must register those ops before loading).

`save_jit_model` writes one whose serving function is compiled with XLA (`jit_compile=True`),
which TF Serving does not support. `save_slow_model` writes one whose request takes as long as
its `steps` input asks (for tests of requests in flight). All use only TensorFlow and TF Text ops.
"""

from __future__ import annotations

from pathlib import Path


def _toy_module(scale: float):
    import tensorflow as tf
    import tensorflow_text as tf_text

    class ToyModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable([scale, 2.0 * scale, 3.0 * scale], name="weights")

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            length = tf.strings.length(text, unit="UTF8_CHAR")
            words = tf.strings.split(text)[:, :2].to_tensor("", shape=[None, 2])
            return {
                "scores": tf.cast(length, tf.float32)[:, None] * self.weights[None, :],
                "tokens": words,
                "length": length,
                "text_bytes": tf.identity(text),
            }

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def length(self, text):
            return {"length": tf.strings.length(text, unit="UTF8_CHAR")}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.float32, name="weight")])
        def pair(self, text, weight):
            length = tf.cast(tf.strings.length(text, unit="UTF8_CHAR"), tf.float32)
            return {"weighted": length * weight * self.weights[0], "echo": tf.identity(text)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"),
                                      tf.TensorSpec([], tf.int32, name="k")])
        def scaled(self, x, k):
            y = x * tf.cast(k, tf.float32) * self.weights[0]
            return {"y": y, "total": tf.reduce_sum(y)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def words(self, text):
            tokens = tf_text.WhitespaceTokenizer().tokenize(text)
            return {"words": tokens[:, :4].to_tensor("", shape=[None, 4])}

    return ToyModel()


def save_toy_model(path: str | Path, scale: float = 1.0) -> Path:
    """Save the toy model (see the module docstring) to `path`; `scale` changes its outputs."""
    import tensorflow as tf

    module = _toy_module(scale)
    signatures = {"serving_default": module.serve, "length": module.length, "pair": module.pair,
                  "scaled": module.scaled, "words": module.words}
    tf.saved_model.save(module, str(path), signatures=signatures)
    return Path(path)


def save_jit_model(path: str | Path) -> Path:
    """Save a model whose serving function asks for XLA compilation."""
    import tensorflow as tf

    class JitModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")],
                     jit_compile=True)
        def serve(self, x):
            return {"y": x * 2.0}

    module = JitModel()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)


# Side of the matrix the slow model multiplies at each step (about 1 ms a step on one CPU core).
SLOW_MODEL_SIZE = 256


def save_slow_model(path: str | Path) -> Path:
    """Save a model whose `serving_default` takes `x` float [batch] and `steps` int32 scalar and
    returns `y = 2 * x + steps` after `steps` multiplications of a 256 x 256 matrix (`work`, the
    sum of that matrix, keeps the loop from being pruned): a request as slow as `steps` says."""
    import tensorflow as tf

    class SlowModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(tf.random.stateless_normal(
                [SLOW_MODEL_SIZE, SLOW_MODEL_SIZE], seed=[1, 2]) / SLOW_MODEL_SIZE**0.5)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                      tf.TensorSpec([], tf.int32, name="steps")])
        def serve(self, x, steps):
            def body(i, matrix):
                return i + 1, tf.tanh(tf.matmul(matrix, self.weights))

            done, matrix = tf.while_loop(lambda i, _: i < steps, body,
                                         [tf.constant(0), tf.eye(SLOW_MODEL_SIZE)])
            return {"y": 2.0 * x + tf.cast(done, tf.float32), "work": tf.reduce_sum(matrix)}

    module = SlowModel()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return Path(path)
