"""`opinionrec pretrain`: pretrain ALBERT (MLM + SOP) on the ingested reviews and news."""

from __future__ import annotations

import argparse
import json
import logging
import shutil

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--config", default="tiny",
                        help="model size: nano, mini, tiny, small, base, large (default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=128,
                        help="tokens per training instance (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="instances per step (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10000, help="training steps (default: %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop at the first checkpoint after this many minutes")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="peak learning rate after warm-up (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="default: 10%% of --steps, at most 500")
    parser.add_argument("--optimizer", choices=["adamw", "lamb"], default="adamw",
                        help="AdamW or LAMB, both with linear decay (default: %(default)s)")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="steps between checkpoints and held-out evaluations "
                        "(default: %(default)s)")
    parser.add_argument("--keep-checkpoints", type=int, default=3,
                        help="newest checkpoints kept on disk (default: %(default)s)")
    parser.add_argument("--held-out", type=float, default=0.05,
                        help="fraction of documents held out for evaluation (default: %(default)s)")
    parser.add_argument("--eval-batches", type=int, default=20,
                        help="held-out batches evaluated at each checkpoint (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data order and SOP swaps")
    parser.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    parser.add_argument("--init-from-preset", default=None,
                        help="start from a keras-hub ALBERT preset folder instead of scratch")


def _params(args: argparse.Namespace) -> dict:
    keys = ["config", "sequence_length", "batch_size", "steps", "learning_rate", "warmup_steps",
            "optimizer", "checkpoint_every", "held_out", "seed", "no_xla", "init_from_preset"]
    return {k: getattr(args, k) for k in keys}


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    params = _params(args)
    inputs = {"vocab": "stage:vocab", "ingest": "stage:ingest"}
    if args.init_from_preset:
        inputs["preset"] = args.init_from_preset
    if ws_lib.skip_if_fresh(args, ws, "pretrain", params, inputs):
        return 0

    import keras
    import keras_hub

    from albert_tf.configs import get_config
    from albert_tf.pretraining import (
        AlbertPretrainer, SopPairs, build_sop_pairs, compile_pretrainer,
        make_masked_lm_preprocessor, pretraining_dataset,
    )
    from albert_tf.tokenizer import load_tokenizer
    from albert_tf.training import fit_resumable, make_optimizer, read_history
    from pipelines.corpus import body_sentences, held_out, read_docs

    stage_dir = ws.stage_dir("pretrain")
    checkpoints = stage_dir / "checkpoints"
    run_file = stage_dir / "run.json"
    # Checkpoints of a run with other options cannot be resumed: start over.
    if run_file.exists() and json.loads(run_file.read_text()) != ws_lib.jsonable(
        {**params, "max_minutes": None}
    ):
        log.info("pretrain: options changed; discarding old checkpoints and logs")
        shutil.rmtree(checkpoints, ignore_errors=True)
        shutil.rmtree(stage_dir / "logs", ignore_errors=True)

    with ws_lib.stage_run(ws, "pretrain", params, inputs) as record:
        run_file.write_text(json.dumps(ws_lib.jsonable({**params, "max_minutes": None})))
        docs = read_docs(ws.docs, kinds=["review", "news"], columns=["text", "sentences"])
        is_held_out = held_out(docs["id"], args.held_out)
        train_docs = [body_sentences(r) for r, h in zip(docs.to_dict("records"), is_held_out) if not h]
        eval_docs = [body_sentences(r) for r, h in zip(docs.to_dict("records"), is_held_out) if h]
        max_chars = args.sequence_length * 3
        train_pairs = build_sop_pairs(train_docs, max_chars=max_chars, seed=args.seed)
        eval_pairs = build_sop_pairs(eval_docs, max_chars=max_chars, seed=args.seed + 1)
        eval_size = min(len(eval_pairs), args.eval_batches * args.batch_size)
        eval_pairs = SopPairs(eval_pairs.first[:eval_size], eval_pairs.second[:eval_size],
                              eval_pairs.label[:eval_size])
        log.info("pretrain: %d training and %d held-out instances from %d documents",
                 len(train_pairs), len(eval_pairs), len(docs))
        if not len(train_pairs):
            raise SystemExit("pretrain: no training text in the ingested documents")

        keras.utils.set_random_seed(args.seed)  # initial weights, dropout, masking
        if args.init_from_preset:
            tokenizer = keras_hub.models.AlbertTokenizer.from_preset(args.init_from_preset)
            backbone = keras_hub.models.AlbertBackbone.from_preset(args.init_from_preset)
        else:
            tokenizer = load_tokenizer(ws.spm_model)
            config = get_config(args.config, vocabulary_size=tokenizer.vocabulary_size(),
                                max_sequence_length=max(args.sequence_length, 128))
            backbone = keras_hub.models.AlbertBackbone(**config.backbone_kwargs())
        preprocessor = make_masked_lm_preprocessor(tokenizer, args.sequence_length)
        pretrainer = AlbertPretrainer(backbone)
        warmup = args.warmup_steps if args.warmup_steps is not None else min(500, args.steps // 10)
        optimizer = make_optimizer(args.optimizer, args.learning_rate, warmup, args.steps)
        compile_pretrainer(pretrainer, optimizer, jit_compile=not args.no_xla)
        log.info("pretrain: %s, %d parameters (embeddings %d), XLA %s",
                 args.init_from_preset or args.config, backbone.count_params(),
                 backbone.token_embedding.count_params(), "on" if not args.no_xla else "off")

        eval_ds = pretraining_dataset(eval_pairs, preprocessor, args.batch_size, shuffle=False)
        if len(eval_pairs):
            eval_ds = eval_ds.cache()  # masks drawn once, so every evaluation sees the same ones

        def train_ds(start_step: int, num_steps: int):
            return pretraining_dataset(
                train_pairs, preprocessor, args.batch_size, seed=args.seed,
                start_step=start_step, num_steps=num_steps,
            )

        step = fit_resumable(
            pretrainer, train_ds, total_steps=args.steps,
            steps_per_checkpoint=args.checkpoint_every, checkpoint_dir=checkpoints,
            log_dir=stage_dir / "logs", validation_data=eval_ds if len(eval_pairs) else None,
            keep_checkpoints=args.keep_checkpoints, max_minutes=args.max_minutes,
            tokens_per_step=args.batch_size * args.sequence_length,
        )
        metrics = {"step": step}
        if len(eval_pairs):
            scores = pretrainer.evaluate(eval_ds, return_dict=True, verbose=0)
            metrics.update({
                "held_out_mlm_accuracy": scores["mlm_accuracy"],
                "held_out_sop_accuracy": scores["sop_accuracy"],
                "held_out_loss": scores["loss"],
            })
        metrics["history"] = read_history(stage_dir / "logs")
        shutil.rmtree(ws.pretrained_preset, ignore_errors=True)
        backbone.save_to_preset(str(ws.pretrained_preset))
        tokenizer.save_to_preset(str(ws.pretrained_preset))
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        record["summary"] = {k: v for k, v in metrics.items() if k != "history"}
        log.info("pretrain: step %d; held-out MLM accuracy %.3f, SOP accuracy %.3f; preset -> %s",
                 step, metrics.get("held_out_mlm_accuracy", float("nan")),
                 metrics.get("held_out_sop_accuracy", float("nan")), ws.pretrained_preset)
    return 0
