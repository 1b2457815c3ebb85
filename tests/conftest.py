"""Shared fixtures: the real datasets in ../shared/data, quiet TensorFlow, one Keras per package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("OPINIONREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
).resolve()


def shared_file(relative: str) -> Path:
    """A file or folder under ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the real datasets live in ../shared/data "
                    "(or set OPINIONREC_SHARED_DATA)")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not found (set OPINIONREC_SHARED_DATA)")
    return SHARED_DATA


# A small review-like corpus for tokenizer and model tests (written for the tests, not real data).
ASPECT_PHRASES = {
    "battery": ["The battery life is excellent.", "The battery dies after an hour."],
    "sound": ["The sound is crisp and clear.", "Terrible sound, muffled and tinny."],
    "comfort": ["Very comfortable to wear all day.", "They hurt my ears after a while."],
    "price": ["The price is great.", "The price is too high, a real waste."],
}
FILLER = ["Arrived on Tuesday.", "Bought these for my commute.", "My son uses them for school.",
          "I have had them for two months now."]


def make_review_corpus(n: int = 400, seed: int = 0) -> list[list[str]]:
    """Documents of 2-5 sentences mixing aspect opinions and filler."""
    import random

    rng = random.Random(seed)
    docs = []
    for _ in range(n):
        doc = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.7:
                doc.append(rng.choice(rng.choice(list(ASPECT_PHRASES.values()))))
            else:
                doc.append(rng.choice(FILLER))
        docs.append(doc)
    return docs


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory) -> Path:
    """A SentencePiece model with ALBERT's special tokens, trained on the test corpus."""
    from albert_tf.tokenizer import train_sentencepiece

    sentences = [s for doc in make_review_corpus(300) for s in doc]
    sentences += [f"Headline number {i} about markets and football." for i in range(50)]
    sentences += ["电池很好，音质一般。", "价格便宜，质量不错。"] * 5
    return train_sentencepiece(
        sentences, tmp_path_factory.mktemp("spm") / "spm.model", vocabulary_size=300
    )
