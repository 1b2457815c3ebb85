"""`opinionrec train-qa`: fine-tune extractive review QA on SubjQA and export `review_qa`.

A shopper's question and a review in, the span of the review that answers it out, or "not
answered" (`albert_tf.qa`). The encoder (the packaged MiniLM teacher by default, as the
distilled students measured so far answer almost nothing; or the workspace's student or ALBERT)
is fine-tuned on the SubjQA train split of the chosen domains (EVAL.md "Review QA"), the best
checkpoint and the no-answer threshold are chosen on dev, and test is reported per domain beside
the word-overlap baseline in the same harness; a model whose F1 is not above that baseline's, or
that answers almost nothing, is exported with a loud warning. Writes under `<workspace>/train_qa/`:

  metrics.json   dev and test EM / F1 (all, answerable, unanswerable) of the model and the
                 baselines per domain, the threshold, the training facts, `below_baseline`,
                 `answers_almost_nothing`, each model's `diagnosis`
  checkpoints/   resumable training state; logs/ TensorBoard; qa.weights.h5 the kept weights
  review_qa/     the SavedModel that `export` versions and TF Serving runs (`question`,
                 `context` -> `answer`, `answer_start`, `answer_end`, `score`, `answered`)
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

STAGE = "train-qa"
PRETRAINED_LEARNING_RATE = 1e-4


@dataclass
class QAOptions:
    """How `fine_tune_review_qa` trains (the CLI's and the benchmark's options)."""

    sequence_length: int = 256
    stride: int = 64
    batch_size: int = 16
    learning_rate: float = PRETRAINED_LEARNING_RATE
    epochs: float = 2.0
    minutes: float | None = 20.0
    eval_every: int = 150
    seed: int = 0
    # Task distillation: a fine-tuned QA folder (`train_qa/` of a teacher's run) whose start/end
    # distributions the model learns beside the gold spans, weighted 1 - `hard_label_weight`.
    teacher_model: str | None = None
    hard_label_weight: float = 0.5


@dataclass
class TrainedQA:
    """A fine-tuned QA model, its aligner and its dev-chosen no-answer threshold."""

    model: object
    aligner: object
    threshold: float
    options: QAOptions
    facts: dict = field(default_factory=dict)

    def answers(self, examples) -> list:
        from albert_tf.qa import predict_answers

        return predict_answers(self.model, self.aligner, [e.question for e in examples],
                               [e.context for e in examples], self.options.sequence_length,
                               self.options.stride)

    def predict(self, examples) -> list[str]:
        from albert_tf.qa import apply_threshold

        return apply_threshold(self.answers(examples), self.threshold)


def answer_span(example) -> tuple[int, int] | None:
    return ((example.answer_start, example.answer_start + len(example.answer))
            if example.answer_start >= 0 else None)


def load_trained_qa(stage_dir: str | Path) -> TrainedQA:
    """A `train-qa` output folder (`qa.weights.h5` + `metrics.json`) as a `TrainedQA` again."""
    from albert_tf.bert import matching_class
    from albert_tf.classifier import load_encoder
    from albert_tf.qa import SpanQuestionAnswerer
    from albert_tf.spans import aligner_for
    from albert_tf.training import load_inference_weights

    stage_dir = Path(stage_dir)
    weights, metrics_path = stage_dir / "qa.weights.h5", stage_dir / "metrics.json"
    if not weights.exists() or not metrics_path.exists():
        raise FileNotFoundError(f"{stage_dir} is not a `train-qa` output folder (it needs "
                                "qa.weights.h5 and metrics.json)")
    metrics = json.loads(metrics_path.read_text())
    tokenizer, backbone = load_encoder(str(_encoder_folder(metrics)))
    model = matching_class(SpanQuestionAnswerer, type(backbone))(backbone)
    load_inference_weights(model, weights)  # older folders' optimizer state is ignored
    options = QAOptions(**{k: v for k, v in metrics["options"].items()
                           if k in QAOptions.__dataclass_fields__})
    return TrainedQA(model, aligner_for(tokenizer), metrics["threshold"], options)


def _encoder_folder(metrics: dict) -> Path:
    """The encoder a `train-qa` run started from; the packaged teacher is found again wherever
    this installation keeps it (metrics record the path of the run's machine)."""
    if metrics.get("encoder") == "minilm":
        from albert_tf.distillation import minilm_folder

        return minilm_folder()
    return Path(metrics["preset"])


def teacher_targets(teacher_dir: str | Path, aligner, encoded: dict,
                    hard_weight: float):
    """Task distillation targets (`albert_tf.qa.span_targets`) from a fine-tuned QA folder over
    the training windows; the teacher must tokenize as the student does, so positions line up."""
    from albert_tf.qa import predict_logits, span_targets
    from albert_tf.spans import tokenizes_alike

    teacher = load_trained_qa(teacher_dir)
    if not tokenizes_alike(teacher.aligner, aligner):
        raise ValueError(f"the teacher {teacher_dir} tokenizes differently from the student; QA "
                         "distillation needs the same vocabulary (distil the student from it)")
    started = time.perf_counter()
    logits = predict_logits(teacher.model, encoded)
    log.info("%s: the teacher %s scored %d training windows in %.1f min", STAGE, teacher_dir,
             len(logits), (time.perf_counter() - started) / 60)
    return span_targets(encoded["labels"], logits, hard_weight)


def fine_tune_review_qa(preset: str | Path, train: Sequence, dev: Sequence, options: QAOptions,
                        work_dir: Path) -> TrainedQA:
    """Fine-tune extractive QA from `preset` on `train` (`review_qa.QAExample`s); dev F1 at its
    best threshold keeps the best checkpoint, then chooses the final no-answer threshold. With
    `options.teacher_model`, the model also learns that fine-tuned teacher's span distributions."""
    import keras

    from albert_tf.bert import matching_class
    from albert_tf.classifier import load_encoder
    from albert_tf.qa import SpanQuestionAnswerer, apply_threshold, encode_for_qa, fine_tune_qa
    from albert_tf.spans import aligner_for
    from pipelines.quality import review_qa

    keras.utils.set_random_seed(options.seed)
    tokenizer, backbone = load_encoder(str(preset))
    aligner = aligner_for(tokenizer)
    model = matching_class(SpanQuestionAnswerer, type(backbone))(backbone)
    trained = TrainedQA(model, aligner, 0.0, options)
    # Answers whose offsets do not fit their review (a few rows) cannot be located: left out.
    usable = [e for e in train if e.answer_start >= 0 or not e.answerable]
    encoded = encode_for_qa(aligner, [e.question for e in usable], [e.context for e in usable],
                            [answer_span(e) for e in usable], options.sequence_length,
                            options.stride)
    targets = None
    if options.teacher_model:
        targets = teacher_targets(options.teacher_model, aligner, encoded,
                                  options.hard_label_weight)

    def threshold_on_dev() -> tuple[float, float]:
        found = trained.answers(dev)
        threshold = review_qa.choose_no_answer_threshold(dev, [a.text for a in found],
                                                         [a.margin for a in found])
        return threshold, review_qa.score(dev, apply_threshold(found, threshold))["all"]["f1"]

    facts = fine_tune_qa(model, encoded, work_dir, batch_size=options.batch_size,
                         learning_rate=options.learning_rate, epochs=options.epochs,
                         max_minutes=options.minutes, dev_score=lambda m: threshold_on_dev()[1],
                         eval_every=options.eval_every, seed=options.seed, targets=targets)
    trained.threshold, dev_f1 = threshold_on_dev()
    trained.facts = {**facts, "dev_f1": dev_f1, "parameters": backbone.count_params(),
                     "train_examples": len(usable)}
    return trained


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--encoder", choices=["minilm", "student", "albert"],
                        default="minilm",
                        help="minilm: the packaged teacher all-MiniLM-L6-v2, the one measured to "
                        "answer (README); student: the workspace's distilled ALBERT student "
                        "(`opinionrec distill`; with --teacher-model to learn from a fine-tuned "
                        "teacher); albert: the pretrain stage's ALBERT (default: %(default)s)")
    parser.add_argument("--preset", default=None,
                        help="pretrained weights to start from instead (a keras-hub preset or a "
                        "Hugging Face ALBERT/BERT checkpoint folder)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the folder holding subjqa-review-qa/ (default: ../shared/data, or "
                        "$OPINIONREC_SHARED_DATA)")
    parser.add_argument("--domains", nargs="+", default=["electronics"],
                        choices=["electronics", "restaurants"],
                        help="SubjQA domains to train and measure on (default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=QAOptions.minutes,
                        help="training budget; the best dev checkpoint is kept "
                        "(default: %(default)s; 0: no limit)")
    parser.add_argument("--epochs", type=float, default=QAOptions.epochs)
    parser.add_argument("--batch-size", type=int, default=QAOptions.batch_size)
    parser.add_argument("--learning-rate", type=float, default=QAOptions.learning_rate)
    parser.add_argument("--sequence-length", type=int, default=QAOptions.sequence_length,
                        help="pieces per window of question + review (default: %(default)s)")
    parser.add_argument("--stride", type=int, default=QAOptions.stride,
                        help="pieces shared by consecutive windows of a long review")
    parser.add_argument("--eval-every", type=int, default=QAOptions.eval_every,
                        help="steps between dev checks (default: %(default)s)")
    parser.add_argument("--teacher-model", default=None, metavar="DIR",
                        help="task distillation: the train_qa/ folder of a fine-tuned teacher "
                        "(e.g. a run with --encoder minilm, copied aside) whose start/end "
                        "distributions the model learns beside the gold spans; it must share "
                        "the model's vocabulary, as the distilled student does")
    parser.add_argument("--hard-label-weight", type=float, default=QAOptions.hard_label_weight,
                        help="with --teacher-model: weight of the gold spans against the "
                        "teacher's distributions (default: %(default)s)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="use at most this many training questions (a seeded sample)")
    parser.add_argument("--seed", type=int, default=QAOptions.seed)


def encoder_preset(args: argparse.Namespace, ws: ws_lib.Workspace) -> str:
    """The folder the chosen encoder loads from."""
    if args.preset:
        args.encoder = "preset"  # recorded: the weights came from --preset, not --encoder
        return args.preset
    if args.encoder == "minilm":
        from albert_tf.distillation import minilm_folder

        try:
            return str(minilm_folder())
        except (ModuleNotFoundError, FileNotFoundError) as error:
            raise SystemExit(f"{STAGE} --encoder minilm: {error}") from error
    preset = ws.student_preset if args.encoder == "student" else ws.pretrained_preset
    if not preset.exists():
        raise SystemExit(f"{STAGE} --encoder {args.encoder}: no preset in {preset}; run "
                         f"`opinionrec {'distill' if args.encoder == 'student' else 'pretrain'}` "
                         "first, or choose --encoder minilm")
    return str(preset)


def measure(trained: TrainedQA, dev: Sequence, test: Sequence) -> dict:
    """Test EM/F1 of the model and the baselines (overlap threshold chosen on the same dev)."""
    from albert_tf.qa import apply_threshold
    from pipelines.quality import review_qa

    found = trained.answers(test)  # read once: the thresholded answers and the diagnosis
    systems = {"model": lambda _: apply_threshold(found, trained.threshold),
               **{name: predict for name, (predict, _) in
                  review_qa.baseline_systems(dev).items()}}
    scores = {}
    for name, predict in systems.items():
        predictions = predict(test)
        answered = [bool(p) for p, e in zip(predictions, test) if e.answerable]
        scores[name] = {**review_qa.score(test, predictions),
                        # The share of answerable questions it answers at all: a model that says
                        # "not answered" to nearly all can still edge past the baseline's F1.
                        "answers_answerable": sum(answered) / max(1, len(answered))}
    scores["model"]["diagnosis"] = diagnosis(test, found)
    return scores


def diagnosis(test: Sequence, found: Sequence) -> dict:
    """Where a QA model falls short, in two numbers: how well it reads spans (answerable F1 were
    it to answer every question) and how well its margin tells answerable questions from the
    rest (ROC AUC; 0.5 is chance)."""
    from sklearn.metrics import roc_auc_score

    from pipelines.quality import review_qa

    labels = [e.answerable for e in test]
    auc = (roc_auc_score(labels, [a.margin for a in found]) if 0 < sum(labels) < len(labels)
           else None)
    return {"answerable_f1_always_answering":
            review_qa.score(test, [a.text for a in found])["answerable"]["f1"],
            "answerability_auc": auc}


# A model answering fewer than this share of the answerable test questions is flagged: it is
# the "not answered" baseline in disguise, whatever its F1.
MIN_ANSWERED_SHARE = 0.05


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    preset = encoder_preset(args, ws)
    options = QAOptions(sequence_length=args.sequence_length, stride=args.stride,
                        batch_size=args.batch_size, learning_rate=args.learning_rate,
                        epochs=args.epochs, minutes=args.minutes or None,
                        eval_every=args.eval_every, seed=args.seed,
                        teacher_model=args.teacher_model,
                        hard_label_weight=args.hard_label_weight)
    params = {**asdict(options), "encoder": args.encoder, "domains": sorted(args.domains),
              "max_train": args.max_train}
    inputs = {"preset": preset}
    if args.teacher_model:
        if Path(args.teacher_model).resolve() == ws.stage_dir(STAGE).resolve():
            raise SystemExit(f"{STAGE} --teacher-model: {args.teacher_model} is this run's own "
                             "output folder; copy the teacher's train_qa/ aside first")
        inputs["teacher"] = str(Path(args.teacher_model) / "qa.weights.h5")
    if ws_lib.skip_if_fresh(args, ws, STAGE, params, inputs):
        return 0

    import random

    from albert_tf.qa_export import ReviewQA, export_review_qa
    from albert_tf.training import save_inference_weights
    from pipelines.quality import review_qa
    from pipelines.quality.datasets import SHARED_DATA

    data = args.data or SHARED_DATA
    if not (Path(data) / "subjqa-review-qa").exists():
        raise SystemExit(f"{STAGE}: {data} has no subjqa-review-qa/ folder (give --data, or set "
                         "OPINIONREC_SHARED_DATA)")
    splits = {split: {d: review_qa.load_split(data, d, split) for d in args.domains}
              for split in ("train", "dev", "test")}
    train = [e for d in args.domains for e in splits["train"][d]]
    if args.max_train and len(train) > args.max_train:
        train = random.Random(args.seed).sample(train, args.max_train)
    dev = [e for d in args.domains for e in splits["dev"][d]]
    log.info("%s: %s encoder from %s; %d training questions, %d dev (%s)", STAGE, args.encoder,
             preset, len(train), len(dev), ", ".join(args.domains))

    with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
        stage_dir = ws.stage_dir(STAGE)
        started = time.perf_counter()
        trained = fine_tune_review_qa(preset, train, dev, options, stage_dir)
        log.info("%s: trained %d steps in %.1f min; dev F1 %.3f at no-answer threshold %.2f",
                 STAGE, trained.facts["steps"], trained.facts["train_seconds"] / 60,
                 trained.facts["dev_f1"], trained.threshold)
        test = {domain: measure(trained, splits["dev"][domain], splits["test"][domain])
                for domain in args.domains}
        # Not above counts: the baseline's dev threshold often says "not answered" to all.
        below = [d for d, s in test.items()
                 if s["model"]["all"]["f1"] <= s["overlap"]["all"]["f1"]]
        for domain, systems in test.items():
            print(f"{domain} test F1: model {100 * systems['model']['all']['f1']:.1f} "
                  f"(answerable {100 * systems['model']['answerable']['f1']:.1f}, unanswerable "
                  f"{100 * systems['model']['unanswerable']['f1']:.1f}; answerable F1 "
                  f"{100 * systems['model']['diagnosis']['answerable_f1_always_answering']:.1f}"
                  f" if it always answered, answerability AUC "
                  f"{systems['model']['diagnosis']['answerability_auc'] or float('nan'):.2f}); "
                  f"overlap baseline "
                  f"{100 * systems['overlap']['all']['f1']:.1f}; always 'not answered' "
                  f"{100 * systems['no answer']['all']['f1']:.1f}")
        if below:
            log.warning("%s: the QA model is BELOW the word-overlap baseline on SubjQA %s test "
                        "(F1 not above it); train longer (--minutes) or start from a better "
                        "encoder before trusting its answers", STAGE, ", ".join(below))
        silent = [d for d, s in test.items()
                  if s["model"]["answers_answerable"] < MIN_ANSWERED_SHARE]
        advice = ("a longer general distillation of the student (`opinionrec distill`), or "
                  "--encoder minilm" if args.teacher_model else
                  "distil from a fine-tuned teacher (--teacher-model) or use --encoder minilm")
        for domain in silent:
            log.warning("%s: the QA model ANSWERS ALMOST NOTHING on SubjQA %s test (%.1f%% of the "
                        "answerable questions): it is no better than always saying 'not "
                        "answered'; try %s", STAGE, domain,
                        100 * test[domain]["model"]["answers_answerable"], advice)
        metrics = {
            "protocol": "EVAL.md Review QA: SubjQA train fits, dev keeps the best checkpoint and "
                        "chooses the no-answer threshold, test reports (SQuAD 2.0 EM / F1)",
            "encoder": args.encoder, "preset": preset, "threshold": trained.threshold,
            "options": asdict(options), "training": trained.facts, "test": test,
            "below_baseline": below, "answers_almost_nothing": silent,
            "seconds": round(time.perf_counter() - started, 1),
        }
        (stage_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        # The kept weights, to re-export without training (no optimizer state: a third the size)
        save_inference_weights(trained.model, stage_dir / "qa.weights.h5")
        module = ReviewQA(trained.model, trained.aligner, options.sequence_length,
                          trained.threshold, stride=options.stride)
        export_review_qa(module, ws.review_qa_model)
        log.info("%s: review_qa SavedModel written to %s", STAGE, ws.review_qa_model)
        record["summary"] = {"test_f1": {d: s["model"]["all"]["f1"] for d, s in test.items()},
                             "below_baseline": below, "answers_almost_nothing": silent,
                             "model": str(ws.review_qa_model)}
    return 0
