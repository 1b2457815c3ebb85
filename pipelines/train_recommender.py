"""`opinionrec train-recommender`: two-tower retrieval + DCN ranker on the features stage's output.

Reads `<workspace>/features/` (aspects.json, items/users/interactions Parquet), splits the
interactions by the EVAL.md "Recommendation" protocol and runs `recommender.fit.fit_recommender`:
the TFRS two-tower model and the first-stage signals (EASE, item-kNN, text and aspect match,
popularity, ratings) are fitted on train, dev chooses the temperature, EASE's strength and the
epochs, and a TFRS deep & cross ranker combines the signals. The model and every single signal
(most-popular, item-kNN, EASE, two-tower, content) are measured in the same harness; when one of
them beats the ranker on dev, it is exported instead and a warning says so. Everything is refitted
on all interactions before export. Writes under `<workspace>/train_recommender/`:

  metrics.json   the figures (dev and test, all users and the cold-start slice), the choices
                 made on dev, the loss per epoch, and `fallback`
  training.png   the two-tower loss and the ranker's dev NDCG per epoch
  logs/          TensorBoard logs of the two-tower runs
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


def _has_interactions(path) -> bool:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows > 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--optional", action="store_true",
                        help="without user-item interactions, say so and exit 0 instead of "
                        "failing (`opinionrec run` uses it: a review table may have no users)")
    parser.add_argument("--epochs", type=int, default=15,
                        help="maximum training epochs (dev Recall@k picks the best; "
                             "default: %(default)s)")
    parser.add_argument("--embedding-dim", type=int, default=32,
                        help="size of the id and tower output embeddings (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=128,
                        help="interactions per batch; the batch's items are the negatives "
                             "(default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=0.05,
                        help="Adagrad learning rate of the two-tower model (default: %(default)s)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[0.05, 0.2],
                        help="softmax temperatures tried for the two-tower model; dev picks one "
                             "(default: %(default)s)")
    parser.add_argument("--patience", type=int, default=3,
                        help="stop after this many epochs without a better dev Recall@k; "
                             "0 = never (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="two-tower models and rankers trained with successive seeds, their "
                             "scores averaged: steadier than one on a few thousand interactions "
                             "(default: %(default)s)")
    parser.add_argument("--ranker-epochs", type=int, default=30,
                        help="maximum epochs of the DCN ranker; dev NDCG@k picks one "
                             "(default: %(default)s)")
    parser.add_argument("--ranker-splits", type=int, default=3,
                        help="inner leave-last-out splits of train that the ranker's training "
                             "lists come from, each peeling one more item off every history "
                             "(default: %(default)s)")
    parser.add_argument("--max-top1-share", type=float, default=0.2,
                        help="exposure cap: no item is top-1 for more than this share of the "
                             "served lists (per-item offsets fitted at export; refused only when "
                             "the best single signal beats it on dev beyond the noise); 1 turns it "
                             "off (default: %(default)s)")
    parser.add_argument("--k", type=int, default=10,
                        help="cut-off of the metrics and default number of recommendations "
                             "served (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--no-group-items", action="store_true",
                        help="keep listings that share reviews (Amazon's variant copies) apart "
                             "instead of merging them into one product")


def format_table(metrics: dict, k: int) -> str:
    """Test metrics of each method side by side (all users; cold-start slice in brackets)."""
    keys = [f"recall@{k}", f"ndcg@{k}", "mrr"]
    header = f"{'method':<20}" + "".join(f"{key:>20}" for key in keys)
    lines = [header, "-" * len(header)]
    for method, parts in metrics["test"].items():
        cells = []
        for key in keys:
            cold = parts["cold_start"][key]
            cold_text = f"({cold:.4f})" if parts["cold_start"]["users"] else "(-)"
            cells.append(f"{parts['all'][key]:.4f} {cold_text:>9}".rjust(20))
        lines.append(f"{method:<20}" + "".join(cells))
    first = next(iter(metrics["test"].values()))
    lines.append(f"test users: {first['all']['users']}, cold-start slice (in brackets): "
                 f"{first['cold_start']['users']}")
    return "\n".join(lines)


def plot_training(training: dict, path) -> None:
    """Two-tower loss and dev recall per epoch and the ranker's dev NDCG per epoch, side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tower, ranker = training["two_tower"], training["ranker"]
    dev_key = next(key for key in ranker if key.startswith("dev_"))
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(12, 3.2))
    epochs = lambda values: range(1, len(values) + 1)  # noqa: E731
    left.plot(epochs(tower["loss_per_epoch"]), tower["loss_per_epoch"], marker="o")
    left.set(title=f"two-tower train loss (T={tower['temperature']})", xlabel="epoch",
             ylabel="per interaction")
    middle.plot(epochs(tower["dev_recall_per_epoch"]), tower["dev_recall_per_epoch"], marker="o")
    middle.set(title="two-tower dev recall@k", xlabel="epoch")
    for number, curve in enumerate(ranker.get(f"{dev_key}_per_seed", [ranker[dev_key]])):
        right.plot(epochs(curve), curve, marker="o", label=f"seed {number + 1}")
    right.set(title=f"ranker {dev_key.replace('_', ' ')}", xlabel="epoch")
    if len(ranker.get(f"{dev_key}_per_seed", [])) > 1:
        right.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    params = {"epochs": args.epochs, "embedding_dim": args.embedding_dim,
              "batch_size": args.batch_size, "learning_rate": args.learning_rate,
              "patience": args.patience, "k": args.k, "seed": args.seed,
              "temperatures": list(args.temperatures), "ranker_epochs": args.ranker_epochs,
              "ranker_splits": args.ranker_splits, "group_items": not args.no_group_items,
              "max_top1_share": args.max_top1_share, "seeds": args.seeds}
    inputs = {"features": "stage:features"}
    if ws_lib.skip_if_fresh(args, ws, STAGE, params, inputs):
        return 0
    if not (ws.features / "interactions.parquet").exists():
        raise SystemExit(f"train-recommender: {ws.features} has no features; run "
                         "`opinionrec features` first")
    if args.optional and not _has_interactions(ws.features / "interactions.parquet"):
        log.info("%s: no user-item interactions in %s (reviews without users, e.g. a review "
                 "table read with `ingest --kind review`); nothing to recommend", STAGE,
                 ws.features)
        return 0

    # Heavy imports here so `opinionrec --help` stays fast.
    from recommender import evaluate as evaluation
    from recommender.data import load_features
    from recommender.fit import fit_recommender
    from recommender.serving_module import build_serving_module, export_recommender
    from recommender.train import TrainConfig

    with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
        stage_dir = ws.stage_dir(STAGE)
        features = load_features(ws.features, group_items=not args.no_group_items)
        split = evaluation.split_interactions(features.interactions)
        num_items, num_users = len(features.items), len(features.users)
        log.info("%s: %d users, %d items; interactions train %d / dev %d / test %d", STAGE,
                 num_users, num_items, len(split.train), len(split.dev), len(split.test))

        config = TrainConfig(epochs=args.epochs, embedding_dim=args.embedding_dim,
                             batch_size=args.batch_size, learning_rate=args.learning_rate,
                             seed=args.seed, patience=args.patience, k=args.k,
                             ranker_epochs=args.ranker_epochs, ranker_splits=args.ranker_splits,
                             seeds=args.seeds)
        result = fit_recommender(
            features, split, config, temperatures=tuple(args.temperatures),
            log_dir=stage_dir / "logs", progress=lambda step: log.info("%s: %s", STAGE, step),
            max_top1_share=args.max_top1_share)
        metrics = {
            "protocol": "EVAL.md Recommendation: leave-last-out, full catalogue, seen excluded; "
                        "fitted on train, chosen on dev",
            "k": args.k,
            "counts": {"users": num_users, "items": num_items, "train": len(split.train),
                       "dev": len(split.dev), "test": len(split.test),
                       "merged_listings": {rep: others for rep, others in
                                           (features.groups or {}).items()}},
            "exported": result.choice,
            "fallback": result.fallback,
            "rerank": result.rerank.as_dict(),
            "max_top1_share": result.max_top1_share,
            "training": result.training,
            "dev": result.dev,
            "test": result.test,
        }
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        plot_training(result.training, stage_dir / "training.png")
        print(format_table(metrics, args.k))

        module = build_serving_module(result.exported, result.ranker, features, args.k,
                                      result.choice, result.rerank, result.max_top1_share)
        export_recommender(module, ws.recommender_model)
        log.info("%s: SavedModel (%s) written to %s", STAGE,
                 "two-tower + DCN ranker" if result.choice == "ranker"
                 else f"FALLBACK: {result.choice} alone", ws.recommender_model)
        record["summary"] = {
            "test": {name: parts["all"] for name, parts in metrics["test"].items()},
            "exported": result.choice,
            "model": str(ws.recommender_model),
        }
    return 0
