"""ALBERT on Keras 3 / keras-hub: configs, tokenizer, MLM + SOP pretraining, heads and export.

Knows nothing of Beam or TFRS. Keras 3 only: `tf.keras` is left to tf-keras 2 for `recommender`.
"""

import os

# Set before keras_hub is imported so that a process may also import TFRS (see DESIGN.md).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
