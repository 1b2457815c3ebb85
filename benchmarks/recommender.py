"""Recommendation quality on real data, every method side by side in one harness (EVAL.md).

Amazon 5-core categories (All_Beauty, Gift_Cards, Magazine_Subscriptions): leave-last-out split,
full catalogue, seen items excluded, fitted on train, chosen on dev, test reported. Methods:

  two-tower + ranker   what `train-recommender` exports (recommender/fit.py)
  two-tower            the retrieval stage alone (id + text + aspect features)
  two-tower (ID only)  the same towers without features (temperature chosen on dev)
  ease, item-knn, most-popular, content   the single signals the ranker combines
  content TF-IDF       TF-IDF of the user's train reviews vs the item's train reviews (EVAL.md)

Beside NDCG@10 / Recall@10 / MRR (all users and the cold-start slice): catalogue coverage of the
top-10 lists, the share of distinct top-1 items and the largest share of users one item is top-1
for; and, for the exported model's top-10 explanations: share personal (an aspect the user wrote
about), share quoting an aspect, verbatim quotes, quotes the encoder labels positive, distinct
quotes. MIND (behaviours, impressions; AUC, MRR, nDCG@5/10 per impression as MIND reports them):
most-popular and content TF-IDF over a time split (first 80% of impressions to fit, last 20% to
test); the two-tower needs the features stage run on MIND and is not measured there yet.

Each category needs a workspace that went through the chain up to `features`; missing ones are
made with `opinionrec run --minutes 20` (about 20 minutes each on 2 cores):

    python benchmarks/recommender.py --root /tmp/bench      # ~6 min with the workspaces made

The exported model is fitted from base seed 0 for every table, and refitted from base seeds 10 and
20 for the seed-spread table (test NDCG@10 of one fit moves by ~0.01-0.02 with its seeds alone).
The blend table (`blend_bound`) bounds what any re-weighting of the signals could reach on test.

Writes benchmarks/results/recommender.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks._common import markdown_table, write_results  # noqa: E402

SHARED = Path(os.environ.get("OPINIONREC_SHARED_DATA",
                             Path(__file__).resolve().parents[2] / "shared" / "data"))
AMAZON = SHARED / "amazon-reviews-2018-5core-small"
CATEGORIES = ("All_Beauty", "Gift_Cards", "Magazine_Subscriptions")
MIND = SHARED / "mind-small-train-sample"
K = 10


# === Amazon ===


def ensure_workspace(root: Path, category: str, minutes: float) -> Path:
    ws = root / f"ws_{category}"
    if (ws / "features" / "interactions.parquet").exists():
        return ws
    inputs = ["--input", str(AMAZON / f"{category}_5.json.gz")]
    if (AMAZON / f"meta_{category}.json.gz").exists():
        inputs += ["--input", str(AMAZON / f"meta_{category}.json.gz")]
    print(f"{category}: no workspace under {root}; running `opinionrec run` ({minutes:.0f} min)")
    subprocess.run([sys.executable, "-m", "pipelines.cli", "run", "--workspace", str(ws),
                    "--minutes", str(minutes), *inputs], check=True)
    return ws


def tfidf_scorer(docs: pd.DataFrame, features, train: pd.DataFrame):
    """Cosine of TF-IDF vectors: the user's train review texts vs the item's train review texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    reviews = docs[docs["kind"] == "review"][["user", "item", "text"]]
    pairs = set(zip(train["user"], train["item"]))
    reviews = reviews[[pair in pairs for pair in zip(reviews["user"], reviews["item"])]]
    item_text = reviews.groupby("item")["text"].apply(" ".join)
    user_text = reviews.groupby("user")["text"].apply(" ".join)
    items = [item_text.get(i, "") for i in features.items.ids]
    users = [user_text.get(u, "") for u in features.users.ids]
    vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=1, stop_words="english")
    vectorizer.fit(items + users)
    item_matrix = normalize(vectorizer.transform(items))
    user_matrix = normalize(vectorizer.transform(users))
    return lambda rows: (user_matrix[rows] @ item_matrix.T).toarray()


def top_lists(scorer, split, num_items: int, k: int = K) -> np.ndarray:
    """Each test user's top-k items (train and dev items excluded), [users, k] item rows."""
    from recommender import evaluate as evaluation
    from recommender.rerank import candidates_of

    seen = evaluation.exclusion_lists([split.train, split.dev])
    return candidates_of(scorer, split.test["user_row"].to_numpy(), seen, num_items, k)[1]


def diversity(top: np.ndarray, num_items: int, warm: np.ndarray | None = None) -> dict:
    """Coverage and top-1 concentration; with `warm` (test users with a train interaction), the
    concentration among them too: a user the model knows nothing of can only get the popular list."""
    def max_share(first: np.ndarray) -> float:
        return float(np.bincount(first, minlength=num_items).max() / len(first)) \
            if len(first) else 0.0

    first = top[:, 0]
    out = {"coverage@10": float(len(np.unique(top)) / num_items),
           "distinct_top1_share": float(len(np.unique(first)) / num_items),
           "max_top1_user_share": max_share(first)}
    if warm is not None:
        out["max_top1_warm_user_share"] = max_share(first[warm])
        out["warm_users"] = int(warm.sum())
    return out


def id_only_two_tower(features, split, config, temperatures):
    """The same towers without profile features, temperature and epochs chosen on dev and as
    many seeds averaged as for the full model (`recommender.fit`)."""
    from recommender.fit import _tune_towers
    from recommender.train import ensemble_vectors, train_towers

    id_only = replace(config, use_features=False)
    tuned, first, _ = _tune_towers(features, split, id_only, temperatures, None)
    towers = train_towers(features, split, replace(tuned, epochs=config.epochs,
                                                   patience=config.patience), first=first)
    users, items = ensemble_vectors(towers, features)
    return lambda rows: users[rows] @ items.T


QUOTE = re.compile(r'"(.*)"')


def explanation_metrics(module, features, docs: pd.DataFrame, sentences: pd.DataFrame) -> dict:
    """What users read: the exported module's top-10 explanations for every known user."""
    import tensorflow as tf

    users = list(features.users.ids)
    out = module.serve(tf.constant(users))
    explanations = [[e.decode() for e in row] for row in out["explanations"].numpy()]
    items = [[i.decode() for i in row] for row in out["item_ids"].numpy()]
    item_texts = docs[docs["kind"] == "review"].groupby("item")["text"].apply(list).to_dict()
    positive = dict(zip(sentences["text"], sentences["sentiment_label"] == "positive"))
    aspects = list(features.aspects)
    weights = features.users.aspect_weight
    rows = {"explanations": 0, "personal": 0, "aspect": 0, "plain": 0, "verbatim": 0,
            "encoder_positive": 0, "user_wrote_about": 0, "liked": 0, "caveat": 0, "could": 0}
    # The ceiling of the personal share: pairs where the user wrote about an aspect that the
    # item's reviews mention at all (a personal line needs one of them to be praised and quotable).
    wrote_any = (features.users.aspect_count > 0 if features.users.aspect_count is not None
                 else weights > 0)
    item_row = features.item_index
    mentioned = features.items.aspect_count > 0
    quotes = []
    examples = []
    for u, (user_items, lines) in enumerate(zip(items, explanations)):
        for item, line in zip(user_items, lines):
            if not item:
                continue
            rows["explanations"] += 1
            rows["could"] += bool((wrote_any[u] & mentioned[item_row[item]]).any())
            rows["caveat"] += " Note: reviewers criticise" in line
            match = QUOTE.search(line)
            if not match:
                rows["plain"] += 1
                continue
            rows["aspect"] += 1
            quote = match.group(1)
            quotes.append(quote)
            personal = line.startswith(("You care about", "You wrote about"))
            rows["personal"] += personal
            rows["liked"] += line.startswith("Because you liked")
            head = line.split(': "', 1)[0]
            aspect = re.sub(r"^(You care about |You wrote about |Reviewers praise its |"
                            r"Because you liked .*; reviewers praise its )", "", head)
            wrote = features.users.aspect_count
            if aspect in aspects and (weights[u, aspects.index(aspect)] > 0 or (
                    wrote is not None and wrote[u, aspects.index(aspect)] > 0)):
                rows["user_wrote_about"] += 1
            rows["verbatim"] += any(quote in text for text in item_texts.get(item, []))
            rows["encoder_positive"] += bool(positive.get(quote, False))
            if len(examples) < 60 and u % 7 == 0:
                examples.append({"user": users[u], "item": item, "explanation": line})
    n, quoted = max(rows["explanations"], 1), max(rows["aspect"], 1)
    writers = wrote_any.any(axis=1)
    writer_lines = [(line, bool(writers[u])) for u, lines in enumerate(explanations)
                    for line, item in zip(lines, items[u]) if item]
    writer_total = max(sum(w for _, w in writer_lines), 1)
    first = [row[0] for row in items if row and row[0]]
    top1 = pd.Series(first).value_counts()
    return {"explanations": rows["explanations"],
            "share_personal_for_users_writing_about_an_aspect": sum(
                w and line.startswith(("You care about", "You wrote about"))
                for line, w in writer_lines) / writer_total,
            "served_max_top1_user_share": float(top1.iloc[0] / len(first)) if len(first) else 0.0,
            "served_top1_item": str(top1.index[0]) if len(first) else "",
            "served_coverage@10": len({i for row in items for i in row if i})
            / len(features.items),
            "share_personal": rows["personal"] / n,
            "share_aspect": rows["aspect"] / n,
            "share_plain": rows["plain"] / n,
            "share_because_you_liked": rows["liked"] / n,
            "share_with_caveat": rows["caveat"] / n,
            "share_citing_aspect_user_wrote_about": rows["user_wrote_about"] / n,
            "personal_ceiling": rows["could"] / n,
            "users_writing_about_an_aspect": float(wrote_any.any(axis=1).mean()),
            "verbatim_of_quotes": rows["verbatim"] / quoted,
            "encoder_positive_of_quotes": rows["encoder_positive"] / quoted,
            "unique_quote_ratio": len(set(quotes)) / quoted,
            "examples": examples}


def description_metrics(ws: Path, features, sentences: pd.DataFrame) -> dict:
    """`opinionrec describe`'s rule on this workspace: how many items get pros and cons."""
    from pipelines.corpus import read_parquet_dir
    from pipelines.describe import describe_items
    from pipelines.features import _aspect_terms
    from pipelines.workspace import Workspace

    docs = read_parquet_dir(ws / "features" / "docs",
                            ["doc_id", "kind", "user", "item", "rating"])
    titles = dict(zip(features.items.ids, features.items.titles))
    described = describe_items(sentences, docs, titles, features.groups or {},
                               _aspect_terms(Workspace(ws)))
    n = max(len(described), 1)
    return {"items": len(described),
            "share_with_pros": sum(bool(d.pros) for d in described) / n,
            "share_with_cons": sum(bool(d.cons) for d in described) / n,
            "examples": [d.as_dict() for d in described[:3]]}


BLEND_WEIGHTS = (0, 1, 2)


def blend_bound(scorers: dict, split, num_items: int) -> dict:
    """How far a weighting of the signals can go: every weighting (0, 1 or 2 each) of the
    per-user standardised scores in `scorers`, test NDCG@10 of the best on dev (a method a user
    could run) and of the best on test itself (an upper bound on re-weighting these signals, not a
    method). Issue 14's 1.1x the ID-only two-tower on Gift_Cards lies above the bound there."""
    import itertools

    from recommender import evaluate as evaluation
    from recommender.signals import standardised_per_user

    users = np.arange(int(max(split.train["user_row"].max(), split.dev["user_row"].max(),
                              split.test["user_row"].max())) + 1)
    names = list(scorers)
    standardised = [standardised_per_user(np.asarray(scorers[name](users), dtype="float64"))
                    for name in names]
    rows = []
    for weights in itertools.product(BLEND_WEIGHTS, repeat=len(names)):
        if not any(weights):
            continue
        blended = sum(w * m for w, m in zip(weights, standardised) if w)
        scorer = lambda rows_, b=blended: b[rows_]  # noqa: E731
        rows.append({"weights": dict(zip(names, weights)), **{
            part: evaluation.evaluate(scorer, split, num_items, part, K)["all"][f"ndcg@{K}"]
            for part in ("dev", "test")}})
    by_dev = max(rows, key=lambda row: row["dev"])
    by_test = max(rows, key=lambda row: row["test"])
    return {"signals": names, "weights_tried": list(BLEND_WEIGHTS), "best_on_dev": by_dev,
            "best_on_test": by_test}


def seed_spread(features, split, config, base_seeds, temperatures) -> dict:
    """Dev and test NDCG@10 of the exported model, the ranker and the two-tower signal refitted
    from other base seeds: how far one fit's figures move with its seeds alone."""
    from recommender.fit import RANKER, fit_recommender

    spread = {}
    for seed in base_seeds:
        fit = fit_recommender(features, split, replace(config, seed=seed),
                              temperatures=temperatures)
        spread[str(seed)] = {
            part: {name: getattr(fit, part)[name]["all"][f"ndcg@{K}"]
                   for name in ("exported", RANKER, "two-tower")} for part in ("dev", "test")}
    return spread


def amazon_category(ws: Path, temperatures=(0.05, 0.2), spread_seeds=(10, 20)) -> dict:
    from recommender import evaluate as evaluation
    from recommender.data import load_features
    from recommender.fit import SINGLE_SIGNALS, fit_recommender, signal_scorer
    from recommender.rerank import train_evidence
    from recommender.profiles import profiles_from
    from recommender.ranking import ranker_scorer
    from recommender.serving_module import build_serving_module
    from recommender.train import TrainConfig

    features = load_features(ws / "features", group_items=True)
    split = evaluation.split_interactions(features.interactions)
    num_items = len(features.items)
    # The `train-recommender` defaults.
    config = TrainConfig(epochs=15, patience=3, learning_rate=0.05, seeds=3)
    start = time.perf_counter()
    fit = fit_recommender(features, split, config, temperatures=temperatures)
    fit_seconds = time.perf_counter() - start
    from pipelines.corpus import read_parquet_dir

    docs = read_parquet_dir(ws / "ingest" / "docs")
    sentences = read_parquet_dir(ws / "features" / "sentences")

    scorers = {"two-tower + ranker": None}
    scorers["two-tower (ID only)"] = id_only_two_tower(features, split, config, temperatures)
    scorers["content TF-IDF"] = tfidf_scorer(docs, features, split.train)
    methods = dict(fit.test)
    for name in ("two-tower (ID only)", "content TF-IDF"):
        methods[name] = evaluation.evaluate(scorers[name], split, num_items, "test", K)

    # Top-1 concentration and coverage of the train-fitted model and baselines on test users.
    train_signals = fit.train_signals
    lists = {"two-tower + ranker": top_lists(ranker_scorer(fit.ranker, train_signals), split,
                                             num_items)}
    for name, signal in SINGLE_SIGNALS.items():
        lists[name] = top_lists(signal_scorer(train_signals, signal), split, num_items)
    for name in ("two-tower (ID only)", "content TF-IDF"):
        lists[name] = top_lists(scorers[name], split, num_items)
    warm = split.test["user_row"].isin(set(split.train["user_row"])).to_numpy()
    module = build_serving_module(fit.exported, fit.ranker, features, K, fit.choice, fit.rerank,
                                  fit.max_top1_share)
    # The exported scorer (fitted on train, re-ranked with train-only evidence) against each
    # baseline, user by user on test.
    exported_scorer = fit.scorer(train_signals, train_evidence(
        profiles_from(features, features.reviews, split.train)))
    lists["exported"] = top_lists(exported_scorer, split, num_items)
    test_ranks = lambda scorer: evaluation.part_ranks(scorer, split, num_items, "test")  # noqa
    exported_ranks = test_ranks(exported_scorer)
    versus = {name: evaluation.ndcg_difference(exported_ranks, test_ranks(
        signal_scorer(train_signals, SINGLE_SIGNALS[name]))) for name in
        ("ease", "item-knn", "most-popular")}
    versus["two-tower (ID only)"] = evaluation.ndcg_difference(
        exported_ranks, test_ranks(scorers["two-tower (ID only)"]))
    bound = blend_bound({"ranker": ranker_scorer(fit.ranker, train_signals),
                         **{name: signal_scorer(train_signals, SINGLE_SIGNALS[name])
                            for name in ("two-tower", "ease", "item-knn")},
                         "two-tower (ID only)": scorers["two-tower (ID only)"]}, split, num_items)
    spread = {"0": {part: {name: getattr(fit, part)[name]["all"][f"ndcg@{K}"]
                           for name in ("exported", "two-tower + ranker", "two-tower")}
                    for part in ("dev", "test")}}
    spread.update(seed_spread(features, split, config, spread_seeds, temperatures))
    return {
        "seed_spread": spread,
        "blend_bound": bound,
        "merged_listings": features.groups or {},
        "counts": {"users": len(features.users), "items": num_items, "train": len(split.train),
                   "dev": len(split.dev), "test": len(split.test),
                   "cold_start_test": methods["most-popular"]["cold_start"]["users"]},
        "exported": fit.choice,
        "rerank": fit.rerank.as_dict(),
        "max_top1_share": fit.max_top1_share,
        "exported_minus": versus,
        "fit_seconds": round(fit_seconds, 1),
        "training": fit.training,
        "dev": {name: parts["all"] for name, parts in fit.dev.items()},
        "test": methods,
        "diversity": {name: diversity(top, num_items, warm) for name, top in lists.items()},
        "explanations": explanation_metrics(module, features, docs, sentences),
        "descriptions": description_metrics(ws, features, sentences),
        "aspects": list(features.aspects),
    }


# === MIND ===


def mind_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score

    order = np.argsort(-scores, kind="stable")
    ranked = labels[order]

    def dcg(values: np.ndarray, k: int) -> float:
        values = values[:k]
        return float(np.sum((2 ** values - 1) / np.log2(np.arange(2, len(values) + 2))))

    ideal = np.sort(labels)[::-1]
    hits = np.flatnonzero(ranked)
    return {"auc": float(roc_auc_score(labels, scores)),
            "mrr": float(np.sum(ranked / (np.arange(len(ranked)) + 1)) / np.sum(labels)),
            "ndcg@5": dcg(ranked, 5) / dcg(ideal, 5), "ndcg@10": dcg(ranked, 10) / dcg(ideal, 10),
            "first_hit": int(hits[0]) + 1}


def _mind_impressions(column: pd.Series) -> list[list[tuple[str, int]]]:
    return [[(t.rsplit("-", 1)[0], int(t.rsplit("-", 1)[1])) for t in str(v).split()]
            for v in column]


def _history(value) -> list[str]:
    return [n for n in str(value).split() if n != "nan"]


def mind_features(fit_part: pd.DataFrame, news: pd.DataFrame, text_vectors: np.ndarray):
    """A `FeatureSet` of MIND clicks: news are items (their text vectors as the item embedding,
    zeros for the many without a news.tsv row; no aspects), users are the readers of the fit
    period (mean text vector of what they clicked), and every click (history or impression) is an
    interaction, history clicks first. `news` must list every news id of the behaviours."""
    from recommender.data import FeatureSet, Items, Users

    item_index = {n: i for i, n in enumerate(news["id"])}
    rows = []
    for user, shown_at, history, impressions in zip(fit_part["user"], fit_part["time"],
                                                    fit_part["history"], _mind_impressions(
                                                        fit_part["impressions"])):
        for position, item in enumerate(_history(history)):  # clicked before this impression
            rows.append((user, item, pd.Timestamp(0) + pd.Timedelta(seconds=position)))
        rows += [(user, item, shown_at) for item, label in impressions if label]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame = frame[frame["item"].isin(item_index)]
    frame = frame.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"])
    users = np.array(sorted(frame["user"].unique()), dtype=object)
    user_index = {u: i for i, u in enumerate(users)}
    frame = frame.assign(rating=np.nan, position=0, item_row=frame["item"].map(item_index),
                         user_row=frame["user"].map(user_index)).reset_index(drop=True)
    user_embedding = np.zeros((len(users), text_vectors.shape[1]), "float32")
    np.add.at(user_embedding, frame["user_row"].to_numpy(), text_vectors[frame["item_row"]])
    counts = np.bincount(frame["user_row"], minlength=len(users))
    n, none = len(news), np.zeros((len(news), 0))
    items = Items(ids=news["id"].to_numpy(dtype=object), titles=news["title"].fillna("")
                  .to_numpy(dtype=object), n_reviews=np.zeros(n, "int64"),
                  embedding=text_vectors, aspect_score=none.astype("float32"),
                  aspect_count=none.astype("int32"), aspect_sentence=none.astype(object),
                  aspect_positive=None)
    users_table = Users(ids=users, n_reviews=counts.astype("int64"),
                        aspect_weight=np.zeros((len(users), 0), "float32"),
                        embedding=user_embedding / np.maximum(counts, 1)[:, None])
    return FeatureSet(aspects=[], items=items, users=users_table, interactions=frame)


def mind() -> dict:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    from recommender import evaluate as evaluation
    from recommender.train import TrainConfig, embed, train_retrieval

    behaviours = pd.read_csv(MIND / "behaviors.tsv", sep="\t", header=None, quoting=3,
                             names=["impression", "user", "time", "history", "impressions"])
    behaviours["time"] = pd.to_datetime(behaviours["time"], format="%m/%d/%Y %I:%M:%S %p")
    behaviours = behaviours.sort_values(["time", "impression"], kind="stable")
    cut = int(0.8 * len(behaviours))
    fit_part, test_part = behaviours.iloc[:cut], behaviours.iloc[cut:]
    news = pd.read_csv(MIND / "news.tsv", sep="\t", header=None, quoting=3,
                       names=["id", "category", "subcategory", "title", "abstract", "url",
                              "title_entities", "abstract_entities"])
    text = dict(zip(news["id"], news["title"].fillna("") + " " + news["abstract"].fillna("")))
    # The sample's news.tsv holds 2,000 news; the behaviours name many more (without text).
    named = {item for column in ("history", "impressions") for value in behaviours[column]
             for item in (t.rsplit("-", 1)[0] for t in str(value).split()) if item != "nan"}
    news = pd.concat([news, pd.DataFrame({"id": sorted(named - set(news["id"]))})],
                     ignore_index=True)
    clicks: dict[str, float] = {}
    for impressions in _mind_impressions(fit_part["impressions"]):
        for item, label in impressions:
            clicks[item] = clicks.get(item, 0.0) + label
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit(list(text.values()))
    # The two-tower's text feature: TF-IDF reduced to 128 dimensions (LSA), the news analogue of
    # the review embeddings the Amazon towers read.
    tfidf = vectorizer.transform([text.get(n, "") for n in news["id"]])
    lsa = TruncatedSVD(128, random_state=0).fit_transform(tfidf).astype("float32")
    news_row = {n: i for i, n in enumerate(news["id"])}
    features = mind_features(fit_part, news, lsa)
    split = evaluation.split_interactions(features.interactions)
    towers = {}
    for name, use_features in (("two-tower", True), ("two-tower (ID only)", False)):
        config = TrainConfig(epochs=15, patience=3, learning_rate=0.05, temperature=0.2,
                             use_features=use_features)
        towers[name] = train_retrieval(features, split, config).model
    candidate_vectors = {
        name: embed(model.candidate_tower, {
            "item_id": features.items.ids.astype(str), "embedding": lsa,
            "aspect_score": np.zeros((len(news), 0), "float32")})
        for name, model in towers.items()}
    rng = np.random.default_rng(0)
    per_method: dict[str, list[dict]] = {name: [] for name in (
        "two-tower", "two-tower (ID only)", "most-popular", "content TF-IDF", "random")}
    for user, history, impressions in zip(test_part["user"], test_part["history"],
                                          _mind_impressions(test_part["impressions"])):
        items = [item for item, _ in impressions]
        labels = np.array([label for _, label in impressions], dtype="float64")
        if labels.sum() == 0 or labels.sum() == len(labels):
            continue
        popular = np.array([clicks.get(i, 0.0) for i in items]) + 1e-6 * rng.random(len(items))
        profile = " ".join(text.get(n, "") for n in _history(history))
        user_vector = normalize(vectorizer.transform([profile]))
        item_vectors = normalize(vectorizer.transform([text.get(i, "") for i in items]))
        content = (item_vectors @ user_vector.T).toarray().ravel() + 1e-6 * rng.random(len(items))
        # The query at impression time: the user's id (unknown ids share one embedding) and the
        # mean text vector of the history the impression came with.
        seen = [news_row[n] for n in _history(history) if n in news_row]
        user_text = (lsa[seen].mean(axis=0) if seen else np.zeros(lsa.shape[1], "float32"))
        rows = [news_row[i] for i in items]
        for name, model in towers.items():
            query = embed(model.query_tower, {
                "user_id": np.array([user]), "embedding": user_text[None, :],
                "aspect_weight": np.zeros((1, 0), "float32")})[0]
            scores = candidate_vectors[name][rows] @ query
            per_method[name].append(mind_metrics(labels, scores + 1e-6 * rng.random(len(items))))
        per_method["most-popular"].append(mind_metrics(labels, popular))
        per_method["content TF-IDF"].append(mind_metrics(labels, content))
        per_method["random"].append(mind_metrics(labels, rng.random(len(items))))
    candidates = [i for impressions in _mind_impressions(test_part["impressions"])
                  for i, _ in impressions]
    return {"impressions_fit": int(cut), "impressions_test": len(per_method["random"]),
            "news_with_text": len(text), "news": len(news),
            "test_candidates_with_text": sum(c in text for c in candidates) / len(candidates),
            "click_interactions": int(len(features.interactions)),
            "test": {name: {key: float(np.mean([row[key] for row in rows]))
                            for key in ("auc", "mrr", "ndcg@5", "ndcg@10")}
                     for name, rows in per_method.items()}}


# === Report ===


ORDER = ("exported", "two-tower + ranker", "two-tower", "two-tower (ID only)", "ease", "item-knn",
         "most-popular", "content", "content TF-IDF")


def markdown(results: dict) -> str:
    parts = []
    headers = ["method"] + [c for c in results["amazon"]]
    rows = []
    for method in ORDER:
        row = [method]
        for category, result in results["amazon"].items():
            m = result["test"][method]["all"]
            row.append(f"{m['ndcg@10']:.4f} / {m['recall@10']:.4f}")
        rows.append(row)
    parts.append("Test NDCG@10 / Recall@10 (EVAL.md; fitted on train, chosen on dev):\n")
    parts.append(markdown_table(headers, rows))
    rows = [["exported"] + [
        f"`{r['exported']}`, boost {r['rerank']['boost']}, popularity penalty "
        f"{r['rerank']['popularity_penalty']}" if "rerank" in r else f"`{r['exported']}`"
        for r in results["amazon"].values()]]
    for name in ("ease", "item-knn", "two-tower (ID only)", "most-popular"):
        row = [f"exported - {name}"]
        for result in results["amazon"].values():
            d = result["exported_minus"][name]
            row.append(f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]")
        rows.append(row)
    parts.append("\nThe exported model minus each baseline, test NDCG@10 per user (mean, paired "
                 "bootstrap 95% interval):\n")
    parts.append(markdown_table(headers, rows))
    if all("seed_spread" in r for r in results["amazon"].values()):
        rows = []
        for method in ("exported", "two-tower + ranker", "two-tower"):
            row = [method]
            for result in results["amazon"].values():
                values = [v["test"][method] for v in result["seed_spread"].values()]
                row.append(f"{np.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})")
            rows.append(row)
        seeds = ", ".join(next(iter(results["amazon"].values()))["seed_spread"])
        parts.append(f"\nThe same fit from base seeds {seeds} (each: that seed onward for the "
                     "towers and rankers), test NDCG@10 mean (lowest-highest); the tables above "
                     "are base seed 0:\n")
        parts.append(markdown_table(headers, rows))
    if all("blend_bound" in r for r in results["amazon"].values()):
        bounds = [r["blend_bound"] for r in results["amazon"].values()]
        weights = lambda best: ", ".join(  # noqa: E731
            f"{name} {w}" for name, w in best["weights"].items() if w)
        rows = [[f"best on {by}"] + [
            f"{b[f'best_on_{by}']['test']:.4f} ({weights(b[f'best_on_{by}'])})" for b in bounds]
            for by in ("dev", "test")]
        rows.append(["best on test / ID-only two-tower"] + [
            f"{b['best_on_test']['test'] / r['test']['two-tower (ID only)']['all']['ndcg@10']:.3f}x"
            for b, r in zip(bounds, results["amazon"].values())])
        parts.append("\nWhat re-weighting the signals can reach: every weighting (0, 1 or 2 each) "
                     "of the per-user standardised scores of the ranker, two-tower, ID-only "
                     "two-tower, EASE and item-kNN; test NDCG@10 of the weighting best on dev, "
                     "and of the one best on test itself (an upper bound, not a method):\n")
        parts.append(markdown_table(["weighting"] + list(results["amazon"]), rows))
    rows = []
    for method in ORDER:
        row = [method]
        for result in results["amazon"].values():
            d = result["diversity"].get(method)
            row.append("-" if d is None else
                       f"{d['coverage@10']:.2f} / {d['max_top1_user_share']:.2f} / "
                       f"{d.get('max_top1_warm_user_share', float('nan')):.2f}")
        rows.append(row)
    parts.append("\nCatalogue coverage of the top-10 lists / largest share of test users one item "
                 "is top-1 for / the same among test users with a train interaction:\n")
    parts.append(markdown_table(headers, rows))
    keys = ["share_personal", "share_citing_aspect_user_wrote_about", "share_because_you_liked",
            "share_aspect", "share_plain", "share_with_caveat", "verbatim_of_quotes",
            "encoder_positive_of_quotes", "unique_quote_ratio", "personal_ceiling",
            "users_writing_about_an_aspect", "share_personal_for_users_writing_about_an_aspect",
            "served_max_top1_user_share", "served_coverage@10"]
    rows = [[key] + [f"{r['explanations'][key]:.3f}" for r in results["amazon"].values()]
            for key in keys]
    parts.append("\nExplanations of the exported model's top-10 lists (every known user; "
                 "`served_*`: the top-1 concentration and coverage of those served lists):\n")
    parts.append(markdown_table(["metric"] + list(results["amazon"]), rows))
    rows = [[key] + [f"{r['descriptions'][key]:.2f}" if isinstance(r['descriptions'][key], float)
                     else str(r['descriptions'][key]) for r in results["amazon"].values()]
            for key in ("items", "share_with_pros", "share_with_cons")]
    parts.append("\nItem descriptions (`opinionrec describe`: pros and cons with quotes):\n")
    parts.append(markdown_table(["metric"] + list(results["amazon"]), rows))
    for category, result in results["amazon"].items():
        parts.append(f"\n{category}: exported `{result['exported']}`; two-tower temperature "
                     f"{result['training']['two_tower']['temperature']}, loss per epoch "
                     f"{[round(x, 3) for x in result['training']['two_tower']['loss_per_epoch']]}"
                     f"; EASE L2 {result['ease_l2'] if 'ease_l2' in result else result['training']['ease_l2']}"
                     f"; fit {result['fit_seconds']} s.")
    if "mind" in results:
        mind_result = results["mind"]
        parts.append(f"\nMIND ({mind_result['impressions_test']} test impressions, time split):\n")
        parts.append(markdown_table(["method", "AUC", "MRR", "nDCG@5", "nDCG@10"], [
            [name, *(f"{m[key]:.4f}" for key in ("auc", "mrr", "ndcg@5", "ndcg@10"))]
            for name, m in mind_result["test"].items()]))
    return "\n".join(parts)


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories = list(results["amazon"])
    figure, axis = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(ORDER)
    for i, method in enumerate(ORDER):
        values = [results["amazon"][c]["test"][method]["all"]["ndcg@10"] for c in categories]
        axis.bar(np.arange(len(categories)) + i * width, values, width, label=method)
    axis.set_xticks(np.arange(len(categories)) + 0.4 - width / 2, categories)
    axis.set_ylabel("test NDCG@10")
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("bench_workspaces"),
                        help="folder of the per-category workspaces ws_<category> "
                             "(made when missing; default: %(default)s)")
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="budget of `opinionrec run` for a missing workspace")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES))
    parser.add_argument("--no-mind", action="store_true", help="skip the MIND impressions")
    args = parser.parse_args()
    from pipelines.cli import configure_logging
    configure_logging(False)

    results: dict = {"protocol": "EVAL.md Recommendation", "k": K, "amazon": {}}
    for category in args.categories:
        ws = ensure_workspace(args.root, category, args.minutes)
        print(f"== {category}")
        results["amazon"][category] = amazon_category(ws)
    if not args.no_mind:
        print("== MIND")
        results["mind"] = mind()
    from benchmarks._common import RESULTS
    text = markdown(results)
    print(text)
    write_results("recommender", results, text)
    plot(results, RESULTS / "recommender.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
