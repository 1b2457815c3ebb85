"""Beam jobs and the `opinionrec` command line; orchestrates albert_tf, recommender and serving."""

import os

# TFRS needs tf.keras to be Keras 2 (tf-keras); keras / keras_hub stay Keras 3 either way. The
# variable must be set before anything touches `tf.keras` (importing keras_hub does).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) drowns the stages' own logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
