"""`opinionrec train-recommender`: train the TFRS two-tower model on the features stage's output.

Reads `<workspace>/features/` (aspects.json, items/users/interactions Parquet), splits the
interactions by the EVAL.md "Recommendation" protocol, trains on train (dev picks the epoch),
measures test Recall@k / NDCG@k / MRR for the model and the most-popular and item-kNN baselines in
the same harness, and writes under `<workspace>/train_recommender/`:

  metrics.json   the figures (dev and test, all users and the cold-start slice) and the options
  logs/          TensorBoard logs of the training run
  recommender/   the SavedModel that `export` versions and TF Serving runs (signatures
                 `serving_default` and `recommend`: item_ids, scores, explanations, titles)
"""

from __future__ import annotations

import argparse
import json
import logging

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

STAGE = "train-recommender"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--epochs", type=int, default=8,
                        help="maximum training epochs (dev Recall@k picks the best; "
                             "default: %(default)s)")
    parser.add_argument("--embedding-dim", type=int, default=32,
                        help="size of the id and tower output embeddings (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="interactions per batch; the batch's items are the negatives "
                             "(default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=0.1,
                        help="Adagrad learning rate (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=2,
                        help="stop after this many epochs without a better dev Recall@k; "
                             "0 = never (default: %(default)s)")
    parser.add_argument("--k", type=int, default=10,
                        help="cut-off of the metrics and default number of recommendations "
                             "served (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def format_table(metrics: dict, k: int) -> str:
    """Test metrics of each method side by side (all users; cold-start slice in brackets)."""
    keys = [f"recall@{k}", f"ndcg@{k}", "mrr"]
    header = f"{'method':<14}" + "".join(f"{key:>20}" for key in keys)
    lines = [header, "-" * len(header)]
    for method, parts in metrics["test"].items():
        cells = []
        for key in keys:
            cold = parts["cold_start"][key]
            cold_text = f"({cold:.4f})" if parts["cold_start"]["users"] else "(-)"
            cells.append(f"{parts['all'][key]:.4f} {cold_text:>9}".rjust(20))
        lines.append(f"{method:<14}" + "".join(cells))
    first = next(iter(metrics["test"].values()))
    lines.append(f"test users: {first['all']['users']}, cold-start slice (in brackets): "
                 f"{first['cold_start']['users']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    params = {"epochs": args.epochs, "embedding_dim": args.embedding_dim,
              "batch_size": args.batch_size, "learning_rate": args.learning_rate,
              "patience": args.patience, "k": args.k, "seed": args.seed}
    inputs = {"features": "stage:features"}
    if ws_lib.skip_if_fresh(args, ws, STAGE, params, inputs):
        return 0
    if not (ws.features / "interactions.parquet").exists():
        raise SystemExit(f"train-recommender: {ws.features} has no features; run "
                         "`opinionrec features` first")

    # Heavy imports here so `opinionrec --help` stays fast.
    from recommender import evaluate as evaluation
    from recommender.data import load_features
    from recommender.serving_module import build_serving_module, export_recommender
    from recommender.train import TrainConfig, model_scorer, train_retrieval

    with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
        stage_dir = ws.stage_dir(STAGE)
        features = load_features(ws.features)
        split = evaluation.split_interactions(features.interactions)
        num_items, num_users = len(features.items), len(features.users)
        log.info("%s: %d users, %d items; interactions train %d / dev %d / test %d", STAGE,
                 num_users, num_items, len(split.train), len(split.dev), len(split.test))

        config = TrainConfig(epochs=args.epochs, embedding_dim=args.embedding_dim,
                             batch_size=args.batch_size, learning_rate=args.learning_rate,
                             seed=args.seed, patience=args.patience, k=args.k)
        result = train_retrieval(features, split, config, log_dir=stage_dir / "logs")

        scorers = {
            "two-tower": model_scorer(result.model, features),
            "most-popular": evaluation.popularity_scorer(split.train, num_items),
            "item-knn": evaluation.item_knn_scorer(split.train, num_users, num_items),
        }
        metrics = {
            "protocol": "EVAL.md Recommendation: leave-last-out, full catalogue, seen excluded",
            "k": args.k,
            "counts": {"users": num_users, "items": num_items, "train": len(split.train),
                       "dev": len(split.dev), "test": len(split.test)},
            "training": {"config": config.as_dict(), "dev_recall_per_epoch": result.dev_recall,
                         "best_epoch": result.best_epoch + 1},
            "dev": {name: evaluation.evaluate(s, split, num_items, "dev", args.k)
                    for name, s in scorers.items()},
            "test": {name: evaluation.evaluate(s, split, num_items, "test", args.k)
                     for name, s in scorers.items()},
        }
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(format_table(metrics, args.k))

        module = build_serving_module(result.model, features, args.k)
        export_recommender(module, ws.recommender_model)
        log.info("%s: SavedModel written to %s", STAGE, ws.recommender_model)
        record["summary"] = {
            "test": {name: parts["all"] for name, parts in metrics["test"].items()},
            "model": str(ws.recommender_model),
        }
    return 0
