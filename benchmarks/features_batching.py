"""The features job's inference: one call per Beam bundle against sorted sub-batches.

`features` runs the exported `text_features` SavedModel over every sentence (Beam RunInference,
bundles of up to 256). The model trims each call to its longest text, but a bundle of sentences
in document order almost always holds one long sentence, so the whole bundle is encoded at nearly
full width. `pipelines.features.SavedModelHandler` sorts each bundle by length and calls the
model on sub-batches of 64. Both variants run here side by side on the same bundles of real
sentences, alternating, and their outputs are compared.

    python benchmarks/features_batching.py --workspace WS            # WS: after `finetune`
    python benchmarks/features_batching.py --workspace WS --sentences 4000 --repeats 3

Writes benchmarks/results/features_batching.{json,md}.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402

BUNDLE = 256
VARIANTS = {"one call per bundle of 256": None, "sorted sub-batches of 64": 64}


def read_sentences(workspace: Path, limit: int) -> list[str]:
    """Body sentences of the workspace's ingested reviews and news, in document order (the
    order the features job bundles them in)."""
    from pipelines.corpus import read_docs
    from pipelines.workspace import Workspace

    docs = read_docs(Workspace(workspace).docs, kinds=["review", "news"],
                     columns=["text", "sentences"])
    sentences = []
    for row in docs.itertuples(index=False):
        parts = row.sentences if row.sentences is not None and len(row.sentences) else [row.text]
        sentences += [s for s in parts if s and s.strip()]
        if len(sentences) >= limit:
            break
    return sentences[:limit]


def run_all(handler, model, bundles) -> tuple[float, list]:
    start = time.perf_counter()
    outputs = [list(handler.run_inference(bundle, model)) for bundle in bundles]
    return time.perf_counter() - start, outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True,
                        help="a workspace after `finetune` (its text_features model and docs)")
    parser.add_argument("--sentences", type=int, default=4096,
                        help="sentences to encode per variant and repeat (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import numpy as np

    from pipelines.features import SavedModelHandler
    from pipelines.workspace import Workspace

    model_dir = str(Workspace(args.workspace).text_features_model)
    sentences = read_sentences(args.workspace, args.sentences)
    bundles = [sentences[i:i + BUNDLE] for i in range(0, len(sentences), BUNDLE)]
    handlers = {name: SavedModelHandler(model_dir, max_batch_size=BUNDLE, sub_batch_size=sub)
                for name, sub in VARIANTS.items()}
    model = next(iter(handlers.values())).load_model()
    for handler in handlers.values():  # warm-up: trace every width once
        run_all(handler, model, bundles[:2])
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    outputs = {}
    for _ in range(args.repeats):
        for name, handler in handlers.items():
            seconds, outputs[name] = run_all(handler, model, bundles)
            times[name].append(seconds)
            print(f"{name}: {len(sentences) / seconds:.1f} sentences/s", flush=True)

    def embeddings(name):
        return np.stack([r.inference["embedding"] for rs in outputs[name] for r in rs])

    def labels(name):
        return [r.inference["sentiment_label"] for rs in outputs[name] for r in rs]

    first, second = VARIANTS
    max_diff = float(np.abs(embeddings(first) - embeddings(second)).max())
    same_labels = float(np.mean([a == b for a, b in zip(labels(first), labels(second))]))
    rows, result = [], {"workspace": str(args.workspace), "sentences": len(sentences),
                        "bundle": BUNDLE, "repeats": args.repeats, "variants": {}}
    base = statistics.median(times[first])
    for name in VARIANTS:
        median = statistics.median(times[name])
        result["variants"][name] = {"seconds": times[name], "median_seconds": median,
                                    "sentences_per_second": len(sentences) / median}
        rows.append([name, f"{len(sentences) / median:.1f}", f"{median:.1f}",
                     f"{base / median:.2f}x"])
    result.update(max_embedding_difference=max_diff, same_sentiment_label=same_labels)
    table = markdown_table(["inference", "sentences/s", "median s", "speed-up"], rows)
    table += (f"\n\n{len(sentences)} sentences of `{args.workspace}` in bundles of {BUNDLE}, "
              f"median of {args.repeats}; largest embedding difference between the variants "
              f"{max_diff:.2e}, same sentiment label for {100 * same_labels:.1f}% of sentences.")
    print(table)
    write_results("features_batching", result, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
