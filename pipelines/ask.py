"""`opinionrec ask --item ASIN "question"`: answer a shopper's question from the item's reviews.

The item's reviews come from the workspace's ingested documents (copies of one text, Amazon's
variant listings, count once). Their sentences are ranked against the question
(`review_retrieval`: BM25, the teacher's sentence embeddings, or both fused), and the
`review_qa` model (`opinionrec train-qa`) reads the best sentence of each of the `--passages`
best reviews (`--radius` sentences each side; -1 for the whole review), in-process or through a
server (`--server`, TF Serving's REST API). The answer is the span with the
highest score among those that clear the model's no-answer threshold, quoted with its review
id, stars and sentence; when none does, the reply is "not answered in the reviews" with the
closest sentence for the reader to judge.
"""

from __future__ import annotations

import argparse
import json
import logging
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser, stage=False)
    parser.add_argument("question", nargs="+", help="the question (quote it, or several words)")
    parser.add_argument("--item", required=True, help="the item id (e.g. an Amazon ASIN)")
    parser.add_argument("--retrieval", choices=["auto", "hybrid", "embedding", "bm25"],
                        default="auto",
                        help="how review sentences are ranked against the question; auto: "
                        "hybrid when the packaged teacher is installed, else bm25 "
                        "(default: %(default)s)")
    parser.add_argument("--passages", type=int, default=5,
                        help="reviews (best-ranked first) the QA model reads (default: "
                        "%(default)s)")
    parser.add_argument("--radius", type=int, default=0,
                        help="what the QA model reads of each of those reviews: its best "
                        "sentence and this many sentences each side; -1: the whole review "
                        "(default: %(default)s, the best on SubjQA: answerable F1 28.6 against "
                        "24.2 for whole reviews)")
    parser.add_argument("--model", type=Path, default=None,
                        help="the review_qa SavedModel (default: the workspace's train-qa output)")
    parser.add_argument("--server", default=None,
                        help="ask a TF Serving REST endpoint (e.g. http://127.0.0.1:8501) "
                        "instead of loading the model here")
    parser.add_argument("--served-name", default="review_qa",
                        help="the model's name on the server (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")


@dataclass
class Reply:
    """The answer (empty when the reviews do not answer) and where it comes from."""

    item: str
    question: str
    answered: bool
    answer: str
    confidence: float
    review_id: str
    rating: float | None
    sentence: str  # the review sentence holding the answer, or the closest one
    reviews_read: int
    reviews_of_item: int
    retrieval: str

    def text(self) -> str:
        stars = f", {self.rating:g} stars" if self.rating is not None else ""
        if self.answered:
            head = (f"Answer: {self.answer}\n  (confidence {self.confidence:.2f}, review "
                    f"{self.review_id}{stars})\n")
            quote = f'"{self.sentence}"'
        else:
            head = (f"Not answered in the reviews of {self.item} ({self.reviews_read} of "
                    f"{self.reviews_of_item} read).\n")
            quote = (f'Closest sentence (review {self.review_id}{stars}): "{self.sentence}"'
                     if self.sentence else "")
        return head + textwrap.fill(quote, width=96, initial_indent="  ",
                                    subsequent_indent="  ")


class LocalQA:
    """The `review_qa` SavedModel in this process (`tf.saved_model.load`)."""

    def __init__(self, path: Path):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  registers the ops the graph uses

        self._tf = tf
        self._serve = tf.saved_model.load(str(path)).signatures["serving_default"]

    def __call__(self, questions: Sequence[str], contexts: Sequence[str]) -> dict[str, list]:
        tf = self._tf
        out = self._serve(question=tf.constant(list(questions)),
                          context=tf.constant(list(contexts)))
        return {k: [v.decode() if isinstance(v, bytes) else v for v in t.numpy().tolist()]
                for k, t in out.items()}


class RemoteQA:
    """`review_qa` on a TF Serving REST endpoint (columnar `:predict`)."""

    def __init__(self, server: str, name: str):
        from serving.client import ServingClient

        self.client, self.name = ServingClient(server, timeout=120.0), name

    def __call__(self, questions: Sequence[str], contexts: Sequence[str]) -> dict[str, list]:
        outputs = self.client.predict(self.name, inputs={"question": list(questions),
                                                         "context": list(contexts)})["outputs"]
        return {k: v if isinstance(v, list) else [v] for k, v in outputs.items()}


def item_reviews(docs_dir: Path, item: str):
    """The item's reviews (a DataFrame: id, rating, text, sentences), one per distinct text."""
    from pipelines.corpus import read_docs, split_key

    docs = read_docs(docs_dir, kinds=["review"],
                     columns=["item", "rating", "text", "sentences"])
    reviews = docs[docs["item"] == item]
    return reviews[~reviews["text"].map(split_key).duplicated()].reset_index(drop=True)


def answer_question(question: str, item: str, reviews, qa, method: str, passages: int,
                    embed=None, radius: int | None = None) -> Reply:
    """Rank the reviews' sentences, read the best `passages` reviews (whole, or with `radius`
    only their best sentence and `radius` sentences each side), keep the best answer."""
    from pipelines.records import split_sentences
    from pipelines.review_retrieval import passage_around, rank_reviews

    sentences = [list(s) if s is not None and len(s) else split_sentences(t)
                 for s, t in zip(reviews["sentences"], reviews["text"])]
    ranked = rank_reviews(question, sentences, method, embed)[:max(1, passages)]
    reply = Reply(item, question, False, "", 0.0, "", None, "", len(ranked), len(reviews),
                  method)
    if not ranked:
        return reply
    contexts = [reviews["text"][r.index] if radius is None else
                passage_around(reviews["text"][r.index], sentences[r.index], r.sentence_index,
                               radius) for r in ranked]
    out = qa([question] * len(ranked), contexts)
    best = max(range(len(ranked)), key=lambda i: (out["answered"][i], out["score"][i]))
    chosen = ranked[best] if out["answered"][best] else ranked[0]
    row = reviews.iloc[chosen.index]
    reply.review_id = str(row["id"])
    rating = row["rating"]
    reply.rating = None if rating is None or rating != rating else float(rating)
    reply.sentence = chosen.sentence
    if out["answered"][best]:
        reply.answered, reply.answer = True, out["answer"][best]
        reply.confidence = round(float(out["confidence"][best]), 4)
        reply.sentence = holding_sentence(contexts[best], sentences[chosen.index],
                                          int(out["answer_start"][best]),
                                          int(out["answer_end"][best]))
    return reply


def holding_sentence(context: str, sentences: Sequence[str], start: int, end: int) -> str:
    """The sentence (or run of sentences) of `context` that the answer `[start, end)` touches;
    the whole context when the sentences cannot be found in it."""
    from pipelines.review_retrieval import sentence_offsets

    touched = [span for span in sentence_offsets(context, sentences)
               if span is not None and span[0] < end and start < span[1]]
    return context[touched[0][0]:touched[-1][1]] if touched else context


def warn_if_below_baseline(ws: ws_lib.Workspace, model: Path) -> None:
    """Repeat `train-qa`'s warning when the workspace's model did not beat its baseline."""
    metrics = ws.stage_dir("train-qa") / "metrics.json"
    if model.resolve() != ws.review_qa_model.resolve() or not metrics.exists():
        return
    recorded = json.loads(metrics.read_text())
    if recorded.get("below_baseline"):
        log.warning("ask: this review_qa model was BELOW the word-overlap baseline on SubjQA %s "
                    "test (see %s); read its answers with care",
                    ", ".join(recorded["below_baseline"]), metrics)
    if recorded.get("answers_almost_nothing"):
        log.warning("ask: this review_qa model ANSWERS ALMOST NOTHING on SubjQA %s test (see %s); "
                    "expect 'not answered in the reviews' to most questions",
                    ", ".join(recorded["answers_almost_nothing"]), metrics)


def choose_method(method: str) -> str:
    if method != "auto":
        return method
    try:
        from albert_tf.distillation import minilm_folder

        minilm_folder()
        return "hybrid"
    except (ModuleNotFoundError, FileNotFoundError):
        return "bm25"


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    ws = ws_lib.workspace_from_args(args)
    question = " ".join(args.question).strip()
    if not question:
        raise SystemExit("ask: the question is empty")
    try:
        reviews = item_reviews(ws.docs, args.item)
    except FileNotFoundError:
        raise SystemExit(f"ask: {ws.docs} holds no documents; run `opinionrec ingest` "
                         "first") from None
    if reviews.empty:
        raise SystemExit(f"ask: no reviews of item {args.item!r} in {ws.docs}")
    model = args.model or ws.review_qa_model
    if args.server:
        qa = RemoteQA(args.server, args.served_name)
    elif (Path(model) / "saved_model.pb").exists():
        qa = LocalQA(Path(model))
        warn_if_below_baseline(ws, Path(model))
    else:
        raise SystemExit(f"ask: no review_qa model in {model}; run `opinionrec train-qa` first "
                         "(or give --model or --server)")
    method = choose_method(args.retrieval)
    embed = None
    if method != "bm25":
        from albert_tf.distillation import TeacherEncoder

        embed = TeacherEncoder().embed
    try:
        reply = answer_question(question, args.item, reviews, qa, method, args.passages, embed,
                                None if args.radius < 0 else args.radius)
    except OSError as error:
        raise SystemExit(f"ask: cannot reach {args.server} ({error}); is `opinionrec serve` "
                         "running?") from None
    print(json.dumps(asdict(reply), indent=2) if args.json else reply.text())
    return 0
