"""Unlabelled in-domain text for task distillation: texts the fine-tuned teacher labels for the
student beside the labelled training set (TinyBERT's task distillation on more in-domain text).

Three sources, all without their labels (for aspect polarity, each sentence that names a
training aspect term, paired with it: "sentence<TAB>term", `aspect_pairs`):

- the dataset's own training texts that a `--max-train` subset left out;
- for the SemEval aspect sets, review sentences of the same domain from SubjQA's *training* split
  (Amazon electronics reviews for laptops, Yelp reviews for restaurants; `../shared/data/
  subjqa-review-qa`), split into sentences as the ingest job splits them;
- for a news set (AG News, BBC, MIND), the texts of the *other* news sets, every split of
  theirs: other news, never a text of this set (MIND's 1,600 training articles have no unused
  rest to draw on).

No text whose normalised form appears in the dataset's dev or test split is ever returned, so no
held-out figure is measured on a text the student learnt from (`held_out_twins` checks it).
"""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path
from typing import Iterable, Sequence

from pipelines.quality.datasets import SHARED_DATA, Dataset, stratified_subset
from pipelines.records import clean_text, split_sentences

SUBJQA = "subjqa-review-qa"
# Dataset name fragment -> SubjQA domain whose training reviews are in-domain for it.
REVIEW_DOMAINS = {"laptops": "electronics", "restaurants": "restaurants"}
# News sets: each one's in-domain text includes the others'.
NEWS_SETS = ("ag_news", "bbc", "mind")
NO_ANSWER = "ANSWERNOTFOUND"
MIN_WORDS = 3  # "Great!" teaches a tagger nothing
# SubjQA joins some sentences with no space: "...on your Nx7.)You can close the case".
_GLUED = re.compile(r"([a-z][.!?]\)?)([A-Z])")


def text_key(text: str) -> str:
    """What counts as the same text: case and whitespace aside."""
    return " ".join(text.lower().split())


def review_sentences(domain: str, data_dir: Path = SHARED_DATA) -> list[str]:
    """The sentences of SubjQA's distinct training reviews of `domain`, in file order."""
    path = Path(data_dir) / SUBJQA / domain / "train.csv"
    csv.field_size_limit(1 << 24)
    seen: set[str] = set()
    sentences: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["review_id"] in seen:
                continue
            seen.add(row["review_id"])
            review = _GLUED.sub(r"\1 \2", row["review"].removesuffix(NO_ANSWER))
            sentences += split_sentences(clean_text(review))
    return sentences


def news_texts(dataset_name: str, data_dir: Path = SHARED_DATA) -> list[str]:
    """Every text of the news sets other than `dataset_name` (none when it is no news set)."""
    from pipelines.quality.datasets import load_dataset

    if dataset_name not in NEWS_SETS:
        return []
    texts: list[str] = []
    for other in NEWS_SETS:
        if other != dataset_name:
            data = load_dataset(other, data_dir)
            texts += [e.text for e in (*data.train, *data.dev, *data.test)]
    return texts


def split_training_texts(dataset: Dataset, max_train: int | None,
                         seed: int) -> tuple[list[str], list[str]]:
    """(used, unused) training texts of a seeded `max_train` subset, as `tasks.train_task`
    takes it."""
    if not max_train or max_train >= len(dataset.train):
        return [e.text for e in dataset.train], []
    used = {id(e) for e in stratified_subset(dataset.train, max_train, seed)}
    return ([e.text for e in dataset.train if id(e) in used],
            [e.text for e in dataset.train if id(e) not in used])


def in_domain_texts(dataset: Dataset, max_texts: int, max_train: int | None = None,
                    seed: int = 0, data_dir: Path = SHARED_DATA) -> list[str]:
    """Up to `max_texts` distinct unlabelled texts for `dataset` (a seeded sample), none of them
    a text of its dev or test split or of the labelled training texts."""
    used, candidates = split_training_texts(dataset, max_train, seed)
    for fragment, domain in REVIEW_DOMAINS.items():
        if fragment in dataset.name:
            candidates += review_sentences(domain, data_dir)
    candidates += news_texts(dataset.name, data_dir)
    taken = {text_key(t) for t in used}
    taken |= {text_key(e.text) for e in (*dataset.dev, *dataset.test)}
    texts: list[str] = []
    for text in candidates:
        key = text_key(text)
        if key in taken or len(text.split()) < MIN_WORDS:
            continue
        taken.add(key)
        texts.append(text)
    random.Random(seed).shuffle(texts)
    if dataset.task == "aspect_polarity":
        return aspect_pairs(texts, dataset.train, max_texts)
    return texts[:max_texts]


def aspect_pairs(sentences: Sequence[str], train: Sequence, max_pairs: int) -> list[str]:
    """"sentence<TAB>term" lines for aspect polarity: each sentence that names an aspect term of
    the training examples, paired with the longest such term (as the sentence spells it)."""
    terms = sorted({e.target.lower() for e in train if e.target}, key=len, reverse=True)
    if not terms:
        return []
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\b", re.IGNORECASE)
    pairs = []
    for sentence in sentences:
        found = pattern.findall(sentence)
        if found:
            pairs.append(f"{sentence}\t{max(found, key=len)}")
            if len(pairs) == max_pairs:
                break
    return pairs


def held_out_twins(texts: Iterable[str], held_out: Sequence) -> list[str]:
    """`texts` whose normalised form is also a held-out example's text (should be none)."""
    keys = {text_key(e.text) for e in held_out}
    return [t for t in texts if text_key(t) in keys]


def write_texts(texts: Sequence[str], path: Path) -> Path:
    """One text per line (texts are cleaned, so none holds a newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    return path
