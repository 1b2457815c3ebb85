"""`opinionrec finetune`: sentiment (from review ratings) and topic (from news) heads on ALBERT.

Also measures both heads on held-out documents beside a TF-IDF + logistic-regression baseline on
the same split, and exports the `text_features` SavedModel that the `features` job runs.

With `--task` / `--dataset` it fine-tunes one task on one benchmark dataset of EVAL.md instead
(`pipelines.tasks`), writing a keras-hub model folder that `opinionrec evaluate` scores.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from pipelines import workspace as ws_lib
from pipelines.corpus import held_out, split_key

log = logging.getLogger("opinionrec")


# The workspace fine-tune's budget when none is given: a corpus of a few thousand reviews took 23
# minutes on 2 cores without one; the heads are near their best well before that.
DEFAULT_MAX_MINUTES = 10.0
SCRATCH_LEARNING_RATE, PRETRAINED_LEARNING_RATE = 1e-3, 1e-4
# A tiny ALBERT pretrained here on Chinese reviews collapses at 1e-3 (online_shopping, 10k
# reviews: every review read positive, held-out accuracy 0.52, macro-F1 0.34; from a random
# init at 1e-4: 0.82 / 0.82), while English keeps 1e-3 (Gift_Cards: 0.988 / 0.497 at 1e-3, 0.941
# / 0.434 at 1e-4). `vocab` records the corpus language.
CHINESE_SCRATCH_LEARNING_RATE = 1e-4
# Of the budget, this share (at most a minute) is kept for what follows training: scoring the
# held-out documents beside TF-IDF + LR and exporting the SavedModel (30-80 s on a few thousand
# reviews on 2 cores), so the stage as a whole keeps to --max-minutes.
AFTER_TRAINING_SHARE, AFTER_TRAINING_MAX_MINUTES = 0.2, 1.0


def training_minutes(budget: float | None) -> float | None:
    """The training part of a stage budget (None: no limit)."""
    if budget is None:
        return None
    return budget - min(AFTER_TRAINING_SHARE * budget, AFTER_TRAINING_MAX_MINUTES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--preset", default=None,
                        help="pretrained weights to start from: a keras-hub preset folder or a "
                        "Hugging Face ALBERT or BERT checkpoint folder (default: the pretrain "
                        "stage's preset, or the teacher with --encoder minilm)")
    parser.add_argument("--encoder", choices=["auto", "albert", "student", "minilm"],
                        default="auto",
                        help="auto: the student when the workspace has one (`opinionrec "
                        "distill`), else albert; albert: the ALBERT of the pretrain stage (or "
                        "--preset); student: "
                        "the ALBERT student of the distill stage (initialised from and distilled "
                        "from the teacher, WordPiece tokenization in the exported graph); "
                        "minilm: the packaged teacher all-MiniLM-L6-v2 itself (a 6-layer BERT "
                        "pretrained on a billion sentence pairs), which needs no pretrain stage "
                        "(default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=None,
                        help="tokens per text; longer texts are truncated (default: 128; with "
                        "--task, enough for 95%% of the training texts, at most "
                        "--max-sequence-length)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="texts per step (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=3.0,
                        help="passes over the labelled documents (default: %(default)s)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time budget of the stage: training stops within one step so that "
                        "scoring and export (20%% of it, at most a minute) fit too, keeping "
                        f"what was learned (default: {DEFAULT_MAX_MINUTES:g} for the "
                        "workspace's heads; with --task, training alone and no limit; "
                        "0: no limit)")
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="peak learning rate (default: 1e-3 for an ALBERT pretrained here, "
                        "which likes it high, 1e-4 on a Chinese corpus, where 1e-3 collapses it; "
                        f"{PRETRAINED_LEARNING_RATE:g} for --encoder minilm or student)")
    parser.add_argument("--held-out", type=float, default=0.1,
                        help="fraction of labelled documents held out for evaluation")
    parser.add_argument("--class-weights", choices=["balanced", "none"], default="balanced",
                        help="weight sentiment classes inversely to their frequency; ratings are "
                        "mostly positive, and unweighted heads call most clauses positive "
                        "(default: %(default)s)")
    parser.add_argument("--no-sentence-examples", dest="sentence_examples", action="store_false",
                        help="train on whole reviews and titles only, not also on their sentences")
    parser.add_argument("--max-aspects", type=int, default=8,
                        help="width of the padded aspect outputs of text_features")
    parser.add_argument("--checkpoint-every", type=int, default=100,
                        help="steps between checkpoints (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="data order (default: %(default)s)")
    parser.add_argument("--no-xla", action="store_true", help="train without jit_compile")
    group = parser.add_argument_group(
        "one task on a benchmark dataset (EVAL.md's splits; see `opinionrec evaluate`)")
    group.add_argument("--task", default=None,
                       choices=["sentiment", "topic", "intent", "aspect-terms", "aspect-polarity"],
                       help="what to fine-tune (default with --dataset: the dataset's own task)")
    group.add_argument("--dataset", default=None,
                       help="benchmark dataset: sst2, ag_news, bbc, mind, chnsenticorp, waimai, "
                       "thucnews, banking77, clinc150, semeval14_laptops_aspects, "
                       "semeval14_restaurants_polarity, dong2014_twitter, ...")
    group.add_argument("--output", default=None,
                       help="model folder to write (default: WORKSPACE/tasks/DATASET)")
    group.add_argument("--max-train", type=int, default=None,
                       help="use at most this many training examples (a seeded sample)")
    group.add_argument("--max-sequence-length", type=int, default=128,
                       help="cap of the automatic sequence length (default: %(default)s)")
    group.add_argument("--linear-probe", choices=["auto", "on", "off"], default="auto",
                       help="start the head from a logistic regression on the frozen encoder's "
                       "features, then fine-tune everything (LP-FT); auto: for tasks of 10 or "
                       "more classes (default: %(default)s)")
    group.add_argument("--patience", type=int, default=3,
                       help="stop after this many dev evaluations (one per --checkpoint-every "
                       "steps) without improvement; the best weights are kept "
                       "(default: %(default)s)")
    group.add_argument("--teacher-model", default=None, metavar="DIR",
                       help="task distillation: a model folder of `finetune --task` on the same "
                       "dataset (e.g. --encoder minilm's) whose probabilities the model learns "
                       "beside the labels; a tagger teacher must share the student's vocabulary")
    group.add_argument("--hard-label-weight", type=float, default=0.5,
                       help="with --teacher-model: weight of the gold labels against the "
                       "teacher's distributions (default: %(default)s)")
    group.add_argument("--unlabelled", default=None, metavar="FILE",
                       help="with --teacher-model: more in-domain texts, one per line, that the "
                       "teacher labels for the model (texts of the dataset's dev and test "
                       "splits are left out); for aspect-polarity 'sentence<TAB>aspect term' "
                       "lines")
    group.add_argument("--layer-minutes", type=float, default=0.0,
                       help="with --teacher-model: first this many minutes (of --max-minutes) "
                       "of the student's layers learning the fine-tuned teacher's on the "
                       "task's texts, TinyBERT's first task stage; the student must share the "
                       "teacher's width and vocabulary, as `distill`'s does "
                       "(default: %(default)s, off)")
    group.add_argument("--max-unlabelled", type=int, default=8000,
                       help="use at most this many --unlabelled texts, a seeded sample "
                       "(default: %(default)s)")


def run_task(args: argparse.Namespace) -> int:
    """`--task`/`--dataset`: fine-tune one task on one dataset, then score it on test."""
    from pipelines import tasks
    from pipelines.quality.datasets import DATASETS, load_dataset

    if not args.dataset:
        raise SystemExit("finetune --task needs --dataset NAME (one of: "
                         f"{', '.join(DATASETS)})")
    if args.dataset not in DATASETS:
        raise SystemExit(f"unknown --dataset {args.dataset!r}; choose from {', '.join(DATASETS)}")
    ws = ws_lib.workspace_from_args(args)
    resolve_encoder(args, ws, by_language=False)  # the dataset's own, not the workspace's
    preset = encoder_preset(args, ws)
    if not Path(preset).exists():
        raise SystemExit(f"no pretrained preset at {preset}: run `opinionrec pretrain` (or "
                         "`opinionrec distill`) or pass --preset PATH (a keras-hub preset or "
                         "Hugging Face checkpoint folder)")
    dataset = load_dataset(args.dataset)
    options = tasks.TaskOptions(
        sequence_length=args.sequence_length, max_sequence_length=args.max_sequence_length,
        batch_size=args.batch_size, epochs=args.epochs,
        learning_rate=args.learning_rate,
        max_minutes=args.max_minutes or None, eval_every=args.checkpoint_every,
        patience=args.patience,
        class_weights=args.class_weights == "balanced", max_train=args.max_train,
        seed=args.seed, xla=not args.no_xla, linear_probe=args.linear_probe,
        teacher_model=args.teacher_model, hard_label_weight=args.hard_label_weight,
        unlabelled=args.unlabelled, max_unlabelled=args.max_unlabelled,
        layer_minutes=args.layer_minutes,
    )
    output = args.output or str(ws.root / "tasks" / args.dataset)
    summary = tasks.train_task(dataset, preset, output, options, task=args.task)
    result = tasks.evaluate_task(output, dataset)
    log.info("finetune: %s after %d steps (best dev %.4f at step %d): test %s", args.dataset,
             summary["steps"], summary["best_dev"], summary["best_step"],
             ", ".join(f"{k} {v:.4f}" for k, v in result.items() if isinstance(v, float)))
    log.info("finetune: model folder -> %s (score it again with `opinionrec evaluate --model "
             "%s`)", output, output)
    return 0


def resolve_encoder(args: argparse.Namespace, ws, by_language: bool = True) -> None:
    """Settle `--encoder auto` (the workspace's distilled student if there is one, else the
    pretrain stage's ALBERT) and the default learning rate of the chosen encoder."""
    if args.encoder == "auto":
        args.encoder = "student" if not args.preset and ws.student_preset.exists() else "albert"
        log.info("finetune: encoder %s (%s)", args.encoder,
                 f"the distilled student in {ws.student_preset}" if args.encoder == "student"
                 else "no distilled student in the workspace: the pretrain stage's ALBERT")
    if args.learning_rate is None:
        args.learning_rate = (PRETRAINED_LEARNING_RATE if args.encoder in ("minilm", "student")
                              else SCRATCH_LEARNING_RATE)
        if by_language and args.encoder == "albert" and corpus_language(ws) == "zh":
            args.learning_rate = CHINESE_SCRATCH_LEARNING_RATE
            log.info("finetune: Chinese corpus: learning rate %g (1e-3 collapses a small "
                     "ALBERT pretrained here on Chinese reviews)", args.learning_rate)


def corpus_language(ws) -> str | None:
    """The language `vocab` recorded for the workspace's reviews ("zh", "en"), if any."""
    record = ws_lib.read_stage_record(ws, "vocab") if ws is not None else None
    return ((record or {}).get("summary") or {}).get("language")


def encoder_preset(args: argparse.Namespace, ws) -> str:
    """The folder the chosen encoder loads from: `--preset`, or the encoder's own."""
    if args.preset:
        return args.preset
    if args.encoder == "minilm":
        return str(_minilm_folder())
    return str(ws.student_preset if args.encoder == "student" else ws.pretrained_preset)


def _minilm_folder():
    from albert_tf.distillation import minilm_folder

    try:
        return minilm_folder()
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise SystemExit(f"finetune --encoder minilm: {error}") from error


def _params(args: argparse.Namespace) -> dict:
    keys = ["preset", "encoder", "sequence_length", "batch_size", "epochs", "learning_rate",
            "held_out",
            "class_weights", "sentence_examples", "max_aspects", "checkpoint_every", "seed",
            "no_xla"]
    return {k: getattr(args, k) for k in keys}


def _labelled_texts(docs, sentence_examples: bool = True):
    """Rated reviews teach sentiment (a review without a rating: its 0/1 label, as Chinese
    review sets give); news with a category teach topics.

    A review gives its text, its title and (with `sentence_examples`) each of its sentences, all
    labelled with its rating: aspect polarity is computed on clauses, and a head that has seen only
    whole reviews misreads short texts. Returns the examples, the `split_key` of each one's
    document (to split by document text, so copies of a review share a side), whether each is a
    whole document (metrics are on those) and the topic names.
    """
    import pandas as pd

    from albert_tf.classifier import LabelledTexts, label_to_sentiment, rating_to_sentiment

    topic_labels = sorted(
        {l for l in docs.loc[docs["kind"] == "news", "label"].dropna() if str(l).strip()}
    )
    topic_index = {label: i for i, label in enumerate(topic_labels)}
    data, ids, whole = LabelledTexts(), [], []
    for row in docs.itertuples(index=False):
        text = " ".join(filter(None, [row.title, row.text])) if row.kind == "news" else row.text
        if not text or not text.strip():
            continue
        key = split_key(text)
        sentiment = None
        if row.kind == "review" and row.rating is not None and not pd.isna(row.rating):
            sentiment = rating_to_sentiment(float(row.rating))
        elif row.kind == "review":  # no rating: its own 0/1 (negative/positive) label, if any
            sentiment = label_to_sentiment(row.label)
        if sentiment is not None:
            data.add(text, sentiment=sentiment)
            ids.append(key)
            whole.append(True)  # the flags follow the examples' order: the review comes first
            short_texts = [row.title] if isinstance(row.title, str) and row.title.strip() else []
            if sentence_examples and row.sentences is not None and len(row.sentences) > 1:
                short_texts += [s for s in row.sentences if s and s.strip()]
            for short in short_texts:
                data.add(short, sentiment=sentiment)
                ids.append(key)
                whole.append(False)
        elif row.kind == "news" and row.label in topic_index:
            data.add(text, topic=topic_index[row.label])
            ids.append(key)
            whole.append(True)
    return data, ids, whole, topic_labels


def below_baseline(scores: dict) -> bool:
    """Whether a head's held-out accuracy or macro-F1 is under TF-IDF + logistic regression's."""
    return any(scores["albert"][m] < scores["tfidf_lr"][m] for m in ("accuracy", "macro_f1"))


def split_held_out(keys, whole, texts, fraction: float) -> tuple[list[int], list[int]]:
    """(training example indices, held-out document indices): documents by their text key, and
    no training example (a title or sentence of another review included) that is the exact text
    of a held-out document, so no held-out text has a twin in training."""
    test_mask = held_out(keys, fraction, salt="finetune")
    test = [i for i, (h, w) in enumerate(zip(test_mask, whole)) if h and w]
    held_texts = {keys[i] for i in test}
    train = [i for i, h in enumerate(test_mask)
             if not h and split_key(texts[i]) not in held_texts]
    return train, test


def _scores(y_true, y_pred) -> dict:
    from pipelines.quality import metrics

    return {"accuracy": metrics.accuracy(y_true, y_pred),
            "macro_f1": metrics.macro_f1(y_true, y_pred), "n": int(len(y_true))}


def evaluate_heads(model, preprocessor, train, test, topic_labels) -> dict:
    """Held-out accuracy and macro-F1 of each head, beside TF-IDF + LR on the same split."""
    import numpy as np

    from albert_tf.classifier import predict_probabilities
    from pipelines.quality.baselines import tfidf_lr_predictions

    probs = predict_probabilities(model, preprocessor, test.texts)
    results = {}
    for task, labels_of in (("sentiment", lambda d: d.sentiment), ("topic", lambda d: d.topic)):
        if task == "topic" and not topic_labels:
            continue
        test_y = np.asarray(labels_of(test))
        train_y = np.asarray(labels_of(train))
        keep, keep_train = test_y >= 0, train_y >= 0
        if keep.sum() == 0 or len(set(train_y[keep_train])) < 2:
            continue
        pred = probs[task][keep].argmax(-1)
        baseline = tfidf_lr_predictions(
            [t for t, k in zip(train.texts, keep_train) if k], train_y[keep_train],
            [t for t, k in zip(test.texts, keep) if k], class_weight="balanced",
        )
        results[task] = {"albert": _scores(test_y[keep], pred),
                         "tfidf_lr": _scores(test_y[keep], baseline)}
    return results


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    if args.task or args.dataset:
        return run_task(args)
    args.sequence_length = args.sequence_length or 128
    ws = ws_lib.workspace_from_args(args)
    resolve_encoder(args, ws)
    params = _params(args)
    inputs = {"ingest": "stage:ingest", "vocab": "stage:vocab"}
    if args.preset:
        inputs["preset"] = args.preset
    elif args.encoder == "minilm":
        from albert_tf.distillation import minilm_identity

        inputs["preset"] = minilm_identity()
    elif args.encoder == "student":
        inputs["preset"] = "stage:distill"
    else:
        inputs["preset"] = "stage:pretrain"
    if ws_lib.skip_if_fresh(args, ws, "finetune", params, inputs):
        return 0

    import keras
    import tensorflow as tf

    from albert_tf.classifier import (
        SENTIMENT_LABELS, OpinionClassifier, classification_dataset, compile_classifier,
        load_encoder, make_text_preprocessor,
    )
    from albert_tf.export import TextFeatures, export_text_features
    from albert_tf.text_tasks import length_buckets, mean_batch_width, token_lengths
    from albert_tf.training import (fit_resumable, make_optimizer, save_inference_weights,
                                    warmup_steps_for)
    from pipelines.aspect_mining import AspectLexicon
    from pipelines.corpus import read_docs

    stage_dir = ws.stage_dir("finetune")
    preset = encoder_preset(args, ws)
    if not args.preset and args.encoder == "student" and not ws.student_preset.exists():
        raise SystemExit(f"finetune --encoder student: no student in {ws.student_preset}; run "
                         "`opinionrec distill` first")
    # A fine-tune always starts from the preset: stale checkpoints would resume the wrong run.
    shutil.rmtree(stage_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(stage_dir / "logs", ignore_errors=True)

    with ws_lib.stage_run(ws, "finetune", params, inputs) as record:
        docs = read_docs(ws.docs, kinds=["review", "news"],
                         columns=["title", "text", "rating", "label", "sentences"])
        data, ids, whole, topic_labels = _labelled_texts(docs, args.sentence_examples)
        if not len(data):
            raise SystemExit("finetune: no rated reviews or labelled news in the ingested documents")
        # Held-out documents are scored whole (their titles and sentences are not scored apart).
        train_rows, test_rows = split_held_out(ids, whole, data.texts, args.held_out)
        train, test = data.subset(train_rows), data.subset(test_rows)
        log.info("finetune: %d training texts, %d held-out documents; %s", len(train), len(test),
                 f"{len(topic_labels)} topics: {', '.join(topic_labels)}" if topic_labels
                 else "no labelled news, so no topic head")

        keras.utils.set_random_seed(args.seed)  # initial weights, dropout, masking
        tokenizer, backbone = load_encoder(preset)
        log.info("finetune: %s encoder from %s, %d parameters", type(backbone).__name__, preset,
                 backbone.count_params())
        preprocessor = make_text_preprocessor(tokenizer, args.sequence_length)
        model = OpinionClassifier(backbone, num_sentiments=len(SENTIMENT_LABELS),
                                  num_topics=len(topic_labels))
        steps = max(1, int(args.epochs * len(train) / args.batch_size))
        budget = DEFAULT_MAX_MINUTES if args.max_minutes is None else args.max_minutes or None
        optimizer = make_optimizer("adamw", args.learning_rate,
                                   warmup_steps_for(steps // 10, budget), steps)
        compile_classifier(model, optimizer, jit_compile=not args.no_xla)

        # Batches of similar-length texts, trimmed: review sentences are far shorter than 128.
        lengths = token_lengths(preprocessor, train.texts)
        width = mean_batch_width(lengths, args.batch_size, length_buckets(args.sequence_length),
                                 args.seed)
        log.info("finetune: batches of similar length, %.1f tokens wide on average (of %d)",
                 width, args.sequence_length)

        def train_ds(start_step: int, num_steps: int):
            return classification_dataset(
                train, preprocessor, args.batch_size, len(topic_labels), seed=args.seed,
                start_step=start_step, num_steps=num_steps,
                balance_sentiment=args.class_weights == "balanced", lengths=lengths,
            )

        fit_resumable(
            model, train_ds, total_steps=steps, steps_per_checkpoint=args.checkpoint_every,
            checkpoint_dir=stage_dir / "checkpoints", log_dir=stage_dir / "logs",
            keep_checkpoints=1, max_minutes=training_minutes(budget),
            anneal_in_budget=True,
            tokens_per_step=round(args.batch_size * width),
        )
        metrics = evaluate_heads(model, preprocessor, train, test, topic_labels) if len(test) else {}
        for task, scores in metrics.items():
            log.info("finetune: held-out %s accuracy %.3f (TF-IDF + LR %.3f), macro-F1 %.3f (%.3f)",
                     task, scores["albert"]["accuracy"], scores["tfidf_lr"]["accuracy"],
                     scores["albert"]["macro_f1"], scores["tfidf_lr"]["macro_f1"])
            scores["below_baseline"] = below_baseline(scores)
            if scores["below_baseline"]:
                log.warning("finetune: the %s head is BELOW its TF-IDF + LR baseline on held-out "
                            "documents (accuracy or macro-F1); pretrain longer or start from a "
                            "better preset before trusting its features", task)
        save_inference_weights(model, stage_dir / "classifier.weights.h5")
        lexicon = AspectLexicon.from_json(json.loads(ws.aspect_lexicon.read_text()))
        heads = {"sentiment_labels": list(SENTIMENT_LABELS), "topic_labels": topic_labels,
                 "aspects": lexicon.names, "sequence_length": args.sequence_length}
        (stage_dir / "heads.json").write_text(json.dumps(heads, indent=2) + "\n")
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

        module = TextFeatures(
            model, preprocessor, SENTIMENT_LABELS, topic_labels, lexicon.term_to_aspect,
            max_aspects=args.max_aspects,
        )
        shutil.rmtree(ws.text_features_model, ignore_errors=True)
        export_text_features(module, ws.text_features_model)
        probe = module.serve(tf.constant(["This works well."]))
        record["summary"] = {"metrics": metrics, "outputs": sorted(probe)}
        log.info("finetune: text_features SavedModel -> %s", ws.text_features_model)
    return 0
