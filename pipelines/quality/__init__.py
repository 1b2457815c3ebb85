"""Quality harness: EVAL.md's datasets and splits, its metrics and its reference baselines."""
