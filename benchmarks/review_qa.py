"""Review question answering on SubjQA (EVAL.md protocol): exact match and token F1 on each domain's
test split, over all, answerable and unanswerable questions, for each system side by side.

Systems: baselines, and with `--models` encoders fine-tuned for extractive QA (`albert_tf.qa`):
train fits, dev keeps the best checkpoint and chooses the no-answer threshold, test reports.
  - `no answer`: says "not answered" to every question, the floor set by the unanswerable share;
  - `overlap, threshold 0`: the review sentence sharing the most content words with the
    question (`review_qa.OverlapBaseline` at threshold 0: "not answered" only when no sentence
    shares a word);
  - `overlap`: the same, with "not answered" below an overlap threshold chosen on dev (EVAL.md:
    dev chooses the no-answer threshold).

    python benchmarks/review_qa.py                       # the baselines, both domains
    python benchmarks/review_qa.py --models teacher student=WS/distill/preset --minutes 10

Writes benchmarks/results/review_qa.json and review_qa.md, keeping the systems of earlier runs
that this run did not measure (each with its date and commit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    REPO,
    RESULTS,
    machine,
    markdown_table,
    write_results,
)
from pipelines.quality import review_qa  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def fine_tuned_system(preset: Path, train, dev, args, work: Path) -> tuple:
    """Fine-tune extractive QA from `preset` (`opinionrec train-qa`'s training): returns
    (predict, threshold, training facts)."""
    from pipelines.train_qa import QAOptions, fine_tune_review_qa

    options = QAOptions(sequence_length=args.sequence_length, stride=args.stride,
                        batch_size=args.batch_size, learning_rate=args.learning_rate,
                        epochs=args.epochs, minutes=args.minutes, eval_every=args.eval_every,
                        seed=args.seed)
    trained = fine_tune_review_qa(preset, train, dev, options, work)
    return trained.predict, trained.threshold, trained.facts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--domains", nargs="*", default=list(review_qa.DOMAINS),
                        choices=list(review_qa.DOMAINS))
    parser.add_argument("--models", nargs="*", default=[], metavar="NAME=PRESET",
                        help="fine-tune these encoders for extractive QA beside the baselines: "
                        "`teacher` (the packaged MiniLM) or NAME=PRESET_FOLDER (e.g. "
                        "student=WS/distill/preset)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="training budget per model and domain (default: %(default)s)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--sequence-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=64,
                        help="pieces shared by consecutive windows of a long review")
    parser.add_argument("--eval-every", type=int, default=150, help="steps between dev checks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    presets = {}
    for entry in args.models:
        name, _, preset = entry.partition("=")
        if name == "teacher" and not preset:
            from albert_tf.distillation import minilm_folder

            preset = str(minilm_folder())
        presets[name] = Path(preset)

    results, rows = {}, []
    run = machine()  # when and at which commit each system below was measured
    for domain in args.domains:
        dev = review_qa.load_split(args.data, domain, "dev")
        test = review_qa.load_split(args.data, domain, "test")
        results[domain] = {"dev": len(dev), "test": len(test),
                           "test_answerable": sum(e.answerable for e in test), "systems": {}}
        candidates = {name: (predict, threshold, {})
                      for name, (predict, threshold) in review_qa.baseline_systems(dev).items()}
        train = review_qa.load_split(args.data, domain, "train") if presets else []
        for name, preset in presets.items():
            with tempfile.TemporaryDirectory() as work:
                candidates[name] = fine_tuned_system(preset, train, dev, args, Path(work))
        for name, (predict, threshold, facts) in candidates.items():
            started = time.perf_counter()
            scores = review_qa.score(test, predict(test))
            seconds = time.perf_counter() - started
            results[domain]["systems"][name] = {
                **scores, "threshold": threshold, "test_seconds": round(seconds, 2), **facts,
                "measured": run["date"], "commit": run["commit"],
                "options": {k: getattr(args, k) for k in ("minutes", "epochs", "learning_rate",
                                                          "batch_size", "sequence_length")}
                if facts else {}}
            print(f"{domain} {name}: F1 {scores['all']['f1']:.3f} (answerable "
                  f"{scores['answerable']['f1']:.3f}, unanswerable "
                  f"{scores['unanswerable']['f1']:.3f}) {facts}", flush=True)
    results = merged(RESULTS / "review_qa.json", results)
    for domain, entry in results.items():
        for name, system in entry["systems"].items():
            threshold = system["threshold"]
            rows.append([domain, name, "-" if threshold is None else f"{threshold:.2f}",
                         100 * system["all"]["exact_match"], 100 * system["all"]["f1"],
                         100 * system["answerable"]["f1"], 100 * system["unanswerable"]["f1"],
                         f"{system['train_seconds'] / 60:.1f}" if "train_seconds" in system
                         else "-"])
    table = markdown_table(["domain", "system", "no-answer threshold", "EM", "F1",
                            "F1 answerable", "F1 unanswerable", "training min"], rows)
    print(table)
    write_results("review_qa", {"results": results}, table)
    return 0


def merged(path: Path, new: dict) -> dict:
    """The results in `path` with `new`'s systems added or replaced, per domain: a fine-tune of
    one model on one domain takes half an hour here, and a later run of the baselines (or of
    another model) must not drop it. Each system records when and at which commit it ran."""
    import json

    previous = json.loads(path.read_text()).get("results", {}) if path.exists() else {}
    for domain, entry in new.items():
        kept = previous.get(domain, {}).get("systems", {})
        previous[domain] = {**entry, "systems": {**kept, **entry["systems"]}}
    return previous


if __name__ == "__main__":
    raise SystemExit(main())
