"""TensorFlow Recommenders models on tf.keras (Keras 2): profiles, retrieval, explanations, export.

Knows nothing of keras-hub; consumes text features as arrays and files.
"""

import os

# TFRS 0.7.7 imports only when tf.keras is tf-keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
