"""`opinionrec track`: review and news topics followed through event time, and new topics found.

Topics are fitted once and saved (`fit_topic_model`: k-means over the documents' TF-IDF + SVD
vectors, or with `--embedding encoder` the features stage's embeddings, k chosen by clustering
stability, each topic named by its most distinctive terms; `<workspace>/topic_model/`: centroids,
names, a novelty threshold and the fitted TF-IDF + SVD). The Beam job then assigns every
document online to its nearest saved centroid (cosine); a document
further from every centroid than nearly all of the fit's own documents were from theirs is
*novel*. Documents are de-duplicated (a review Amazon copied onto each variant counts once) and
windowed on their own timestamps (`FixedWindows`); per window and topic it aggregates documents,
mean sentiment, share negative, the aspects mentioned most (with their mean polarity) and the
documents nearest the centroid.

After the job, in one process (windows x topics cells are small): volume bursts are scored against
each topic's trailing baseline (`trends.burst_scores`), rises of the share negative per topic are
flagged (`report.flag_shifts`), and the novel documents are grouped (average-linkage clustering,
cut where the fit's own topics hold together) into named new topics with their first window.
Writes in `<workspace>/track/`: `windows.jsonl`, `topics.json` and `volume.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.transforms import window as beam_window

from pipelines import workspace as ws_lib
from pipelines.beam_counts import counter_values
from pipelines.trends import (
    WithWindowStart, burst_scores, merge_bursts, parse_window, read_jsonl,
)

log = logging.getLogger("opinionrec")

STAGE = "track"
MODEL_DIR = "topic_model"
COUNTERS = "track"
NOVEL = -1  # the topic of a document no saved centroid fits
NOVELTY_PERCENTILE = 1.0  # novel: less similar to its nearest centroid than 99% of the fit's docs
TOP_ASPECTS = 5
EXAMPLES = 3
MIN_NEW_TOPIC_DOCS = 5
MIN_TOPIC_TERMS = 3  # distinct content terms a document needs to found a new topic
EXAMPLE_CHARS = 200
EMBEDDINGS = ("tfidf", "encoder")
ALL_TIME = 100 * 365 * 86400  # the one window of a corpus without times


# === The saved topic model ===


@dataclasses.dataclass
class SavedTopics:
    """Centroids (unit rows) of the fitted topics with their names, and the similarity below
    which a document is novel."""

    centroids: np.ndarray
    names: list[str]
    terms: list[list[str]]
    novelty_threshold: float
    within_similarity: float  # median similarity of a fit document to its own centroid
    fitted_on: int = 0
    fitted_until: int | None = None
    embedding: str = "encoder"  # what the centroids live in: "tfidf" or "encoder"
    fit_until: str | None = None  # the --fit-until it was fitted with
    embedder: Any = dataclasses.field(default=None, repr=False)  # the fitted TfidfEmbedder

    def embed(self, texts: Sequence[str], encoder_vectors: Sequence) -> np.ndarray:
        """The documents' vectors in the centroids' space: TF-IDF + SVD of their texts, or the
        features stage's (the encoder's) embeddings."""
        if self.embedding == "tfidf":
            return self.embedder(texts)
        return np.stack(encoder_vectors).astype("float32")

    def assign(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(topic, similarity) of each row: its nearest centroid by cosine, NOVEL below the
        novelty threshold."""
        vectors = _unit(np.asarray(embeddings, dtype="float32"))
        similarity = vectors @ self.centroids.T
        topic = similarity.argmax(axis=1)
        best = similarity[np.arange(len(topic)), topic]
        return np.where(best < self.novelty_threshold, NOVEL, topic), best

    def save(self, directory: Path) -> None:
        import pickle

        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "centroids.npy", self.centroids)
        if self.embedder is not None:
            with open(directory / "embedder.pkl", "wb") as handle:
                pickle.dump(self.embedder, handle)
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("centroids", "embedder")}
        (directory / "model.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False)
                                              + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "SavedTopics":
        import pickle

        meta = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        embedder = None
        if (directory / "embedder.pkl").exists():  # written by this stage, read by it only
            with open(directory / "embedder.pkl", "rb") as handle:
                embedder = pickle.load(handle)
        return cls(centroids=np.load(directory / "centroids.npy"), embedder=embedder, **meta)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def fit_topic_model(texts: Sequence[str], embeddings: np.ndarray | None, k_values: Iterable[int],
                    seed: int = 0) -> SavedTopics:
    """Topics of `texts` (`topics.discover_topics`) saved as unit centroids, in the space of
    `embeddings` (the encoder's) or, when None, of TF-IDF + SVD fitted on the texts and saved
    with them; the novelty threshold is the NOVELTY_PERCENTILE-th percentile of the documents'
    similarity to their own centroid."""
    from pipelines.topics import TfidfEmbedder, discover_topics

    embedder = TfidfEmbedder.fit(texts, seed=seed) if embeddings is None else None
    vectors = _unit(np.asarray(embedder(texts) if embedder else embeddings, dtype="float32"))
    model = discover_topics(texts, vectors, k_values, seed=seed)
    centroids = _unit(np.stack([vectors[model.assignments == t].mean(axis=0)
                                for t in range(model.k)]))
    own = np.einsum("ij,ij->i", vectors, centroids[model.assignments])
    return SavedTopics(centroids=centroids.astype("float32"), names=model.names,
                       terms=model.top_terms,
                       novelty_threshold=float(np.percentile(own, NOVELTY_PERCENTILE)),
                       within_similarity=float(np.median(own)), fitted_on=len(texts),
                       embedding="tfidf" if embedder else "encoder", embedder=embedder)


# === The Beam job ===


class AssignTopics(beam.DoFn):
    """Batches of feature rows -> (topic, document summary) with its event time: the topic of
    the nearest saved centroid or NOVEL; rows without a time are counted and left out."""

    def __init__(self, model_dir: str, untimed_at: int | None = None) -> None:
        from apache_beam.metrics import Metrics

        self.model_dir = model_dir
        self.untimed_at = untimed_at  # a corpus with no times at all: every row at this time
        self.untimed = Metrics.counter(COUNTERS, "docs_without_time")
        self.kept = Metrics.counter(COUNTERS, "docs")
        self.novel = Metrics.counter(COUNTERS, "novel_docs")
        self.termless = Metrics.counter(COUNTERS, "docs_without_terms")
        self.topics: SavedTopics | None = None

    def setup(self) -> None:
        self.topics = SavedTopics.load(Path(self.model_dir))

    def process(self, batch: Sequence[Mapping[str, Any]]):
        if self.untimed_at is not None:
            batch = [{**row, "timestamp": _seconds(row.get("timestamp")) or self.untimed_at}
                     for row in batch]
        timed = [row for row in batch if _seconds(row.get("timestamp")) is not None]
        self.untimed.inc(len(batch) - len(timed))
        if not timed:
            return
        vectors = self.topics.embed([row["text"] for row in timed],
                                    [row["embedding"] for row in timed])
        placed = np.linalg.norm(vectors, axis=1) > 0  # TF-IDF of stop words alone is zero
        self.termless.inc(int((~placed).sum()))
        timed = [row for row, keep in zip(timed, placed) if keep]
        vectors = vectors[placed]
        if not timed:
            return
        topic, similarity = self.topics.assign(vectors)
        self.kept.inc(len(timed))
        self.novel.inc(int((topic == NOVEL).sum()))
        for row, vector, t, s in zip(timed, vectors, topic, similarity):
            probs = row["sentiment"]
            yield beam_window.TimestampedValue((int(t), {
                "doc_id": row["doc_id"], "item": row.get("item") or "",
                "similarity": float(s), "sentiment": float(probs[-1] - probs[0]),
                "negative": int(np.argmax(probs) == 0),
                "aspects": [(str(a), float(p)) for a, p in zip(
                    row.get("aspects") or [], row.get("aspect_polarity") or [])],
                "text": (row.get("text") or "")[:EXAMPLE_CHARS],
                "embedding": vector.tolist() if t == NOVEL else None,
            }), _seconds(row["timestamp"]))


def _seconds(value) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value <= 0:
        return None
    return int(value)


class TopicWindowFn(beam.CombineFn):
    """One (window, topic) cell: documents, sentiment sum, negatives, aspect mentions and
    polarity sums, and the EXAMPLES documents nearest the centroid."""

    def create_accumulator(self):
        return [0, 0.0, 0, {}, []]

    def add_input(self, acc, doc):
        acc[0] += 1
        acc[1] += doc["sentiment"]
        acc[2] += doc["negative"]
        for aspect, polarity in doc["aspects"]:
            count, total = acc[3].get(aspect, (0, 0.0))
            acc[3][aspect] = (count + 1, total + polarity)
        acc[4] = self._best(acc[4] + [(doc["similarity"], doc["doc_id"], doc["text"])])
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            merged[0] += acc[0]
            merged[1] += acc[1]
            merged[2] += acc[2]
            for aspect, (count, total) in acc[3].items():
                have = merged[3].get(aspect, (0, 0.0))
                merged[3][aspect] = (have[0] + count, have[1] + total)
            merged[4] = self._best(merged[4] + acc[4])
        return merged

    @staticmethod
    def _best(examples: list) -> list:
        return sorted(examples, key=lambda e: (-e[0], e[1]))[:EXAMPLES]

    def extract_output(self, acc):
        docs, total, negatives, aspects, examples = acc
        top = sorted(aspects.items(), key=lambda a: (-a[1][0], a[0]))[:TOP_ASPECTS]
        return {"docs": docs, "mean_sentiment": round(total / max(docs, 1), 4),
                "negative": negatives, "share_negative": round(negatives / max(docs, 1), 4),
                "top_aspects": [{"aspect": a, "mentions": c, "mean_polarity": round(s / c, 4)}
                                for a, (c, s) in top],
                "examples": [{"doc_id": d, "text": t, "similarity": round(s, 4)}
                             for s, d, t in examples]}


def _dedup_key(row: Mapping[str, Any]) -> str:
    """Reviews copied onto several listings (same user, time, rating and text) share a key."""
    from pipelines.features import text_key

    if row.get("kind") != "review" or not row.get("user"):
        return row["doc_id"]
    return "\t".join(str(row.get(k)) for k in ("user", "timestamp", "rating")) + "\t" + \
        text_key(row.get("text"))


def _with_text(element) -> Iterable[dict]:
    """(doc id, {"features": [row], "text": [text]}) -> the feature row with its text."""
    _, joined = element
    for row in joined["features"]:
        yield {**row, "text": joined["text"][0] if joined["text"] else ""}


def build_pipeline(pipeline: beam.Pipeline, features_pattern: str, docs_pattern: str,
                   model_dir: str, window_seconds: int, output: Path,
                   batch_size: int = 256, untimed_at: int | None = None) -> None:
    """Feature rows + their texts (the ingested docs) -> de-duplicated -> topic or NOVEL ->
    per (window, topic) cells in `cells.jsonl`, novel documents (with their embeddings) in
    `novel.jsonl`. `untimed_at`: the time of documents without one (a corpus with no times is
    one window), else they are counted and left out."""
    features = (
        pipeline
        | "ReadFeatures" >> beam.io.ReadFromParquet(features_pattern, columns=[
            "doc_id", "kind", "user", "item", "rating", "timestamp", "embedding", "sentiment",
            "aspects", "aspect_polarity"])
        | "KeyFeatures" >> beam.Map(lambda row: (row["doc_id"], row))
    )
    texts = (
        pipeline
        | "ReadTexts" >> beam.io.ReadFromParquet(docs_pattern, columns=["id", "kind", "text"])
        | "ReviewsAndNews" >> beam.Filter(lambda d: d["kind"] in ("review", "news"))
        | "KeyTexts" >> beam.Map(lambda d: (d["id"], d["text"] or ""))
    )
    assigned = (
        {"features": features, "text": texts}
        | "JoinTexts" >> beam.CoGroupByKey()
        | "WithText" >> beam.FlatMap(_with_text)
        | "KeyCopies" >> beam.Map(lambda row: (_dedup_key(row), row))
        | "OneOfEachCopy" >> beam.CombinePerKey(lambda rows: min(rows, key=lambda r: r["doc_id"]))
        | "Values" >> beam.Values()
        | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=batch_size)
        | "AssignTopics" >> beam.ParDo(AssignTopics(model_dir, untimed_at))
        | "FixedWindows" >> beam.WindowInto(beam_window.FixedWindows(window_seconds))
    )
    cells = (
        assigned
        | "Summaries" >> beam.MapTuple(lambda topic, doc: (topic, {
            k: v for k, v in doc.items() if k != "embedding"}))
        | "PerTopicWindow" >> beam.CombinePerKey(TopicWindowFn())
        | "WindowStart" >> beam.ParDo(WithWindowStart())
        | "CellRow" >> beam.Map(lambda e: {"window_start": e[0], "topic": e[1], **e[2]})
    )
    novel = (
        assigned
        | "OnlyNovel" >> beam.Filter(lambda e: e[0] == NOVEL)
        | "NovelStart" >> beam.ParDo(_NovelRow())
    )
    for name, rows in (("cells", cells), ("novel", novel)):
        (rows
         | f"Global{name}" >> beam.WindowInto(beam_window.GlobalWindows())
         | f"Json{name}" >> beam.Map(json.dumps, ensure_ascii=False)
         | f"Write{name}" >> beam.io.WriteToText(str(output / f"{name}.jsonl"),
                                                 shard_name_template=""))


class _NovelRow(beam.DoFn):
    def process(self, element, window=beam.DoFn.WindowParam, timestamp=beam.DoFn.TimestampParam):
        _, doc = element
        yield {"window_start": int(window.start), "timestamp": int(timestamp.micros // 10**6),
               "doc_id": doc["doc_id"], "text": doc["text"], "similarity": doc["similarity"],
               "sentiment": doc["sentiment"], "negative": doc["negative"],
               "embedding": [round(float(x), 5) for x in doc["embedding"]]}


# === After the job: bursts, sentiment shifts, new topics ===


def topic_rows(cells: Sequence[dict], names: Sequence[str], window_seconds: int) -> list[dict]:
    """Per topic, its windows in time order (empty windows filled with zeros), with volume
    bursts and negative shifts; novel documents are left to `new_topics`."""
    from pipelines.report import flag_shifts

    known = [c for c in cells if c["topic"] != NOVEL]
    if not known:
        return []
    starts = range(min(c["window_start"] for c in known),
                   max(c["window_start"] for c in known) + window_seconds, window_seconds)
    by_key = {(c["topic"], c["window_start"]): c for c in known}
    scored = burst_scores([{"window_start": w, "topic": str(t),
                            "impressions": by_key.get((t, w), {}).get("docs", 0)}
                           for t in range(len(names)) for w in starts])
    flagged = {(int(r["topic"]), r["window_start"]): r for r in scored}
    topics = []
    for t, name in enumerate(names):
        windows = []
        for w in starts:
            cell = by_key.get((t, w), {"docs": 0, "mean_sentiment": 0.0, "negative": 0,
                                       "share_negative": 0.0, "top_aspects": [], "examples": []})
            burst = flagged[(t, w)]
            windows.append({"window_start": w, **{k: v for k, v in cell.items()
                                                   if k not in ("window_start", "topic")},
                            "share": burst["share"], "burst_z": burst["z"],
                            "burst": burst["flagged"]})
        docs = sum(r["docs"] for r in windows)
        negative = sum(r["negative"] for r in windows)
        flag_shifts(windows, negative / max(docs, 1), count="docs")
        topics.append({"topic": t, "name": name, "docs": docs,
                       "share_negative": round(negative / max(docs, 1), 4),
                       "mean_sentiment": round(sum(r["mean_sentiment"] * r["docs"]
                                                   for r in windows) / max(docs, 1), 4),
                       "top_aspects": _total_aspects(windows),
                       "bursts": merge_bursts([{**flagged[(t, r["window_start"])],
                                                "impressions": r["docs"]} for r in windows],
                                              window_seconds),
                       "shifts": [r["window_start"] for r in windows if r["shift"]],
                       "windows": windows})
    return topics


def _total_aspects(windows: Sequence[dict]) -> list[dict]:
    totals: dict[str, list[float]] = {}
    for row in windows:
        for a in row["top_aspects"]:
            entry = totals.setdefault(a["aspect"], [0, 0.0])
            entry[0] += a["mentions"]
            entry[1] += a["mean_polarity"] * a["mentions"]
    ranked = sorted(totals.items(), key=lambda a: (-a[1][0], a[0]))[:TOP_ASPECTS]
    return [{"aspect": a, "mentions": int(c), "mean_polarity": round(s / c, 4)}
            for a, (c, s) in ranked]


def new_topics(novel: Sequence[dict], within_similarity: float,
               min_docs: int = MIN_NEW_TOPIC_DOCS) -> list[dict]:
    """Novel documents grouped into new topics: average-linkage clusters cut where documents are
    as close to each other as the fit's documents were (`within_similarity`: the median
    similarity of a fitted document to its centroid); groups of `min_docs` or more are named
    by their distinctive terms, with their first window, size and examples.

    Two documents each at similarity s to a shared centre are about s^2 similar to each other, so
    the cut is the cosine distance 1 - s^2 at the fit's median s: a new topic must hold together
    as tightly as the fitted ones do."""
    from sklearn.cluster import AgglomerativeClustering

    from pipelines.topics import class_tfidf

    if len(novel) < min_docs:
        return []
    vectors = _unit(np.array([d["embedding"] for d in novel], dtype="float32"))
    cut = 1 - within_similarity ** 2
    labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=cut).fit_predict(vectors)
    big = [c for c in np.unique(labels) if (labels == c).sum() >= min_docs]
    if not big:
        return []
    remap = {c: i for i, c in enumerate(big)}
    grouped = np.array([remap.get(c, len(big)) for c in labels])
    texts = [d["text"] for d in novel]
    terms = class_tfidf(texts, grouped, len(big) + 1)
    out = []
    for i, c in enumerate(big):
        members = [d for d, label in zip(novel, labels) if label == c]
        centre = _unit(vectors[labels == c].mean(axis=0))
        ranked = sorted(members, key=lambda d: -float(_unit(np.array(d["embedding"])) @ centre))
        out.append({"name": " ".join(terms[i][:3]), "terms": terms[i], "docs": len(members),
                    "first_window": min(d["window_start"] for d in members),
                    "share_negative": round(float(np.mean([d["negative"] for d in members])), 4),
                    "examples": [d["text"] for d in ranked[:EXAMPLES]]})
    return sorted(out, key=lambda t: (-t["docs"], t["first_window"]))


def after_fit(novel: Sequence[dict], fitted_until: int | None) -> list[dict]:
    """The novel documents from `fitted_until` on (the time after the fit's last document, or
    `--fit-until`) that say enough to found a topic (MIN_TOPIC_TERMS distinct terms: on
    Magazine_Subscriptions, reviews reading just "Ok" or "Excellent!" made "new topics"); none
    when the fit saw every time (or there are no times)."""
    from pipelines.topics import is_chinese, term_analyzer

    if fitted_until is None:
        return []
    later = [d for d in novel if d["timestamp"] >= fitted_until]
    terms = term_analyzer(is_chinese([d["text"] for d in later]))
    return [d for d in later if len(set(terms(d["text"]))) >= MIN_TOPIC_TERMS]


def plot_topics(topics: Sequence[dict], fresh: Sequence[dict], path: Path,
                window_seconds: int) -> Path:
    """Topic shares per window (bursts circled), and each topic's share negative below it."""
    from pipelines.plotting import pyplot, save

    plt = pyplot()
    fig, (volume, negative) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    drawn = sorted(topics, key=lambda t: -t["docs"])[:8]
    for topic in drawn:
        when = [dt.datetime.fromtimestamp(r["window_start"] + window_seconds / 2, dt.timezone.utc)
                for r in topic["windows"]]
        label = f"{topic['topic']}: {topic['name']}"
        line, = volume.plot(when, [r["share"] for r in topic["windows"]], label=label,
                            linewidth=1.2)
        hot = [(w, r["share"]) for w, r in zip(when, topic["windows"]) if r["burst"]]
        if hot:
            volume.scatter(*zip(*hot), color=line.get_color(), s=40, zorder=3, edgecolor="black")
        kept = [(w, r["share_negative"]) for w, r in zip(when, topic["windows"]) if r["docs"]]
        if kept:
            negative.plot(*zip(*kept), color=line.get_color(), linewidth=1.0, marker=".")
        shifted = [(w, r["share_negative"]) for w, r in zip(when, topic["windows"]) if r["shift"]]
        if shifted:
            negative.scatter(*zip(*shifted), s=80, facecolor="none", edgecolor="black",
                             linewidth=1.4, zorder=4)
    for new in fresh:
        first = dt.datetime.fromtimestamp(new["first_window"], dt.timezone.utc)
        volume.axvline(first, color="#888888", linestyle="--", linewidth=0.8)
        volume.annotate(f"new: {new['name']}", (first, 0.98), xycoords=("data", "axes fraction"),
                        fontsize=7, rotation=90, va="top", ha="right", color="#555555")
    volume.set_ylabel("share of documents")
    volume.set_title("Topics per window (circled: volume bursts; dashed: a new topic appears)")
    volume.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    negative.set_ylabel("share negative")
    negative.set_ylim(-0.02, 1.02)
    negative.set_title("Share of negative documents per topic (circled: a negative shift)")
    fig.autofmt_xdate()
    return save(plt, fig, path, dpi=110)


# === The command ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--window", type=parse_window, default=None,
                        help="fixed event-time window: a number and m, h, d or w, e.g. 1d, 1w "
                        "(default: the smallest of 1d, 1w, 30d, 91d, 365d that gives at most 40 "
                        "windows over the documents' period)")
    parser.add_argument("--refit", action="store_true",
                        help=f"fit the topics again even when WORKSPACE/{MODEL_DIR}/ holds saved "
                        "ones (default: documents are assigned to the saved centroids)")
    parser.add_argument("--fit-until", default=None, metavar="DATE",
                        help="fit the topics on documents before this date (YYYY-MM-DD) only, so "
                        "later ones are assigned online as new data would be (default: all)")
    parser.add_argument("--embedding", choices=EMBEDDINGS, default="tfidf",
                        help="the space topics are fitted and assigned in: tfidf (TF-IDF + SVD of "
                        "the texts, fitted with the topics: subjects) or encoder (the features "
                        "stage's embeddings; a text model fine-tuned for sentiment groups "
                        "reviews by sentiment, measured on Magazine_Subscriptions) "
                        "(default: %(default)s)")
    parser.add_argument("--k", type=int, default=None,
                        help="number of topics when fitting (default: chosen by stability)")
    parser.add_argument("--k-max", type=int, default=12,
                        help="largest number of topics tried when fitting (default: %(default)s)")
    parser.add_argument("--max-fit-docs", type=int, default=5000,
                        help="documents the topics are fitted on, a seeded sample when there "
                        "are more (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="documents assigned per call (default: %(default)s)")


def _fit(ws: ws_lib.Workspace, args: argparse.Namespace, model_dir: Path) -> SavedTopics:
    from pipelines.corpus import read_parquet_dir
    from pipelines.topics import sample_examples

    docs = read_parquet_dir(ws.features / "docs", ["doc_id", "timestamp", "embedding"])
    texts = read_parquet_dir(ws.docs, ["id", "text"]).rename(columns={"id": "doc_id"})
    docs = docs.merge(texts, on="doc_id", how="inner")
    until = None
    if args.fit_until:
        try:
            until = int(dt.datetime.strptime(args.fit_until, "%Y-%m-%d").replace(
                tzinfo=dt.timezone.utc).timestamp())
        except ValueError:
            raise SystemExit(f"track: --fit-until takes a date, YYYY-MM-DD. Received: "
                             f"{args.fit_until!r}") from None
        docs = docs[docs["timestamp"].notna() & (docs["timestamp"] < until)]
    docs = docs[docs["text"].fillna("").str.strip() != ""]
    if len(docs) < 10:
        raise SystemExit(f"track: {len(docs)} documents to fit topics on; at least 10 are needed"
                         + (f" before {args.fit_until}" if until else ""))
    rows = sample_examples(list(docs.itertuples(index=False)), args.max_fit_docs)
    k_values = [args.k] if args.k else range(2, args.k_max + 1)
    log.info("track: fitting topics on %d documents (%s, k %s)", len(rows), args.embedding,
             args.k or f"2..{args.k_max} by stability")
    model = fit_topic_model([r.text for r in rows], np.stack([r.embedding for r in rows])
                            if args.embedding == "encoder" else None, k_values)
    times = docs["timestamp"].dropna()
    times = times[times > 0]
    # Documents up to here shaped the topics; only later ones can make a new one.
    model.fitted_until = until or (int(times.max()) + 1 if len(times) else None)
    model.fit_until = args.fit_until
    model.save(model_dir)
    return model


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.beam_options import pipeline_options
    from pipelines.report import choose_window

    ws = ws_lib.workspace_from_args(args)
    if not (ws.features / "docs").exists():
        raise SystemExit(f"track: no document features in {ws.features}/docs: run `features` "
                         "first")
    model_dir = ws.root / MODEL_DIR
    params = {"window": args.window, "refit": args.refit, "fit_until": args.fit_until,
              "embedding": args.embedding,
              "k": args.k, "k_max": args.k_max, "max_fit_docs": args.max_fit_docs}
    inputs = {"features": "stage:features"}
    if ws_lib.skip_if_fresh(args, ws, STAGE, params, inputs):
        return 0
    out = ws.stage_dir(STAGE)
    with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
        started = time.perf_counter()
        saved = SavedTopics.load(model_dir) if (model_dir / "model.json").exists() else None
        other = saved is not None and (saved.embedding != args.embedding or (
            args.fit_until is not None and saved.fit_until != args.fit_until))
        if other and not args.refit:
            log.info("track: the saved topics of %s were fitted in the %s space until %s, not "
                     "%s until %s: fitting again", model_dir, saved.embedding, saved.fit_until,
                     args.embedding, args.fit_until)
        fitted = args.refit or saved is None or other
        topics = _fit(ws, args, model_dir) if fitted else saved
        if not fitted:
            log.info("track: assigning to the %d saved topics of %s (--refit to fit again)",
                     len(topics.names), model_dir)
        fit_seconds = time.perf_counter() - started
        period = _period(ws)
        if period is None:
            log.warning("track: no document has a time: the topics are counted over the whole "
                        "corpus as one window (ingest reviews with their timestamps to follow "
                        "them through time)")
        window = args.window or (choose_window(*period) if period else ALL_TIME)
        pipeline = beam.Pipeline(options=pipeline_options(beam_args))
        build_pipeline(pipeline, str(ws.features / "docs" / "*.parquet"),
                       str(ws.docs / "*.parquet"), str(model_dir), window, out, args.batch_size,
                       untimed_at=None if period else 1)
        result = pipeline.run()
        result.wait_until_finish()
        beam_seconds = time.perf_counter() - started - fit_seconds
        counts = {name: value for (_, name), value in counter_values(result, [COUNTERS]).items()}
        cells = read_jsonl(out / "cells.jsonl")
        rows = topic_rows(cells, topics.names, window)
        # A new topic is one no fitted topic covers among documents after the fit: the novel
        # documents of the fit's own period are its least typical 1%, not news (on 10^5
        # generated reviews fitted on all of them, they made 28 "new topics" of 5-14).
        after = after_fit(read_jsonl(out / "novel.jsonl"), topics.fitted_until
                          if period is not None else None)
        fresh = new_topics(after, topics.within_similarity)
        (out / "volume.png").unlink(missing_ok=True)
        if rows and period:
            plot_topics(rows, fresh, out / "volume.png", window)
        with open(out / "windows.jsonl", "w", encoding="utf-8") as handle:
            for topic in rows:
                for row in topic["windows"]:
                    handle.write(json.dumps({"topic": topic["topic"], "name": topic["name"],
                                             **row}, ensure_ascii=False) + "\n")
        summary = {"docs": counts.get("docs", 0), "novel_docs": counts.get("novel_docs", 0),
                   "docs_without_time": counts.get("docs_without_time", 0),
                   "docs_without_terms": counts.get("docs_without_terms", 0),
                   "topics": len(rows), "new_topics": len(fresh),
                   "windows": len(rows[0]["windows"]) if rows else 0,
                   "bursts": sum(len(t["bursts"]) for t in rows),
                   "shifts": sum(len(t["shifts"]) for t in rows),
                   "fitted": fitted, "fit_seconds": round(fit_seconds, 2),
                   "beam_seconds": round(beam_seconds, 2)}
        (out / "topics.json").write_text(json.dumps({
            "params": {**params, "window": window if period else None}, "summary": summary,
            "model": {"dir": str(model_dir), "fitted_on": topics.fitted_on,
                      "fitted_until": topics.fitted_until,
                      "novelty_threshold": round(topics.novelty_threshold, 4)},
            "topics": [{k: v for k, v in t.items() if k != "windows"} for t in rows],
            "new_topics": fresh}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        record["summary"] = summary
    log.info("track: %(docs)d documents in %(windows)d windows x %(topics)d topics, "
             "%(novel_docs)d novel (%(new_topics)d new topics), %(bursts)d bursts, %(shifts)d "
             "negative shifts; left out: %(docs_without_time)d without a time, "
             "%(docs_without_terms)d of stop words only", summary)
    for topic in rows:
        log.info("track: topic %d %s: %d docs, %.0f%% negative%s", topic["topic"], topic["name"],
                 topic["docs"], 100 * topic["share_negative"],
                 "".join(f"; burst {_when(b['start'])} (z {b['peak_z']:.1f})"
                         for b in topic["bursts"][:3]))
    for new in fresh:
        log.info("track: new topic %r from %s: %d docs, e.g. %r", new["name"],
                 _when(new["first_window"]), new["docs"], new["examples"][0][:100])
    log.info("track: %s (topics.json, windows.jsonl, volume.png)", out)
    return 0


def _period(ws: ws_lib.Workspace) -> tuple[int, int] | None:
    """(first, last) document time in the features stage's documents, None when none has one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    low = high = None
    for shard in sorted((ws.features / "docs").glob("*.parquet")):
        times = pq.read_table(shard, columns=["timestamp"]).column("timestamp")
        times = pc.filter(times, pc.greater(times, 0))
        if len(times):
            low = min(low if low is not None else 2**62, pc.min(times).as_py())
            high = max(high or 0, pc.max(times).as_py())
    return None if low is None else (int(low), int(high))


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d")
