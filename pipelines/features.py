"""`opinionrec features`: a Beam job that runs the `text_features` SavedModel over every sentence.

read docs -> one element per sentence -> RunInference (a ModelHandler on `tf.saved_model.load`)
-> per-sentence features -> per-document features -> per-item and per-user aspect/sentiment
profiles, plus the user-item interactions of reviews and of ratings without text. Outputs under
`<workspace>/features/`: `sentences/`, `docs/` (sharded Parquet) and `items.parquet`,
`users.parquet`,
`interactions.parquet`, `aspects.json` — the input contract of `train-recommender`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import (
    KeyedModelHandler, ModelHandler, PredictionResult, RunInference,
)

from pipelines import workspace as ws_lib
from pipelines.aspect_mining import clause_criticises, clause_praises
from pipelines.beam_counts import distribution_sums
from pipelines.corpus import split_key
from recommender.profiles import PRAISE, user_aspect_weights  # one rule for stage and evaluation

log = logging.getLogger("opinionrec")

MAX_QUOTE_CHARS = 220  # a quoted sentence must read as one line


def _stars(rating) -> float | None:
    """A review's rating, None when it has none (missing or NaN)."""
    return None if rating is None or rating != rating else float(rating)


def quotable_praise(polarity: float, sentence: str, rating, terms: Sequence[str]) -> bool:
    """Whether a mention's sentence may be quoted as praise of its aspect: confident praise by the
    encoder, one line long, from a review of 3 stars or more (or unrated), and a clause a reader
    takes as praise too (`clause_praises`). Explanations and `describe` quote by this rule."""
    stars = _stars(rating)
    return (polarity >= PRAISE and len(sentence) <= MAX_QUOTE_CHARS
            and (stars is None or stars >= 3) and clause_praises(sentence, terms))


def quotable_criticism(polarity: float, sentence: str, rating, terms: Sequence[str]) -> bool:
    """The mirror of `quotable_praise` for `describe`'s cons: confident criticism, one line, a
    review of 3 stars or less (or unrated), a clause a reader takes as criticism."""
    stars = _stars(rating)
    return (polarity <= -PRAISE and len(sentence) <= MAX_QUOTE_CHARS
            and (stars is None or stars <= 3) and clause_criticises(sentence, terms))


def quote_rank(polarity: float, sentence: str, alone: bool) -> float:
    """How well a sentence of confident praise quotes it: one about that aspect alone first (not
    "great sound but the battery dies"), then the more positive, then the shorter."""
    return alone * 1.0 + polarity - len(sentence) / 10_000


class SavedModelHandler(ModelHandler[str, PredictionResult, Any]):
    """Runs a raw-text SavedModel signature with `tf.saved_model.load` (no Keras, no TF Hub).

    Beam's stock TF handler loads with `tf.keras.models.load_model` and needs tensorflow-hub; a
    serving signature is all we need, and it is exactly what TF Serving runs.
    """

    def __init__(self, model_dir: str, signature: str = "serving_default", input_name: str = "text",
                 min_batch_size: int = 32, max_batch_size: int = 256,
                 sub_batch_size: int | None = 64):
        self._model_dir = model_dir
        self._sub_batch_size = sub_batch_size or max_batch_size
        self._signature = signature
        self._input_name = input_name
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  registers the SentencePiece ops

        return tf.saved_model.load(self._model_dir).signatures[self._signature]

    def run_inference(self, batch: Sequence[str], model, inference_args=None
                      ) -> Iterable[PredictionResult]:
        import numpy as np
        import tensorflow as tf

        if not batch:
            return
        # The model trims each call to its longest text: calls of similar-length texts (sorted,
        # `sub_batch_size` at a time) encode far less padding than one call over the bundle.
        order = sorted(range(len(batch)), key=lambda i: len(batch[i]))
        parts = []
        for start in range(0, len(order), self._sub_batch_size):
            texts = [batch[i] for i in order[start:start + self._sub_batch_size]]
            outputs = model(**{self._input_name: tf.constant(texts, dtype=tf.string)})
            parts.append({name: value.numpy() for name, value in outputs.items()})
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        arrays = {name: np.concatenate([p[name] for p in parts])[position] for name in parts[0]}
        for i, text in enumerate(batch):
            yield PredictionResult(text, {name: value[i] for name, value in arrays.items()})

    def batch_elements_kwargs(self):
        return dict(self._batching)


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


COUNTERS = "features"


def explode_sentences(doc: dict) -> Iterable[tuple[str, str]]:
    """(key "doc_id\\tindex", sentence) for every body sentence of a document; counts the
    documents that have one (each must come out as one row of `docs/`)."""
    from apache_beam.metrics import Metrics

    sentences = doc.get("sentences") or ([doc["text"]] if doc.get("text") else [])
    kept = [(i, s) for i, s in enumerate(sentences) if s and s.strip()]
    if kept:
        Metrics.counter(COUNTERS, "docs_with_sentences").inc()
    for i, sentence in kept:
        yield f"{doc['id']}\t{i}", sentence


def sentence_record(keyed: tuple[str, PredictionResult]) -> dict:
    key, result = keyed
    doc_id, index = key.rsplit("\t", 1)
    out = result.inference
    count = int(out["aspect_count"])
    record = {
        "doc_id": doc_id,
        "sentence_index": int(index),
        "text": result.example,
        "embedding": out["embedding"].astype("float32").tolist(),
        "sentiment": out["sentiment"].astype("float32").tolist(),
        "sentiment_label": _text(out["sentiment_label"]),
        "aspects": [_text(a) for a in out["aspect_terms"][:count]],
        "aspect_polarity": out["aspect_polarity"][:count].astype("float32").tolist(),
        "topic_label": _text(out["topic_label"]) if "topic_label" in out else "",
    }
    return record


def doc_record(element: tuple[str, dict]) -> Iterable[dict]:
    """Join a document with its sentences' features into one per-document feature row."""
    doc_id, grouped = element
    docs, sentences = grouped["doc"], sorted(grouped["sentences"], key=lambda s: s["sentence_index"])
    if not docs or not sentences:
        return
    doc = docs[0]
    embedding = np.mean([s["embedding"] for s in sentences], axis=0)
    sentiment = np.mean([s["sentiment"] for s in sentences], axis=0)
    topics = [s["topic_label"] for s in sentences if s["topic_label"]]
    yield {
        "doc_id": doc_id,
        "kind": doc["kind"],
        "user": doc.get("user") or "",
        "item": doc.get("item") or "",
        "rating": doc.get("rating"),
        "timestamp": doc.get("timestamp"),
        "position": doc.get("source_position"),
        "source": doc.get("source") or "",
        "text": doc.get("text") or "",
        "embedding": embedding.astype("float32").tolist(),
        "sentiment": sentiment.astype("float32").tolist(),
        "topic_label": max(set(topics), key=topics.count) if topics else "",
        "mentions": [
            {"aspect": a, "polarity": float(p), "sentence": s["text"],
             "alone": len(set(s["aspects"])) == 1}
            for s in sentences for a, p in zip(s["aspects"], s["aspect_polarity"])
        ],
    }


def _add_vectors(total: np.ndarray | None, vector) -> np.ndarray | None:
    """Running sum of embeddings (None = nothing yet), for the profile combiners."""
    if vector is None:
        return total
    vector = np.asarray(vector, dtype="float64")
    return vector if total is None else total + vector


def _mean_vector(total: np.ndarray | None, count: int) -> list[float]:
    return [] if total is None else (total / max(count, 1)).astype("float32").tolist()


class ItemProfileFn(beam.CombineFn):
    """Per item: mean review embedding, per-aspect mean polarity, mentions, praise and best quote.

    `aspect_positive` counts mentions whose clause polarity is at least `PRAISE`; the quote is the
    best such sentence that a reader takes as praise too (`clause_praises`: a positive word and no
    negative one, negation or wish in the clause naming the aspect), from a review rated 3 or more
    (or unrated), kept only when the aspect's praising mentions outnumber its criticising ones
    (polarity at most `-PRAISE`; lukewarm mentions count for neither), as `describe`'s pros.
    """

    def __init__(self, aspects: Sequence[str], terms: dict[str, list[str]] | None = None):
        self._index = {a: i for i, a in enumerate(aspects)}
        self._terms = {a: (terms or {}).get(a) or [a] for a in aspects}

    def create_accumulator(self):
        size = len(self._index)
        return {"n": 0, "emb": None, "score": [0.0] * size, "count": [0] * size,
                "positive": [0] * size, "negative": [0] * size,
                "best": [(-math.inf, "")] * size}

    def add_input(self, acc, doc):
        acc["n"] += 1
        acc["emb"] = _add_vectors(acc["emb"], doc["embedding"])
        for mention in doc["mentions"]:
            i = self._index.get(mention["aspect"])
            if i is None:
                continue
            polarity, sentence = mention["polarity"], mention["sentence"]
            acc["score"][i] += polarity
            acc["count"][i] += 1
            acc["positive"][i] += polarity >= PRAISE
            acc["negative"][i] += polarity <= -PRAISE
            if quotable_praise(polarity, sentence, doc.get("rating"),
                               self._terms[mention["aspect"]]):
                rank = quote_rank(polarity, sentence, mention.get("alone", True))
                if rank > acc["best"][i][0]:
                    acc["best"][i] = (rank, sentence)
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["n"] += acc["n"]
            merged["emb"] = _add_vectors(merged["emb"], acc["emb"])
            for i in range(len(self._index)):
                merged["score"][i] += acc["score"][i]
                merged["count"][i] += acc["count"][i]
                merged["positive"][i] += acc["positive"][i]
                merged["negative"][i] += acc["negative"][i]
                if acc["best"][i][0] > merged["best"][i][0]:
                    merged["best"][i] = acc["best"][i]
        return merged

    def extract_output(self, acc):
        return {
            "n_reviews": acc["n"],
            "embedding": _mean_vector(acc["emb"], acc["n"]),
            "aspect_score": [s / c if c else 0.0 for s, c in zip(acc["score"], acc["count"])],
            "aspect_count": list(acc["count"]),
            "aspect_positive": list(acc["positive"]),
            # An aspect criticised as often as praised has nothing to quote: explanations then
            # never hold up a criticised aspect as a reason to buy.
            "aspect_sentence": [
                best[1] if positive > negative else ""
                for best, positive, negative in zip(acc["best"], acc["positive"],
                                                    acc["negative"])
            ],
        }


class UserProfileFn(beam.CombineFn):
    """Per user: mean review embedding and how often each aspect comes up in their reviews."""

    def __init__(self, aspects: Sequence[str]):
        self._index = {a: i for i, a in enumerate(aspects)}

    def create_accumulator(self):
        return {"n": 0, "emb": None, "count": [0] * len(self._index)}

    def add_input(self, acc, doc):
        acc["n"] += 1
        acc["emb"] = _add_vectors(acc["emb"], doc["embedding"])
        for aspect in {m["aspect"] for m in doc["mentions"]}:  # once per review
            if aspect in self._index:
                acc["count"][self._index[aspect]] += 1
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["n"] += acc["n"]
            merged["emb"] = _add_vectors(merged["emb"], acc["emb"])
            merged["count"] = [a + b for a, b in zip(merged["count"], acc["count"])]
        return merged

    def extract_output(self, acc):
        return {
            "n_reviews": acc["n"],
            "embedding": _mean_vector(acc["emb"], acc["n"]),
            "aspect_count": list(acc["count"]),
        }


SENTENCE_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("sentence_index", pa.int64()), ("text", pa.string()),
    ("embedding", pa.list_(pa.float32())), ("sentiment", pa.list_(pa.float32())),
    ("sentiment_label", pa.string()), ("aspects", pa.list_(pa.string())),
    ("aspect_polarity", pa.list_(pa.float32())), ("topic_label", pa.string()),
])

DOC_FEATURE_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("kind", pa.string()), ("user", pa.string()), ("item", pa.string()),
    ("rating", pa.float64()), ("timestamp", pa.int64()), ("embedding", pa.list_(pa.float32())),
    ("sentiment", pa.list_(pa.float32())), ("topic_label", pa.string()),
    ("aspects", pa.list_(pa.string())), ("aspect_polarity", pa.list_(pa.float32())),
])

ITEM_SCHEMA = pa.schema([
    ("item", pa.string()), ("title", pa.string()), ("n_reviews", pa.int64()),
    ("embedding", pa.list_(pa.float32())), ("aspect_score", pa.list_(pa.float32())),
    ("aspect_count", pa.list_(pa.int32())), ("aspect_positive", pa.list_(pa.int32())),
    ("aspect_sentence", pa.list_(pa.string())),
])

USER_SCHEMA = pa.schema([
    ("user", pa.string()), ("n_reviews", pa.int64()), ("aspect_weight", pa.list_(pa.float32())),
    ("aspect_count", pa.list_(pa.int32())), ("embedding", pa.list_(pa.float32())),
])

INTERACTION_SCHEMA = pa.schema([
    ("user", pa.string()), ("item", pa.string()), ("rating", pa.float64()),
    ("timestamp", pa.int64()), ("position", pa.int64()), ("source", pa.string()),
    ("text_key", pa.string()),
])


def text_key(text) -> str:
    """A short hash of a review's text (case and whitespace folded), "" for none: the recommender
    finds listings that share reviews (the copies Amazon makes for every variant) by it."""
    if not isinstance(text, str) or not text.strip():
        return ""
    return hashlib.sha1(split_key(text).encode("utf-8")).hexdigest()[:16]


def _doc_feature_row(doc: dict) -> dict:
    row = {k: doc[k] for k in DOC_FEATURE_SCHEMA.names if k in doc}
    row["aspects"] = [m["aspect"] for m in doc["mentions"]]
    row["aspect_polarity"] = [m["polarity"] for m in doc["mentions"]]
    return row


def _write_single(pcoll, path: Path, schema: pa.Schema, label: str):
    return pcoll | label >> beam.io.WriteToParquet(
        str(path), schema, num_shards=1, shard_name_template=""
    )


def build_pipeline(pipeline: beam.Pipeline, docs_pattern: str, model_dir: str, out_dir: Path,
                   aspects: Sequence[str], titles: dict[str, str], batch_size: int,
                   aspect_terms: dict[str, list[str]] | None = None) -> None:
    """The features job's graph (see module doc)."""
    all_docs = pipeline | "ReadDocs" >> beam.io.ReadFromParquet(docs_pattern, columns=[
        "id", "kind", "user", "item", "rating", "timestamp", "text", "sentences",
        "source", "source_position"])
    docs = all_docs | "KeepReviewsAndNews" >> beam.Filter(lambda d: d["kind"] in ("review", "news"))
    # Ratings without review text: interactions for the recommender, no text to encode.
    ratings = (
        all_docs
        | "Ratings" >> beam.Filter(lambda d: d["kind"] == "rating" and d["user"] and d["item"])
        | "RatingRows" >> beam.Map(lambda d: {**d, "position": d["source_position"]})
    )
    handler = KeyedModelHandler(SavedModelHandler(model_dir, max_batch_size=batch_size))
    sentences = (
        docs
        | "Sentences" >> beam.FlatMap(explode_sentences)
        | "TextFeatures" >> RunInference(handler)
        | "SentenceRecords" >> beam.Map(sentence_record)
    )
    sentences | "WriteSentences" >> beam.io.WriteToParquet(
        str(out_dir / "sentences" / "sentences"), SENTENCE_SCHEMA, file_name_suffix=".parquet")

    doc_features = (
        {
            "doc": docs | "KeyDocs" >> beam.Map(lambda d: (d["id"], d)),
            "sentences": sentences | "KeySentences" >> beam.Map(lambda s: (s["doc_id"], s)),
        }
        | "JoinSentences" >> beam.CoGroupByKey()
        | "DocFeatures" >> beam.FlatMap(doc_record)
    )
    doc_features | "DocRows" >> beam.Map(_doc_feature_row) | "WriteDocs" >> beam.io.WriteToParquet(
        str(out_dir / "docs" / "docs"), DOC_FEATURE_SCHEMA, file_name_suffix=".parquet")

    reviews = doc_features | "Reviews" >> beam.Filter(
        lambda d: d["kind"] == "review" and d["user"] and d["item"])
    items = (
        reviews
        | "KeyByItem" >> beam.Map(lambda d: (d["item"], d))
        | "ItemProfiles" >> beam.CombinePerKey(ItemProfileFn(aspects, aspect_terms))
        | "ItemRows" >> beam.MapTuple(lambda item, p: {"item": item, "title": titles.get(item, ""), **p})
    )
    _write_single(items, out_dir / "items.parquet", ITEM_SCHEMA, "WriteItems")

    users = (
        reviews
        | "KeyByUser" >> beam.Map(lambda d: (d["user"], d))
        | "UserProfiles" >> beam.CombinePerKey(UserProfileFn(aspects))
    )
    aspect_rate = (
        users
        | "AspectTotals" >> beam.Map(lambda kv: (kv[1]["n_reviews"], kv[1]["aspect_count"]))
        | "SumTotals" >> beam.CombineGlobally(
            lambda rows: _sum_rows(list(rows), len(aspects))).without_defaults()
        | "AspectRate" >> beam.Map(lambda t: [c / max(t[0], 1) for c in t[1]])
    )
    user_rows = users | "UserRows" >> beam.Map(
        lambda kv, rate: {
            "user": kv[0], **kv[1],
            "aspect_weight": user_aspect_weights(kv[1]["aspect_count"], kv[1]["n_reviews"], rate),
        },
        rate=beam.pvalue.AsSingleton(aspect_rate),
    )
    _write_single(user_rows, out_dir / "users.parquet", USER_SCHEMA, "WriteUsers")

    interactions = (reviews, ratings) | "ReviewsAndRatings" >> beam.Flatten()
    interactions = interactions | "Interactions" >> beam.Map(lambda d: {
        "user": d["user"], "item": d["item"], "rating": d["rating"], "timestamp": d["timestamp"],
        "position": d["position"], "source": d["source"], "text_key": text_key(d.get("text"))})
    _write_single(interactions, out_dir / "interactions.parquet", INTERACTION_SCHEMA,
                  "WriteInteractions")


def _sum_rows(rows: list, size: int) -> tuple[int, list[int]]:
    """Sum (n, counts) pairs; also re-combines partial sums (CombineGlobally may call it twice)."""
    n, counts = 0, [0] * size
    for row_n, row_counts in rows:
        n += row_n
        counts = [a + b for a, b in zip(counts, row_counts)]
    return n, counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--model", default=None,
                        help="text_features SavedModel (default: the finetune stage's export)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="largest inference batch (default: %(default)s)")


def _item_titles(items_dir: Path) -> dict[str, str]:
    return _item_columns(items_dir, ["title"])["title"]


def _item_columns(items_dir: Path, columns: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each of `columns` of the ingest items table as item -> string, read in one pass (no
    table: empty)."""
    from pipelines.corpus import read_parquet_dir

    try:
        items = read_parquet_dir(items_dir, ["item", *columns])
    except (FileNotFoundError, KeyError):
        return {column: {} for column in columns}
    # A missing title reads back as NaN (Magazine_Subscriptions' metadata: 2,163 of 2,320 titles
    # were HTML fragments that cleaning emptied); the items table wants a string.
    return {column: {i: t if isinstance(t, str) else "" for i, t in zip(items["item"],
                                                                       items[column]) if i}
            for column in columns}


def _item_names(ws: ws_lib.Workspace) -> dict[str, str]:
    """Every reviewed item's display name (`item_names.display_names`): its title, else what its
    reviews call it, else its brand, each with the id after it; logged by source. The review
    texts are read only when some reviewed item has no title."""
    import pyarrow.parquet as pq

    from pipelines.item_names import display_names

    paths = sorted(ws.docs.glob("*.parquet"))
    items = _item_columns(ws.items, ["title", "brand"])
    titles, brands = items["title"], items["brand"]
    reviewed = {item for path in paths
                for item in pq.read_table(path, columns=["item"]).column("item").to_pylist()}

    def reviews():
        for path in paths:
            table = pq.read_table(path, columns=["item", "text"])
            yield from zip(table.column("item").to_pylist(), table.column("text").to_pylist())

    untitled = any(not titles.get(item, "").strip() for item in reviewed)
    names, sources = display_names(titles, brands, reviews() if untitled else ())
    if sources.get("reviews") or sources.get("brand"):
        log.info("features: item names: %d titles, %d named by their reviews, %d by their brand, "
                 "%d by id only", sources.get("title", 0), sources.get("reviews", 0),
                 sources.get("brand", 0), sources.get("none", 0))
    return names


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    """The features stage; 1 (and no stage record) when the documents written do not add up."""
    from pipelines.beam_counts import NotReconciled

    try:
        return _run(args, beam_args)
    except NotReconciled as error:
        for problem in error.problems:
            log.error("features: counts do not reconcile: %s", problem)
        return 1


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.beam_options import pipeline_options

    ws = ws_lib.workspace_from_args(args)
    model_dir = Path(args.model) if args.model else ws.text_features_model
    params = {"batch_size": args.batch_size}
    inputs = {"ingest": "stage:ingest",
              "model": str(model_dir) if args.model else "stage:finetune"}
    if ws_lib.skip_if_fresh(args, ws, "features", params, inputs):
        return 0
    if not (model_dir / "saved_model.pb").exists():
        raise SystemExit(f"features: no SavedModel at {model_dir}; run `opinionrec finetune` first")
    # The model's own aspects: its finetune stage's heads.json, beside an outside --model too.
    heads_file = (model_dir.parent if args.model else ws.stage_dir("finetune")) / "heads.json"
    heads = json.loads(heads_file.read_text()) if heads_file.exists() else None
    aspects = heads["aspects"] if heads else _aspects_from_lexicon(ws)
    if heads and ws.aspect_lexicon.exists():
        _warn_if_lexicon_moved(aspects, _aspects_from_lexicon(ws))
    out_dir = ws.features
    with ws_lib.stage_run(ws, "features", params, inputs) as record:
        for old in ("sentences", "docs"):
            for f in (out_dir / old).glob("*.parquet"):
                f.unlink()
        (out_dir / "aspects.json").write_text(json.dumps({"aspects": aspects}, indent=2) + "\n")
        options = pipeline_options(beam_args)
        started = time.perf_counter()
        pipeline = beam.Pipeline(options=options)
        build_pipeline(pipeline, str(ws.docs / "*.parquet"), str(model_dir), out_dir,
                       aspects, _item_names(ws), args.batch_size, _aspect_terms(ws))
        result = pipeline.run()
        result.wait_until_finish()
        beam_seconds = time.perf_counter() - started
        _reconcile(result, out_dir)
        micros, calls = distribution_sums(result, "inference_batch_latency_micro_secs")
        summary = {**_summarise(out_dir), "beam_seconds": round(beam_seconds, 2),
                   "inference_seconds": round(micros / 1e6, 2), "inference_calls": calls}
        record["summary"] = summary
        log.info("features: %(sentences)d sentences, %(items)d items, %(users)d users, "
                 "%(interactions)d interactions -> %(dir)s", summary)
        log.info("features: the Beam job took %.1f s, %.1f s of it (summed over workers) in %d "
                 "model calls", beam_seconds, micros / 1e6, calls)
    return 0


def _reconcile(result, out_dir: Path) -> None:
    """Every document with a sentence is one row of `docs/`, or the stage fails (and stays
    stale): a runner that drops rows must not pass for a finished job. (Measured once: a
    2-process DirectRunner run over 10^5 reviews wrote 62,424 of 100,020 documents.)"""
    from pipelines.beam_counts import NotReconciled, counter_values
    from pipelines.ingest.stats import parquet_rows

    expected = counter_values(result, [COUNTERS]).get((COUNTERS, "docs_with_sentences"), 0)
    written = parquet_rows(out_dir / "docs")
    if written != expected:
        raise NotReconciled([f"features: {expected} documents have sentences but {written} "
                             f"were written to {out_dir / 'docs'}"])


def _warn_if_lexicon_moved(model_aspects: Sequence[str], lexicon: Sequence[str]) -> None:
    """The aspect list is baked into `text_features` at `finetune`: warn when `vocab` has since
    mined a different one, which these features will not use until `finetune` re-runs."""
    only_model = [a for a in model_aspects if a not in set(lexicon)]
    only_lexicon = [a for a in lexicon if a not in set(model_aspects)]
    if only_model or only_lexicon:
        log.warning("features: the text_features model was fine-tuned with another aspect list "
                    "than vocab's lexicon (%d aspects only in the model, e.g. %s; %d only in the "
                    "lexicon, e.g. %s); these features use the model's. Re-run `opinionrec "
                    "finetune` (or `opinionrec run`) to use the lexicon", len(only_model),
                    ", ".join(only_model[:5]) or "-", len(only_lexicon),
                    ", ".join(only_lexicon[:5]) or "-")


def _aspect_terms(ws: ws_lib.Workspace) -> dict[str, list[str]]:
    """Aspect name -> its surface terms, from the vocab stage's lexicon (empty without one)."""
    if not ws.aspect_lexicon.exists():
        return {}
    data = json.loads(ws.aspect_lexicon.read_text())
    return {a["name"]: list(a["terms"]) for a in data.get("aspects", [])}


def _aspects_from_lexicon(ws: ws_lib.Workspace) -> list[str]:
    from pipelines.aspect_mining import AspectLexicon

    return AspectLexicon.from_json(json.loads(ws.aspect_lexicon.read_text())).names


def _summarise(out_dir: Path) -> dict:
    import pyarrow.parquet as pq

    def rows(pattern: str) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in out_dir.glob(pattern))

    return {"sentences": rows("sentences/*.parquet"), "items": rows("items.parquet"),
            "users": rows("users.parquet"), "interactions": rows("interactions.parquet"),
            "dir": str(out_dir)}
