"""`opinionrec export`: assemble the TF Serving model folder from the stages' SavedModels.

Takes `finetune/text_features` (served as `text_features`), `train_recommender/recommender`
(`recommender`) and `train-qa/review_qa` (`review_qa`), whichever exist, plus any `--model NAME=PATH`; checks each in a fresh
TensorFlow-only process (loads, answers, no XLA) before it may appear in the served folder;
versions each under `export/models/<name>/<version>/` (a new version only when its content
changed) with warm-up requests built from each signature's inputs; writes `models.config` and
`batching.config`; and prints the command that serves the folder with stock TF Serving.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

STAGE = "export"

# Example values for inputs the stages' models take; other inputs get defaults of their dtype.
WARMUP_SAMPLES: dict[str, list[Any]] = {
    "text": ["The battery life is great, but the sound is muffled.",
             "Fast delivery and a fair price."],
    "user_id": ["warmup-user"],
    "question": ["How is the battery life?", "Is it loud?"],
    "context": ["The battery lasts two days. The screen is sharp.", "Quiet even at full speed."],
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME=PATH",
        help="also export the SavedModel at PATH as NAME (repeatable; overrides a stage's model)",
    )
    parser.add_argument("--keep", type=int, default=2,
                        help="newest versions kept on disk and served (default: %(default)s)")
    parser.add_argument(
        "--absolute-paths", action="store_true",
        help="write this machine's absolute base paths in models.config instead of "
             "/models/<name> (the path inside the TF Serving container)",
    )
    parser.add_argument("--no-check", action="store_true",
                        help="skip loading each model in a fresh TensorFlow-only process")


def models_to_export(workspace: ws_lib.Workspace, overrides: list[str]) -> dict[str, Path]:
    """Served name -> SavedModel folder: the stages' models that exist, then `--model` items."""
    models = {
        name: path
        for name, path in (("text_features", workspace.text_features_model),
                           ("recommender", workspace.recommender_model),
                           ("review_qa", workspace.review_qa_model))
        if (path / "saved_model.pb").exists()
    }
    for item in overrides:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"export: --model expects NAME=PATH. Received: {item!r}")
        if not (Path(path) / "saved_model.pb").exists():
            raise SystemExit(f"export: {path} is not a SavedModel folder (no saved_model.pb)")
        models[name] = Path(path)
    return models


def warmup_inputs(saved_model_dir: Path) -> dict[str, dict[str, list[Any]]]:
    """Signature -> example inputs for every callable signature, from its input names."""
    from serving.signatures import read_meta_graph, serving_signature_names

    signature_defs = read_meta_graph(saved_model_dir).signature_def
    return {
        name: {k: v for k, v in WARMUP_SAMPLES.items() if k in signature_defs[name].inputs}
        for name in serving_signature_names(signature_defs)
    }


def batchable(saved_model_dir: Path) -> bool:
    """Whether TF Serving's batching can serve every signature: batching splits and merges
    inputs along dimension 0, so a scalar input (e.g. `k`) makes a signature unbatchable."""
    from serving.signatures import read_meta_graph, serving_signature_names, shape_of

    signature_defs = read_meta_graph(saved_model_dir).signature_def
    return all(
        (shape_of(info) or []) != []
        for name in serving_signature_names(signature_defs)
        for info in signature_defs[name].inputs.values()
    )


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from serving import layout
    from serving.check import SavedModelCheckError, check_saved_model

    workspace = ws_lib.workspace_from_args(args)
    models = models_to_export(workspace, args.model)
    if not models:
        raise SystemExit(
            "export: nothing to export: run `opinionrec finetune`, `opinionrec "
            "train-recommender` or `opinionrec train-qa` first, or pass --model NAME=PATH"
        )
    params = {"models": sorted(models), "keep": args.keep, "absolute_paths": args.absolute_paths,
              "check": not args.no_check}
    inputs = {f"model:{name}": path for name, path in models.items()}
    root = workspace.models_root
    if (root / layout.MODELS_CONFIG).exists() and ws_lib.skip_if_fresh(
            args, workspace, STAGE, params, inputs):
        return 0

    with ws_lib.stage_run(workspace, STAGE, params, inputs) as record:
        summary: dict[str, Any] = {}
        for name, path in sorted(models.items()):
            warmup = warmup_inputs(path)
            entry: dict[str, Any] = {"source": str(path), "signatures": sorted(warmup)}
            if not args.no_check:
                # Before the version appears: TF Serving would load whatever lands in the folder.
                try:
                    report = check_saved_model(path, warmup)
                except SavedModelCheckError as error:
                    raise SystemExit(f"export: {name} cannot be served: {error}") from None
                entry["check"] = {"load_s": report["load_s"], "signatures": report["signatures"]}
            entry["version"] = layout.export_model(path, root, name, warmup_inputs=warmup,
                                                   keep=args.keep)
            version = entry["version"]
            summary[name] = entry
            log.info("export: %s -> %s/%s/%d", path, root, name, version)
        config = layout.write_models_config(root, absolute_paths=args.absolute_paths,
                                            serve_versions=args.keep)
        layout.write_batching_config(root)
        record["summary"] = summary

    use_batching = all(batchable(root / name / str(e["version"])) for name, e in summary.items())
    print(f"\nExported {len(summary)} model(s) to {root}:")
    for name, entry in summary.items():
        print(f"  {name:<16} version {entry['version']}  signatures: "
              f"{', '.join(entry['signatures'])}")
    print(f"\nServe locally:        opinionrec serve --workspace {workspace.root}")
    command = layout.binary_command if args.absolute_paths else layout.docker_command
    print(f"Serve with TF Serving: {command(root, batching=use_batching)}")
    if not use_batching:
        print("  (without --enable_batching: a signature has a scalar input, which TF Serving's "
              "batching cannot split)")
    print(f"Config: {config}")
    return 0
