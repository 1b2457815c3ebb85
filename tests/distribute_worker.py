"""One worker of a multi-worker training run, for tests/test_distribute.py.

Run as `python -m tests.distribute_worker --spm-model M --out DIR` with `TF_CONFIG` set (one
process per worker). Builds a nano `AlbertPretrainer` inside the strategy's scope, checks the
collective helpers of `albert_tf.distribute`, trains a few steps on a small review corpus and
writes `DIR/initial.npz` and `DIR/final.npz` (the weights before and after) and `DIR/result.json`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spm-model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="multi-worker")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch size")
    parser.add_argument("--sequence-length", type=int, default=32)
    parser.add_argument("--batching", choices=["padded", "bucketed"], default="padded")
    parser.add_argument("--xla", action="store_true", help="ask for XLA (`jit_compile_for`)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    # The workers share the test machine's cores with everything else: one thread each.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    from albert_tf.distribute import (
        any_worker,
        chief_dir,
        is_chief,
        jit_compile_for,
        make_strategy,
        sync_from_chief,
        with_distribute_options,
    )

    strategy = make_strategy(args.strategy)  # first: it sets up the cluster

    import keras
    import keras_hub

    from albert_tf.configs import get_config
    from albert_tf.instances import Instances, instance_dataset
    from albert_tf.pretraining import AlbertPretrainer, compile_pretrainer, make_mask_generator
    from albert_tf.tokenizer import load_tokenizer
    from albert_tf.training import make_optimizer
    from pipelines.pretraining_data import run_pretraining_data_bare
    from tests.conftest import make_review_corpus

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chief = is_chief(strategy)
    length = args.sequence_length
    tokenizer = load_tokenizer(args.spm_model)
    docs = [{"id": f"doc{i:05d}", "kind": "review", "text": " ".join(s), "sentences": s}
            for i, s in enumerate(make_review_corpus(120))]
    records = run_pretraining_data_bare(docs, args.spm_model, sequence_length=length,
                                        validation_fraction=0.0).records["train"]
    instances = Instances.from_records(records)
    if args.batching == "padded":
        masker = make_mask_generator(tokenizer.vocabulary_size(), tokenizer.mask_token_id,
                                     tokenizer.special_token_ids, sequence_length=length)
        dataset = instance_dataset(instances, masker, args.batch_size, length,
                                   seed=args.seed, num_steps=args.steps)
    else:
        from albert_tf.instances import BothOrders, bucket_maskers, bucketed_dataset

        special = dict(zip(["pad", "unk", "cls", "sep", "mask"], range(5)))
        schema = {"vocabulary_size": tokenizer.vocabulary_size(), "special_token_ids": special}
        dataset = bucketed_dataset(BothOrders.from_instances(instances),
                                   bucket_maskers(schema, length), args.batch_size * length,
                                   length, seed=args.seed, num_steps=args.steps)
    dataset = with_distribute_options(dataset)

    # What this worker's replica gets of the first global batch (row lengths: masking is random).
    def row_lengths(batch) -> list[int]:
        return np.sum(batch[0]["padding_mask"].numpy(), axis=1).tolist()

    first_global = row_lengths(next(iter(dataset)))
    first_local = next(iter(strategy.experimental_distribute_dataset(dataset)))
    first_local = row_lengths(tf.nest.map_structure(
        lambda v: strategy.experimental_local_results(v)[0], first_local))

    keras.utils.set_random_seed(args.seed)
    with strategy.scope():
        config = get_config("nano", vocabulary_size=tokenizer.vocabulary_size())
        model = AlbertPretrainer(keras_hub.models.AlbertBackbone(**config.backbone_kwargs()))
        compile_pretrainer(model, make_optimizer("adamw", 3e-3, 1, args.steps),
                           jit_compile=jit_compile_for(strategy, args.xla))
        model.optimizer.build(model.trainable_variables)  # (variables: inside the scope)

    # A worker that missed the chief's checkpoint: `sync_from_chief` gives it the chief's state.
    if chief:
        model.optimizer.iterations.assign(3)
    else:
        model.set_weights([w + 1 for w in model.get_weights()])
    synced_step = sync_from_chief(model, strategy)
    model.optimizer.iterations.assign(0)
    # Stopping early is agreed on: true everywhere when one worker says so.
    stop_votes = [any_worker(not chief, strategy), any_worker(False, strategy)]

    np.savez(out / "initial.npz", *model.get_weights())
    history = model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0)
    np.savez(out / "final.npz", *model.get_weights())
    # The chief saves alone (no collective in saving), the others into a deleted scratch folder;
    # the collective afterwards would hang or fail if saving had been one.
    with chief_dir(out / "checkpoints", strategy) as checkpoint_dir:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        if chief:
            model.save_weights(checkpoint_dir / "final.weights.h5")
        scratch = str(checkpoint_dir)
    stop_votes.append(any_worker(chief, strategy))
    result = {
        "chief": chief,
        "replicas": strategy.num_replicas_in_sync,
        "jit_compile": bool(model.jit_compile),
        "synced_step": synced_step,
        "stop_votes": stop_votes,
        "step": int(model.optimizer.iterations.numpy()),
        "checkpoint_dir": scratch,
        "first_batch_lengths": {"global": first_global, "local": first_local},
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
