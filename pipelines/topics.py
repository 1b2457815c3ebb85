"""`opinionrec topics`: unsupervised topics for texts that carry no labels.

Texts are embedded (by default the packaged teacher's sentence embedding (all-MiniLM-L6-v2,
trained for semantic similarity) beside TF-IDF + SVD; or mean-pooled ALBERT `sequence_output`, the
teacher alone, or TF-IDF + SVD alone as the baseline) and clustered with k-means for each k in a range; k is chosen by clustering stability (the mean ARI
between k-means fits on random subsamples) or by the mean silhouette. Each cluster is named by its
most distinctive terms (class-based TF-IDF). On a labelled set the clustering is scored against
the labels with NMI and ARI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

log = logging.getLogger("opinionrec")

EMBEDDINGS = ("hybrid", "albert", "teacher", "tfidf")
# The teacher's share of a hybrid embedding's squared norm (TF-IDF + SVD has the rest). Measured
# on BBC and AG News at k true: 0.3 and 0.5 were within 0.01 NMI, 0.7 lost 0.02 on BBC.
HYBRID_TEACHER_WEIGHT = 0.3
CRITERIA = ("stability", "silhouette")
SCORE_SAMPLE = 2000
STABILITY_ROUNDS = 5
TFIDF_DIMS = 128

# CJK Unified Ideographs (+ extension A and compatibility ideographs): enough to tell Chinese.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_CJK_RUN = re.compile(f"[{_CJK}]+")
# Two or more letters, CJK excluded: drops numbers and the "s" of "it's".
_WORD = re.compile(f"[^\\W\\d_{_CJK}]{{2,}}")


# === Terms ===


def is_chinese(texts: Sequence[str], threshold: float = 0.3, sample: int = 500) -> bool:
    """True when CJK characters are at least `threshold` of the non-space characters.

    Looks at the first `sample` texts; a few Chinese names in English text stay English.
    """
    chars = cjk = 0
    for text in texts[:sample]:
        chars += sum(1 for c in text if not c.isspace())
        cjk += len(_CJK_CHAR.findall(text))
    return chars > 0 and cjk / chars >= threshold


@dataclasses.dataclass(frozen=True)
class TermAnalyzer:
    """Text -> terms: lower-cased words minus English stop words; for Chinese, also the character
    bigrams of each run of CJK characters (Chinese has no spaces; bigrams approximate words).
    A class, not a closure, so a fitted vectorizer that uses it can be pickled and reloaded."""

    chinese: bool = False

    def words(self, text: str) -> list[str]:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        return [w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS]

    def __call__(self, text: str) -> list[str]:
        if not self.chinese:
            return self.words(text)
        terms = [run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)]
        return terms + self.words(text)


def term_analyzer(chinese: bool) -> Callable[[str], list[str]]:
    """The `TermAnalyzer` for English or Chinese text."""
    return TermAnalyzer(chinese)


def class_tfidf(
    texts: Sequence[str],
    assignments: np.ndarray,
    k: int,
    n_terms: int = 10,
    chinese: bool | None = None,
    reduce_frequent: bool = True,
) -> list[list[str]]:
    """The `n_terms` most distinctive terms of each cluster by class-based TF-IDF (c-TF-IDF).

    Each cluster's texts are one document: weight(t, c) = tf(t, c) * log(1 + A / f(t)), where
    tf(t, c) counts t in cluster c, f(t) counts t in all clusters and A is the average number of
    terms per cluster. With `reduce_frequent` tf is replaced by its square root (BERTopic's
    `reduce_frequent_words`): with raw counts "said" named 4 of 5 BBC News topics. Terms must
    occur in two texts (one when there are fewer than 20 texts) so typos do not name topics.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    texts = list(texts)
    assignments = np.asarray(assignments)
    if chinese is None:
        chinese = is_chinese(texts)
    vectorizer = CountVectorizer(analyzer=term_analyzer(chinese),
                                 min_df=2 if len(texts) >= 20 else 1)
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError:  # no term at all (empty vocabulary)
        return [[] for _ in range(k)]
    terms = vectorizer.get_feature_names_out()
    per_cluster = np.zeros((k, counts.shape[1]))
    for c in range(k):
        rows = np.flatnonzero(assignments == c)
        if len(rows):
            per_cluster[c] = np.asarray(counts[rows].sum(axis=0)).ravel()
    total = per_cluster.sum(axis=0)
    average = per_cluster.sum() / k
    tf = np.sqrt(per_cluster) if reduce_frequent else per_cluster
    weights = tf * np.log1p(average / np.maximum(total, 1))
    top: list[list[str]] = []
    for c in range(k):
        order = np.argsort(-weights[c], kind="stable")[:n_terms]
        top.append([str(terms[i]) for i in order if weights[c, i] > 0])
    return top


# === Embeddings ===


@dataclasses.dataclass
class TfidfEmbedder:
    """Sublinear TF-IDF of the texts' terms -> TruncatedSVD, L2-normalised: fitted on a corpus,
    then applied to new texts (`opinionrec track` saves one with its topics)."""

    vectorizer: Any
    svd: Any

    @classmethod
    def fit(cls, texts: Sequence[str], dims: int = TFIDF_DIMS, seed: int = 0) -> "TfidfEmbedder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(texts)
        vectorizer = TfidfVectorizer(analyzer=term_analyzer(is_chinese(texts)),
                                     sublinear_tf=True, min_df=2 if len(texts) >= 20 else 1)
        matrix = vectorizer.fit_transform(texts)
        dims = min(dims, matrix.shape[1] - 1, len(texts) - 1)
        if dims < 1:
            raise ValueError(f"Too few texts or terms for TF-IDF embeddings. Received: "
                             f"{matrix.shape}")
        return cls(vectorizer, TruncatedSVD(dims, random_state=seed).fit(matrix))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.preprocessing import normalize

        reduced = self.svd.transform(self.vectorizer.transform(list(texts)))
        return normalize(reduced).astype("float32")


def tfidf_embeddings(texts: Sequence[str], dims: int = TFIDF_DIMS, seed: int = 0) -> np.ndarray:
    """The baseline: sublinear TF-IDF of the texts' terms -> TruncatedSVD(`dims`), L2-normalised."""
    return TfidfEmbedder.fit(texts, dims, seed)(texts)


def albert_embeddings(preset: str, texts: Sequence[str], sequence_length: int = 128,
                      batch_size: int = 64) -> np.ndarray:
    """Mean over real tokens of an ALBERT (or BERT-equivalent) preset's `sequence_output`,
    L2-normalised.

    The mean, not [CLS]: a briefly pretrained encoder's [CLS] vector barely depends on the input
    (see `MaskedMeanPooling`). Texts are packed as the classifier packs them, `[CLS] text [SEP]`.
    """
    import tensorflow as tf
    from sklearn.preprocessing import normalize

    from albert_tf.bert import load_backbone
    from albert_tf.classifier import make_text_preprocessor
    from albert_tf.heads import MaskedMeanPooling
    from albert_tf.tokenizer import load_preset_tokenizer

    backbone = load_backbone(preset, dtype="float32")  # ALBERT, or the BERT equivalent
    tokenizer = load_preset_tokenizer(preset)  # SentencePiece, or the student's WordPiece
    sequence_length = min(sequence_length, backbone.max_sequence_length)
    preprocessor = make_text_preprocessor(tokenizer, sequence_length)
    pooling = MaskedMeanPooling(dtype="float32")

    @tf.function(reduce_retracing=True)
    def pooled(x):
        return pooling(backbone(x, training=False)["sequence_output"], x["padding_mask"])

    texts = list(texts)
    if not texts:
        return np.zeros([0, backbone.hidden_dim], "float32")
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string))
    dataset = dataset.batch(batch_size).map(preprocessor).prefetch(2)
    vectors = np.concatenate([pooled(x).numpy() for x in dataset])
    return normalize(vectors).astype("float32")


def hybrid_embeddings(texts: Sequence[str], teacher: str | None = None, sequence_length: int = 128,
                      batch_size: int = 64, seed: int = 0,
                      teacher_weight: float = HYBRID_TEACHER_WEIGHT) -> np.ndarray:
    """The teacher's sentence embedding and TF-IDF + SVD side by side, each a unit vector scaled
    by the square root of its weight, so cosine similarity is the weighted mean of both
    similarities: the teacher knows meaning (sport ~ football) but reads only the first 128
    tokens; TF-IDF reads every word of a long article. Chinese texts get TF-IDF alone, since
    all-MiniLM-L6-v2's vocabulary is English (on THUCNews its embeddings score NMI 0.05)."""
    from albert_tf.distillation import TeacherEncoder

    lexical = tfidf_embeddings(texts, seed=seed)
    if is_chinese(list(texts)):
        log.info("topics: Chinese texts: the hybrid embedding is TF-IDF + SVD alone (the "
                 "teacher's vocabulary is English)")
        return lexical
    semantic = TeacherEncoder(teacher).embed(texts, batch_size, sequence_length)
    joined = np.hstack([np.sqrt(teacher_weight) * semantic,
                        np.sqrt(1 - teacher_weight) * lexical])
    return (joined / np.linalg.norm(joined, axis=1, keepdims=True)).astype("float32")


def embed_texts(preset: str | None, texts: Sequence[str], sequence_length: int = 128,
                batch_size: int = 64, embedding: str = "albert", seed: int = 0) -> np.ndarray:
    """`[len(texts), dim]` unit vectors: ALBERT (`preset` needed), the teacher (`preset`: its
    folder, default the packaged all-MiniLM-L6-v2), the TF-IDF + SVD baseline, or the hybrid of
    the teacher and TF-IDF (`hybrid_embeddings`)."""
    if embedding == "tfidf":
        return tfidf_embeddings(texts, seed=seed)
    if embedding == "hybrid":
        return hybrid_embeddings(texts, preset, sequence_length, batch_size, seed)
    if embedding == "teacher":
        from albert_tf.distillation import TeacherEncoder

        return TeacherEncoder(preset).embed(texts, batch_size, sequence_length)
    if embedding != "albert":
        raise ValueError(f"`embedding` must be one of {EMBEDDINGS}. Received: {embedding!r}")
    if not preset:
        raise ValueError("ALBERT embeddings need a preset folder. Received: preset=None")
    return albert_embeddings(preset, texts, sequence_length, batch_size)


# === Clustering ===


@dataclasses.dataclass
class TopicModel:
    """A clustering of texts into `k` topics, each named by its most distinctive terms.

    Attributes:
        k: the number of topics chosen.
        assignments: the topic (0..k-1) of each text, in input order.
        names: "term1 term2 term3" per topic.
        top_terms: the ten most distinctive terms per topic (c-TF-IDF), best first.
        sizes: texts per topic.
        criterion: k -> score of the criterion that chose k (`criterion_name`), for every k tried.
        criterion_name: "stability" or "silhouette" (see `discover_topics`).
        scores: every criterion computed: name -> {k -> score} (the silhouette always).
        assignments_by_k: k -> the k-means assignments of every k tried (for reports).
    """

    k: int
    assignments: np.ndarray
    names: list[str]
    top_terms: list[list[str]]
    sizes: list[int]
    criterion: dict[int, float]
    criterion_name: str = "stability"
    scores: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    assignments_by_k: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)


def score_sample(n: int, seed: int = 0, size: int = SCORE_SAMPLE) -> np.ndarray:
    """The indices the criteria are computed on: all when n <= size, else a seeded sample.

    The silhouette costs O(n^2) and stability refits k-means; one sample for every k keeps the
    cost bounded and the scores comparable.
    """
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def kmeans_stability(points: np.ndarray, k: int, seed: int = 0, rounds: int = STABILITY_ROUNDS,
                     fraction: float = 0.8) -> float:
    """Mean ARI between two k-means fits on different random `fraction`s of `points`, both
    labelling every point, over `rounds` seeded pairs: 1 when k-means finds the same clusters
    whatever the sample, near 0 when a k cuts through structure arbitrarily."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng([seed, k])
    n = len(points)
    size = max(k, int(fraction * n))
    agreement = []
    for r in range(rounds):
        fits = [
            KMeans(k, n_init=2, random_state=seed * 1000 + 2 * r + side)
            .fit(points[rng.choice(n, size, replace=False)])
            .predict(points)
            for side in (0, 1)
        ]
        agreement.append(adjusted_rand_score(*fits))
    return float(np.mean(agreement))


def discover_topics(
    texts: Sequence[str],
    embeddings: np.ndarray,
    k_values: Iterable[int] = range(2, 21),
    seed: int = 0,
    criterion: str = "stability",
    n_init: int = 4,
    n_terms: int = 10,
) -> TopicModel:
    """k-means for each k in `k_values`; keep the k that scores best on `criterion`.

    Criteria, both on at most 2,000 texts (a seeded sample, the same for every k), ties to the
    smaller k:
    - "stability" (default): `kmeans_stability`, the mean ARI between k-means fits on two random
      80% subsamples (5 pairs). A k that matches real structure is found again whatever the sample.
    - "silhouette": the mean silhouette coefficient with cosine distance. Measured on news
      (2..20): on TF-IDF + SVD it rises with k and picks the largest k tried; on a briefly
      pretrained ALBERT it falls with k and picks 2.
    The silhouette is computed and reported either way. k-means runs `n_init` seeded restarts;
    the embeddings are unit vectors, so Euclidean k-means groups by cosine as well.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if criterion not in CRITERIA:
        raise ValueError(f"`criterion` must be one of {CRITERIA}. Received: {criterion!r}")
    texts = list(texts)
    embeddings = np.asarray(embeddings, dtype="float32")
    n = len(texts)
    if embeddings.shape[0] != n:
        raise ValueError(f"One embedding per text needed. Received: {embeddings.shape[0]} "
                         f"embeddings for {n} texts")
    k_values = list(k_values)
    candidates = sorted({int(k) for k in k_values if 2 <= int(k) < n})
    if not candidates:
        raise ValueError(f"No k in 2..{n - 1} (texts - 1) to try. Received: {k_values}")
    sample = score_sample(n, seed)
    scores: dict[str, dict[int, float]] = {name: {} for name in dict.fromkeys(
        ["silhouette", criterion])}
    by_k: dict[int, np.ndarray] = {}
    for k in candidates:
        labels = KMeans(k, n_init=n_init, random_state=seed).fit_predict(embeddings)
        by_k[k] = labels
        if len(np.unique(labels[sample])) < 2:
            silhouette = -1.0  # undefined with one cluster in the sample
        else:
            silhouette = silhouette_score(embeddings[sample], labels[sample], metric="cosine")
        scores["silhouette"][k] = float(silhouette)
        if criterion == "stability":
            scores["stability"][k] = kmeans_stability(embeddings[sample], k, seed)
        log.debug("topics: k=%d %s", k, {name: round(v[k], 4) for name, v in scores.items()})
    chosen = scores[criterion]
    k = max(candidates, key=lambda c: (chosen[c], -c))
    labels = by_k[k]
    top_terms = class_tfidf(texts, labels, k, n_terms=n_terms)
    return TopicModel(
        k=k,
        assignments=labels,
        names=[" ".join(terms[:3]) for terms in top_terms],
        top_terms=top_terms,
        sizes=np.bincount(labels, minlength=k).tolist(),
        criterion=chosen,
        criterion_name=criterion,
        scores=scores,
        assignments_by_k=by_k,
    )


def topic_agreement(labels: Sequence, assignments: Sequence) -> dict[str, float]:
    """Agreement of a clustering with known labels: NMI (arithmetic mean) and ARI."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"nmi": float(normalized_mutual_info_score(labels, assignments)),
            "ari": float(adjusted_rand_score(labels, assignments))}


# === Evaluation on the labelled news sets ===


def sample_examples(examples: Sequence, max_docs: int, seed: int = 0) -> list:
    """At most `max_docs` of `examples`, a seeded sample kept in the original order."""
    if len(examples) <= max_docs:
        return list(examples)
    keep = np.sort(np.random.default_rng(seed).choice(len(examples), max_docs, replace=False))
    return [examples[i] for i in keep]


def evaluate_topics(dataset_name: str, preset: str | None = None, embedding: str = "albert",
                    max_docs: int = 2000, seed: int = 0, criterion: str = "stability",
                    k_values: Iterable[int] = range(2, 21)) -> dict:
    """Discover topics on a labelled set (its test + dev + train examples, a seeded sample of at
    most `max_docs`) without the labels, then score them against the labels.

    Returns `nmi`, `ari`, `k` (chosen), `k_true` (labels present), `names` (first 8), `n`,
    `wall_s` (embedding + clustering + naming; `embed_s` of it the embedding), and for reference
    `nmi_at_k_true` / `ari_at_k_true` (k-means with the true k, when it is among `k_values`:
    the embeddings' quality without the choice of k), `embedding`, `criterion_name` and `scores`
    (per k).
    """
    from pipelines.quality.datasets import load_dataset

    dataset = load_dataset(dataset_name)
    examples = [e for e in [*dataset.test, *dataset.dev, *dataset.train] if e.text]
    examples = sample_examples(examples, max_docs, seed)
    texts = [e.text for e in examples]
    labels = [e.label for e in examples]
    started = time.monotonic()
    embeddings = embed_texts(preset, texts, embedding=embedding, seed=seed)
    embed_s = time.monotonic() - started
    model = discover_topics(texts, embeddings, k_values, seed=seed, criterion=criterion)
    wall_s = time.monotonic() - started
    k_true = len(set(labels))
    result = {
        "dataset": dataset_name,
        "embedding": embedding,
        **topic_agreement(labels, model.assignments),
        "k": model.k,
        "k_true": k_true,
        "names": model.names[:8],
        "n": len(texts),
        "wall_s": round(wall_s, 1),
        "embed_s": round(embed_s, 1),
        "criterion_name": model.criterion_name,
        "scores": model.scores,
    }
    if k_true in model.assignments_by_k:
        at_true = topic_agreement(labels, model.assignments_by_k[k_true])
        result.update(nmi_at_k_true=at_true["nmi"], ari_at_k_true=at_true["ari"])
    return result


# === Reading inputs ===


@dataclasses.dataclass(frozen=True)
class TopicDoc:
    """A text to cluster: its id, the text (title first for news) and its label, if any."""

    id: str
    text: str
    label: str | None = None


def read_documents(patterns: Sequence[str], max_docs: int | None = None) -> list[TopicDoc]:
    """Documents of any format `opinionrec ingest` reads, parsed outside Beam, in file order.

    Rejected records are skipped (counted in the log); formats that produce items or behaviours
    rather than documents are skipped.
    """
    from pipelines.ingest.formats import REGISTRY
    from pipelines.ingest.inputs import IngestError, resolve_inputs
    from pipelines.ingest.parsing import ParseOptions
    from pipelines.ingest.reading import ReadRecordsFn

    try:
        inputs = resolve_inputs(patterns, "auto", Path("."))
    except IngestError as error:
        raise SystemExit(f"topics: {error}") from None
    prefixes = {i.path: i.id_prefix for i in inputs}
    docs: list[TopicDoc] = []
    rejected = 0
    for item in inputs:
        fmt = REGISTRY[item.format]
        if fmt.output != "docs":
            log.info("topics: skipping %s (%s holds %s, not documents)", item.path, fmt.name,
                     fmt.output)
            continue
        reader = ReadRecordsFn(fmt.name)
        reader.setup()
        parser = fmt.parser(prefixes, ParseOptions())
        parser.setup()
        for record in reader.process(item.path):
            for row in parser.process(record):
                if not isinstance(row, dict) or "text" not in row:
                    rejected += 1
                    continue
                text = f"{row['title']}. {row['text']}" if row.get("title") else row["text"]
                docs.append(TopicDoc(row["id"], text, row.get("label")))
                if max_docs is not None and len(docs) >= max_docs:
                    break
            if max_docs is not None and len(docs) >= max_docs:
                break
    if rejected:
        log.info("topics: %d records rejected by the parsers", rejected)
    return docs


# === Command ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Cluster texts into topics without labels: embed them (the teacher beside TF-IDF + SVD, "
        "an ALBERT preset, the teacher, or TF-IDF + SVD), "
        "run k-means for each k and keep the k that k-means finds most stably across random "
        "subsamples (or with the best silhouette), name each topic by its most distinctive terms "
        "(class-based TF-IDF). With --dataset, or inputs whose documents all carry a label, "
        "also report NMI and ARI against the labels."
    )
    parser.epilog = (
        "Writes DIR/topics.json (k, the criterion per k, each topic's name, size and terms; NMI "
        "and ARI when labels are known), DIR/assignments.jsonl (document id, topic, the text's "
        "first 80 characters) and DIR/criterion.png."
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH",
                        help="files, globs or folders in any format `opinionrec ingest` reads")
    source.add_argument("--dataset", metavar="NAME",
                        help="a labelled set of pipelines.quality.datasets (ag_news, bbc, mind, "
                        "thucnews, ...): its test + dev + train texts, scored against its labels")
    parser.add_argument("--preset", default=None, metavar="PATH",
                        help="keras-hub ALBERT preset folder for the embeddings (with "
                        "--embedding teacher or hybrid: the teacher's folder, default the "
                        "packaged one)")
    parser.add_argument("--embedding", choices=EMBEDDINGS, default=None,
                        help="hybrid (the teacher's sentence embedding beside TF-IDF + SVD, 3:7; "
                        "TF-IDF alone for Chinese), albert (needs --preset: mean of the last "
                        "layer over real tokens), teacher (all-MiniLM-L6-v2's sentence "
                        "embeddings) or tfidf (TF-IDF + SVD to 128 dimensions); default: albert "
                        "with --preset, hybrid without")
    parser.add_argument("--criterion", choices=CRITERIA, default="stability",
                        help="how k is chosen, on a seeded sample of <= 2,000 texts: stability = "
                        "mean ARI between k-means fits on two random 80%% subsamples (5 pairs); "
                        "silhouette = mean silhouette, cosine (default: %(default)s)")
    parser.add_argument("--k", type=int, default=None,
                        help="a fixed number of topics instead of a search (criteria still "
                        "reported)")
    parser.add_argument("--k-min", type=int, default=2, help="smallest k tried (default: 2)")
    parser.add_argument("--k-max", type=int, default=20, help="largest k tried (default: 20)")
    parser.add_argument("--max-docs", type=int, default=2000,
                        help="cluster at most this many texts: the first ones of --input, a "
                        "seeded sample of --dataset (default: %(default)s)")
    parser.add_argument("--sequence-length", type=int, default=128,
                        help="ALBERT tokens per text; longer texts are truncated "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the samples, the SVD and k-means (default: %(default)s)")
    parser.add_argument("--output", default="topics", metavar="DIR",
                        help="output folder (default: %(default)s)")


def plot_criterion(scores: dict[str, dict[int, float]], chosen: int, path: Path) -> None:
    """Each criterion against k (one axis each), the chosen k marked; a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    axes = [ax, ax.twinx()] if len(scores) > 1 else [ax]
    for (name, values), axis, color in zip(scores.items(), axes, ("tab:blue", "tab:orange")):
        ks = sorted(values)
        axis.plot(ks, [values[k] for k in ks], marker="o", color=color, label=name)
        axis.set_ylabel(name, color=color)
    ax.axvline(chosen, color="grey", linestyle="--")
    ax.set_xlabel(f"k (topics); chosen k = {chosen}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load_docs(args: argparse.Namespace) -> list[TopicDoc]:
    if args.input:
        return read_documents(args.input, args.max_docs)
    from pipelines.quality.datasets import load_dataset

    dataset = load_dataset(args.dataset)
    parts = (("test", dataset.test), ("dev", dataset.dev), ("train", dataset.train))
    docs = [TopicDoc(f"{args.dataset}:{part}:{i}", e.text, str(e.label))
            for part, examples in parts for i, e in enumerate(examples) if e.text]
    return sample_examples(docs, args.max_docs, args.seed)


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    embedding = args.embedding or ("albert" if args.preset else "hybrid")
    if embedding == "albert" and not args.preset:
        raise SystemExit("topics: --embedding albert needs --preset PATH (or use tfidf)")
    k_values = [args.k] if args.k is not None else range(args.k_min, args.k_max + 1)
    docs = _load_docs(args)
    if len(docs) < 3:
        raise SystemExit(f"topics: {len(docs)} texts found; at least 3 are needed")
    texts = [d.text for d in docs]
    started = time.monotonic()
    embeddings = embed_texts(args.preset, texts, args.sequence_length, embedding=embedding,
                             seed=args.seed)
    try:
        model = discover_topics(texts, embeddings, k_values, seed=args.seed,
                                criterion=args.criterion)
    except ValueError as error:
        raise SystemExit(f"topics: {error}") from None
    summary = {
        "source": args.dataset or args.input,
        "embedding": embedding,
        "preset": args.preset,
        "n": len(docs),
        "criterion_name": model.criterion_name,
        "k": model.k,
        "criterion": {str(k): round(v, 5) for k, v in model.criterion.items()},
        "scores": {name: {str(k): round(v, 5) for k, v in values.items()}
                   for name, values in model.scores.items()},
        "topics": [{"topic": t, "name": model.names[t], "size": model.sizes[t],
                    "terms": model.top_terms[t]} for t in range(model.k)],
        "wall_s": round(time.monotonic() - started, 1),
    }
    labels = [d.label for d in docs]
    if all(label is not None for label in labels):
        summary.update(topic_agreement(labels, model.assignments))
        summary["k_true"] = len(set(labels))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "topics.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    with open(out / "assignments.jsonl", "w", encoding="utf-8") as handle:
        for doc, topic in zip(docs, model.assignments):
            row = {"id": doc.id, "topic": int(topic), "text": doc.text[:80]}
            if doc.label is not None:
                row["label"] = doc.label
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if len(model.criterion) > 1:
        plot_criterion(model.scores, model.k, out / "criterion.png")
    for t in range(model.k):
        print(f"topic {t:2d} ({model.sizes[t]:5d} texts): {model.names[t]}")
    scores = f", NMI {summary['nmi']:.3f}, ARI {summary['ari']:.3f}" if "nmi" in summary else ""
    print(f"k = {model.k} by {model.criterion_name}{scores}; wrote {out}/topics.json")
    return 0
