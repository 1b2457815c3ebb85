"""Does a Beam join keep every document? The features job's shape, a stand-in model, per mode.

`features` reads documents, explodes them into sentences, runs a model over the sentences
(RunInference) and joins the sentences back to their documents (CoGroupByKey). At 10^5 reviews
the DirectRunner's multi_processing mode wrote 62,424 of 100,020 documents. This script rebuilds
that graph with a stand-in model (a fixed vector per sentence, and optionally a sleep per batch to
make the model stage as long as a real one) and counts, per variant, the documents that reach the
join with their sentences, with none, and the sentences' documents that lose theirs.

The cause was Beam's: the runner's data channel to its workers flushes on a 1 s timer that races
the writer (`pipelines.beam_options.keep_every_chunk_sent_to_workers`). The variants run 2
processes with Beam's timer and with ours turned off, side by side. Only a stage input that takes
the runner over 1 s to write can lose chunks, so the loss shows more often with more documents.

    python benchmarks/beam_join_loss.py                   # 10^5 documents, 3 variants, 8 runs
    python benchmarks/beam_join_loss.py --docs 300000 --repeats 5 \
        --variants "2 processes, Beam's flush timer" "2 processes, timer off (ours)"

Writes benchmarks/results/beam_join_loss.json and .md.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)
from apache_beam.runners.portability.fn_api_runner import worker_handlers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402
from pipelines.beam_options import (  # noqa: E402
    keep_every_chunk_sent_to_workers,
    pipeline_options,
)

TWO_PROCESSES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
BEAM_FLUSH_TIMER_MS = 1000  # worker_handlers.DATA_BUFFER_TIME_LIMIT_MS as Beam 2.77 ships it
VARIANTS = {  # name: (Beam flags, the runner's data-channel flush timer in ms; 0 = off)
    "in memory": ([], 0),
    "2 processes, Beam's flush timer": (TWO_PROCESSES, BEAM_FLUSH_TIMER_MS),
    "2 processes, timer off (ours)": (TWO_PROCESSES, 0),
}
COUNTERS = "beam_join_loss"


class StandInModel(ModelHandler):
    """A 256-float vector per sentence, after `sleep` seconds per batch of 64."""

    def __init__(self, sleep: float):
        super().__init__()
        self.sleep = sleep

    def load_model(self):
        return None

    def run_inference(self, batch, model, inference_args=None):
        time.sleep(self.sleep)
        return [PredictionResult(x, np.full(256, len(x), "float32")) for x in batch]

    def batch_elements_kwargs(self):
        return {"max_batch_size": 64}


def write_documents(path: Path, count: int, seed: int) -> None:
    """`count` documents of 1-8 sentences, in row groups of 5,000 (Parquet splits)."""
    rng = random.Random(seed)
    texts = [" . ".join(f"word{rng.randint(0, 999)}" for _ in range(rng.randint(1, 8)))
             for _ in range(count)]
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(count)], "text": texts}), path,
                   row_group_size=5000)


def explode(doc: dict):
    for index, sentence in enumerate(doc["text"].split(" . ")):
        yield f"{doc['id']}#{index}", sentence


def join_counts(element) -> None:
    """Count what reached the join for one key."""
    _, grouped = element
    has_doc, has_sentences = bool(list(grouped["doc"])), bool(list(grouped["sentences"]))
    name = {(True, True): "joined", (True, False): "doc_without_sentences",
            (False, True): "sentences_without_doc"}[(has_doc, has_sentences)]
    beam.metrics.Metrics.counter(COUNTERS, name).inc()


def run_variant(source: Path, flags: list[str], sleep: float, flush_timer_ms: int = 0) -> dict:
    """One run of the graph; `flush_timer_ms` > 0 puts Beam's own flush timer back."""
    pipeline = beam.Pipeline(options=pipeline_options(flags))
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = flush_timer_ms  # read when the run starts
    docs = pipeline | "Read" >> beam.io.ReadFromParquet(str(source))
    sentences = (docs | "Sentences" >> beam.FlatMap(explode)
                 | "Model" >> RunInference(KeyedModelHandler(StandInModel(sleep)))
                 | "DocKey" >> beam.MapTuple(lambda key, result: (key.split("#")[0], result)))
    _ = ({"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], d["id"])),
          "sentences": sentences}
         | "Join" >> beam.CoGroupByKey() | "Count" >> beam.Map(join_counts))
    started = time.perf_counter()
    try:
        result = pipeline.run()
        result.wait_until_finish()
    finally:
        keep_every_chunk_sent_to_workers()  # our setting again for whatever runs next
    seconds = time.perf_counter() - started
    counts = {c.key.metric.name: c.committed
              for c in result.metrics().query(beam.metrics.MetricsFilter().with_namespace(
                  COUNTERS))["counters"]}
    return {"seconds": round(seconds, 1), "joined": counts.get("joined", 0),
            "doc_without_sentences": counts.get("doc_without_sentences", 0),
            "sentences_without_doc": counts.get("sentences_without_doc", 0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=100_000,
                        help="documents (default: %(default)s)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=8,
                        help="runs of each variant: the loss differs from run to run "
                             "(default: %(default)s)")
    parser.add_argument("--model-sleep", type=float, default=0.0,
                        help="seconds the stand-in model sleeps per batch of 64, to make the "
                             "model stage as long as a real one (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "docs.parquet"
        write_documents(source, args.docs, args.seed)
        for name in args.variants:
            flags, flush_timer_ms = VARIANTS[name]
            for repeat in range(1, args.repeats + 1):
                counts = run_variant(source, flags, args.model_sleep, flush_timer_ms)
                rows.append({"variant": name, "run": repeat, "documents": args.docs, **counts,
                             "lost": args.docs - counts["joined"]})
                print(f"{name}, run {repeat}: {counts}", flush=True)
    summary = []
    for name in args.variants:
        runs = [row for row in rows if row["variant"] == name]
        summary.append({"variant": name, "runs": len(runs),
                        "runs_with_loss": sum(row["lost"] > 0 for row in runs),
                        "documents_lost": sum(row["lost"] for row in runs),
                        "median_seconds": float(np.median([row["seconds"] for row in runs]))})
    columns = ["variant", "run", "documents", "joined", "doc_without_sentences",
               "sentences_without_doc", "lost", "seconds"]
    summary_columns = ["variant", "runs", "runs_with_loss", "documents_lost", "median_seconds"]
    table = (markdown_table(summary_columns, [[row[c] for c in summary_columns]
                                              for row in summary])
             + "\n\n" + markdown_table(columns, [[row[c] for c in columns] for row in rows]))
    print(table)
    write_results("beam_join_loss", {"docs": args.docs, "model_sleep": args.model_sleep,
                                     "summary": summary, "results": rows}, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
