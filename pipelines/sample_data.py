"""`opinionrec sample-data`: reviews and news with planted structure, in the real input formats.

The generated files are what `make demo` and the scale tests ingest. They are written in the formats
a user brings (Amazon 2018 review and metadata JSON lines, MIND `news.tsv` + `behaviors.tsv`) and
carry structure the later stages should recover, saved beside them in `truth.json`:

- one product domain (headphones and earbuds) with eight aspects, each with 1-3 surface forms;
- each item has a quality in {-1, 0, +1} per aspect and a Zipf-like popularity;
- each user cares about 2 or 3 aspects, picks items whose quality on those aspects is high, writes
  mostly about those aspects with the polarity the item deserves (10% noise), and rates by them;
- every user reviews at least 5 items (5-core) and every item gets reviews;
- news in six topics with their own vocabulary; each topic has burst windows in time, during which
  its articles are shown and clicked more; news readers click their favourite topics more;
- a few malformed and exactly duplicated review lines (`--bad-records`, `--duplicates`) exercise the
  dead-letter and de-duplication paths of `ingest`.

Everything is a function of `--seed`: the same seed writes byte-identical files. Reviews are written
as they are generated, so 10^6 reviews need no more memory than their (user, item, time) plan.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import functools
import gzip
import itertools
import json
import logging
import os
import random
import string
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from pipelines import workspace
from pipelines.records import (
    REJECT_EMPTY_TEXT,
    REJECT_INVALID_JSON,
    REJECT_INVALID_UTF8,
    REJECT_MISSING_FIELD,
    REJECT_OUT_OF_RANGE,
    REJECT_WRONG_TYPE,
)

log = logging.getLogger("opinionrec")

STAGE = "sample-data"
REVIEWS_FILE = "reviews.json.gz"
META_FILE = "meta.json.gz"
NEWS_FILE = "news.tsv"
BEHAVIORS_FILE = "behaviors.tsv"
TRUTH_FILE = "truth.json"
OUTPUT_FILES = (REVIEWS_FILE, META_FILE, NEWS_FILE, BEHAVIORS_FILE, TRUTH_FILE)
MIN_REVIEWS_PER_USER = 5

# === Planted vocabulary: the product domain ===

ASPECTS: dict[str, list[str]] = {
    "battery": ["battery", "battery life"],
    "sound": ["sound", "sound quality", "audio"],
    "comfort": ["comfort", "fit"],
    "price": ["price", "value"],
    "design": ["design", "style"],
    "build quality": ["build quality", "build"],
    "connection": ["bluetooth connection", "connection", "pairing"],
    "noise cancelling": ["noise cancelling", "ANC"],
}
ASPECT_NAMES = tuple(ASPECTS)
# How often users care about each aspect (sound and price are what most buyers mention).
ASPECT_INTEREST = {
    "battery": 1.2,
    "sound": 1.6,
    "comfort": 1.2,
    "price": 1.4,
    "design": 0.7,
    "build quality": 0.9,
    "connection": 0.9,
    "noise cancelling": 0.8,
}

POSITIVE_WORDS = [
    "excellent", "great", "amazing", "fantastic", "superb", "outstanding", "impressive",
    "wonderful", "perfect",
]
NEGATIVE_WORDS = [
    "terrible", "awful", "poor", "disappointing", "weak", "horrible", "bad", "mediocre", "lousy",
]

# Generic opinion templates: {a} is an aspect surface form, {w} an opinion word of the polarity,
# {x} an opinion word of the opposite polarity (for negated forms).
GENERIC_TEMPLATES: dict[int, list[str]] = {
    1: [
        "The {a} is {w}.",
        "{W} {a}.",
        "I love the {a}.",
        "Really {w} {a}.",
        "Very happy with the {a}.",
        "The {a} is not {x} at all.",
        "The {a} could not be better.",
        "{W} {a}, exactly what I wanted.",
        "Honestly the {a} is {w}.",
    ],
    -1: [
        "The {a} is {w}.",
        "{W} {a} for the money.",
        "I hate the {a}.",
        "Really {w} {a}.",
        "Not happy with the {a} at all.",
        "The {a} is not {x}.",
        "The {a} could be a lot better.",
        "Disappointed with the {a}.",
        "Honestly the {a} is {w}.",
    ],
    0: [
        "The {a} is okay.",
        "The {a} is average, nothing special.",
        "The {a} is fine for everyday use.",
        "The {a} is neither good nor bad.",
        "The {a} is acceptable.",
    ],
}
# Aspect-specific phrasings (each names a surface form of its aspect); {n} is a small number.
ASPECT_TEMPLATES: dict[str, dict[int, list[str]]] = {
    "battery": {
        1: ["The battery lasts all week.", "Battery life is easily {n} hours.",
            "I only charge the battery once a week."],
        -1: ["The battery dies fast.", "Battery life is barely {n} hours.",
             "The battery drains overnight even when switched off."],
        0: ["Battery life is about what they advertise."],
    },
    "sound": {
        1: ["The sound is crisp with deep bass.",
            "Sound quality is amazing for music and podcasts.",
            "The audio is clear and well balanced."],
        -1: ["The sound is muddy and tinny.", "Sound quality is flat, no bass at all.",
             "The audio crackles at high volume."],
        0: ["The sound is fine for podcasts."],
    },
    "comfort": {
        1: ["I love the comfort, I wear them all day.",
            "The fit is snug and secure, even at the gym."],
        -1: ["The fit hurts my ears after an hour.", "Comfort is poor, they keep falling out."],
        0: ["Comfort is okay for short sessions."],
    },
    "price": {
        1: ["Great value for the money.", "The price is a steal for what you get."],
        -1: ["The price is way too high for what you get.",
             "Poor value, you can find better for less."],
        0: ["The price is about what I expected."],
    },
    "design": {
        1: ["The design is sleek and minimal.",
            "I love the style, the matte finish looks premium."],
        -1: ["The design is bulky and ugly.", "The style looks cheap in person."],
        0: ["The design is plain."],
    },
    "build quality": {
        1: ["The build quality is solid, they feel sturdy.", "The build feels premium."],
        -1: ["The build quality is flimsy, the hinge cracked in a month.",
             "The build feels cheap and plasticky."],
        0: ["The build feels okay."],
    },
    "connection": {
        1: ["The bluetooth connection is rock solid.", "Pairing was instant with my phone."],
        -1: ["The bluetooth connection keeps dropping.",
             "Pairing is a nightmare every single time."],
        0: ["The connection is stable most of the time."],
    },
    "noise cancelling": {
        1: ["The noise cancelling blocks out the whole train.", "ANC is impressive on flights."],
        -1: ["The noise cancelling barely does anything.", "ANC creates an annoying hiss."],
        0: ["Noise cancelling is decent for the office."],
    },
}
# Two clauses of opposite polarity joined by "but": {a1}/{w1} one polarity, {a2}/{w2} the other.
CONTRAST_TEMPLATES = [
    "The {a1} is {w1} but the {a2} is {w2}.",
    "{W1} {a1}, but the {a2} is {w2}.",
    "I like the {a1} but the {a2} is {w2}.",
    "The {a1} is {w1}, but honestly the {a2} is {w2}.",
]
FILLER_SENTENCES = [
    "Arrived on {day}.",
    "Bought these for my commute.",
    "Shipping was quick.",
    "I use them mostly at the gym.",
    "Got these as a gift for my son.",
    "Came in a nice box with a carrying case.",
    "This is my second pair.",
    "I have had them for about {n} months now.",
    "Ordered on a {day} and they came two days later.",
    "My old pair finally broke.",
    "I mostly listen to podcasts on the bus.",
    "Took a while to figure out the touch controls.",
    "The charging case fits in my pocket.",
    "I use them for video calls at work.",
]
CLOSING_SENTENCES = {
    1: ["Highly recommend!", "Would buy again.", "Five stars from me."],
    0: ["They do the job.", "Not bad overall."],
    -1: ["Would not buy again.", "Returning them.", "Save your money."],
}
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
FIRST_NAMES = [
    "James", "Mary", "John", "Linda", "Robert", "Patricia", "Michael", "Jennifer", "David",
    "Susan", "Carlos", "Maria", "Wei", "Mei", "Ahmed", "Fatima", "Olga", "Ivan", "Priya", "Raj",
    "Kenji", "Yuki", "Sam", "Alex", "Chris", "Jordan", "Taylor", "Emma", "Liam", "Noah", "Olivia",
    "Ava", "Lucas", "Mia", "Ethan", "Zoe", "Omar", "Lena", "Hugo", "Nina",
]
BRANDS = [
    "Auralis", "Sonexa", "Vibecore", "Tonewave", "Bassline", "Echofy", "Nordsound", "Pulsaro",
    "Zentrix", "Kallio Audio",
]
MODELS = ["X{n}", "Pro {n}", "Air {n}", "Q{n}0", "Studio {n}", "Go {n}", "Lite {n}", "Max {n}"]
PRODUCT_TYPES = [
    "Wireless Earbuds", "Bluetooth Headphones", "Noise Cancelling Headphones",
    "Sport Earbuds with Ear Hooks", "Over-Ear Headphones",
    "True Wireless Earbuds with Charging Case", "On-Ear Headphones",
]
CATEGORY_PATH = ["Electronics", "Headphones, Earbuds & Accessories", "Headphones"]
DESCRIPTION_LINES = [
    "<b>Up to {n}0 hours</b> of playtime with the charging case.",
    "Bluetooth 5.{d} for a stable connection &amp; low latency.",
    "IPX{d} sweat and water resistance.",
    "Soft memory-foam ear cushions.<br>Three sizes of ear tips included.",
    "Built-in microphone for hands-free calls.",
    "Fast charging: 10 minutes gives {d} hours of music.",
]

# === Planted vocabulary: news ===

NEWS_TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "subcategories": ["football_nfl", "basketball_nba", "tennis"],
        "entities": ["Riverside Hawks", "Lakeview Titans", "Northfield Rovers", "Coach Miller",
                     "Harbor City Sharks", "the league MVP"],
        "words": ["playoffs", "championship", "season opener", "overtime thriller",
                  "trade deadline", "injury report", "quarterback", "home win", "draft pick",
                  "record-breaking run"],
        "titles": ["{E} beat {E2} in {w}", "{E} clinch spot in the {w}",
                   "{E} sign star ahead of the {w}", "What the {w} means for {E}",
                   "{E} stun {E2} with late comeback"],
        "abstracts": ["The {w} left fans of {E} cheering after a tense second half.",
                      "{E} face {E2} next week with the {w} on the line.",
                      "Analysts say the {w} could reshape the rest of the season."],
    },
    "finance": {
        "subcategories": ["markets", "personal_finance", "banking"],
        "entities": ["Wall Street", "the Federal Reserve", "investors", "big banks",
                     "retail traders", "mortgage lenders"],
        "words": ["interest rates", "quarterly earnings", "stock rally", "inflation report",
                  "bond yields", "market selloff", "dividend", "retirement savings"],
        "titles": ["Stocks slide as {E} weigh {w}", "{E} brace for {w}",
                   "How the latest {w} affects your {w2}", "{E} cheer strong {w}",
                   "Five things {E} should know about {w}"],
        "abstracts": ["{E} reacted to the {w} as markets opened lower.",
                      "Economists expect the {w} to shape {E} plans into next year.",
                      "The {w} surprised {E}, sending bond yields higher."],
    },
    "tech": {
        "subcategories": ["gadgets", "software", "ai"],
        "entities": ["a Silicon Valley startup", "chip makers", "app developers",
                     "the smartphone giant", "cloud providers", "privacy regulators"],
        "words": ["smartphone launch", "software update", "AI model", "chip shortage",
                  "data breach", "app store rules", "cloud outage", "foldable phone"],
        "titles": ["{E} unveil new {w}", "Inside the {w} that has {E} worried",
                   "{E} race to fix {w}", "Review: the {w} everyone is talking about",
                   "Why {E} are betting on the {w}"],
        "abstracts": ["The {w} promises faster performance, {E} say.",
                      "{E} rushed out a patch after the {w} hit millions of users.",
                      "Early tests of the {w} show mixed results for {E}."],
    },
    "health": {
        "subcategories": ["medical", "fitness", "nutrition"],
        "entities": ["doctors", "researchers", "health officials", "nutritionists",
                     "a new study", "hospital staff"],
        "words": ["flu season", "heart disease", "sleep habits", "vaccine trial",
                  "Mediterranean diet", "daily exercise", "blood pressure", "vitamin D"],
        "titles": ["{E} warn about {w}", "What {E} found about {w}",
                   "{E} link {w} to longer life", "The truth about {w}, according to {E}",
                   "Seven ways to improve your {w}"],
        "abstracts": ["{E} say the {w} matters more than most people think.",
                      "A large study of {w} followed thousands of adults for a decade.",
                      "{E} recommend simple changes to manage {w}."],
    },
    "travel": {
        "subcategories": ["destinations", "airlines", "hotels"],
        "entities": ["airlines", "travelers", "a budget carrier", "hotel chains",
                     "tourism boards", "airport officials"],
        "words": ["holiday flights", "beach resort", "national park", "cruise season",
                  "passport rules", "airport delays", "road trip", "city break"],
        "titles": ["{E} prepare for busy {w}", "The best {w} for winter",
                   "{E} cut fares on {w}", "{E} warn of {w} ahead of Thanksgiving",
                   "Why everyone is booking a {w} this year"],
        "abstracts": ["{E} expect record numbers for the {w} this month.",
                      "The {w} tops lists for families looking for a quiet escape.",
                      "{E} urge passengers to plan around {w}."],
    },
    "politics": {
        "subcategories": ["elections", "congress", "policy"],
        "entities": ["the senator", "the governor", "lawmakers", "voters", "the campaign",
                     "the committee"],
        "words": ["impeachment hearing", "budget bill", "election results", "health care plan",
                  "campaign rally", "tax reform", "primary debate", "trade deal"],
        "titles": ["{E} clash over {w}", "{E} push {w} through the house",
                   "What the {w} means for {E}", "{E} react to {w}",
                   "{E} face pressure after {w}"],
        "abstracts": ["{E} spent the day defending the {w} to reporters.",
                      "The {w} is expected to dominate the week in Washington.",
                      "{E} say the {w} will decide next year's race."],
    },
}
NEWS_PERIOD_START = dt.datetime(2019, 11, 9, tzinfo=dt.timezone.utc)
NEWS_PERIOD_DAYS = 6

# Bad-record kinds, in the order they are planted, with the reason `ingest` should give for each.
BAD_RECORD_KINDS: dict[str, str] = {
    "truncated_json": REJECT_INVALID_JSON,
    "non_numeric_rating": REJECT_WRONG_TYPE,
    "missing_text": REJECT_MISSING_FIELD,
    "empty_text": REJECT_EMPTY_TEXT,
    "invalid_utf8": REJECT_INVALID_UTF8,
    "rating_out_of_range": REJECT_OUT_OF_RANGE,
}


# === Options ===


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """Sizes and seed of a generated dataset; `None` users/items scale with `reviews`."""

    reviews: int = 4000
    users: int | None = None
    items: int | None = None
    news: int = 800
    impressions: int = 3000
    bad_records: int = 5
    duplicates: int = 3
    seed: int = 0

    @property
    def num_users(self) -> int:
        return self.users if self.users is not None else max(1, self.reviews // 10)

    @property
    def num_items(self) -> int:
        return self.items if self.items is not None else max(10, self.reviews // 50)

    def validate(self) -> None:
        """Raise ValueError (quoting what was received) when the sizes cannot be met."""
        users, items = self.num_users, self.num_items
        if users < 1 or items < 1:
            raise ValueError(f"`users` and `items` must be positive. Received: {users}, {items}")
        if self.reviews < MIN_REVIEWS_PER_USER * users:
            raise ValueError(
                f"Every user reviews at least {MIN_REVIEWS_PER_USER} items, so `reviews` must be "
                f">= {MIN_REVIEWS_PER_USER} * `users`. Received: reviews={self.reviews}, "
                f"users={users}"
            )
        if items < MIN_REVIEWS_PER_USER or self.reviews > users * items or self.reviews < items:
            raise ValueError(
                "Need items >= 5, reviews <= users * items (a user reviews an item once) and "
                f"reviews >= items (every item is reviewed). Received: reviews={self.reviews}, "
                f"users={users}, items={items}"
            )
        if self.news < 2 * len(NEWS_TOPICS):
            raise ValueError(f"`news` must be >= {2 * len(NEWS_TOPICS)}. Received: {self.news}")
        if min(self.impressions, self.bad_records, self.duplicates) < 0:
            raise ValueError("`impressions`, `bad_records` and `duplicates` must be >= 0.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `opinionrec sample-data`."""
    workspace.add_workspace_argument(parser)
    defaults = SampleConfig()
    parser.add_argument("--output", help="folder to write into (default: <workspace>/raw)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--reviews", type=int, default=defaults.reviews,
                        help="good review lines (default: %(default)s)")
    parser.add_argument("--users", type=int, default=None,
                        help="reviewers (default: reviews / 10; each reviews >= 5 items)")
    parser.add_argument("--items", type=int, default=None,
                        help="products (default: max(10, reviews / 50))")
    parser.add_argument("--news", type=int, default=defaults.news,
                        help="news articles (default: %(default)s)")
    parser.add_argument("--impressions", type=int, default=defaults.impressions,
                        help="MIND impression logs (default: %(default)s)")
    parser.add_argument("--bad-records", type=int, default=defaults.bad_records,
                        help="malformed review lines to plant (default: %(default)s)")
    parser.add_argument("--duplicates", type=int, default=defaults.duplicates,
                        help="exact duplicate review lines to plant (default: %(default)s)")


def config_from_args(args: argparse.Namespace) -> SampleConfig:
    return SampleConfig(
        reviews=args.reviews,
        users=args.users,
        items=args.items,
        news=args.news,
        impressions=args.impressions,
        bad_records=args.bad_records,
        duplicates=args.duplicates,
        seed=args.seed,
    )


def run(args: argparse.Namespace, beam_args: Sequence[str]) -> int:
    """Generate the dataset into `--output` (default `<workspace>/raw`)."""
    del beam_args  # not a Beam job
    ws = workspace.workspace_from_args(args)
    config = config_from_args(args)
    try:
        config.validate()
    except ValueError as error:
        log.error("sample-data: %s", error)
        return 2
    output = Path(args.output) if args.output else ws.raw
    params = {**dataclasses.asdict(config), "output": str(output)}
    written = all((output / name).exists() for name in OUTPUT_FILES)
    if written and workspace.skip_if_fresh(args, ws, STAGE, params, {}):
        return 0
    with workspace.stage_run(ws, STAGE, params, {}) as record:
        record["summary"] = generate(config, output)
    log.info(
        "sample-data: wrote %d review lines (%d bad, %d duplicates), %d items, %d news, "
        "%d impressions to %s",
        record["summary"]["review_lines"], config.bad_records, config.duplicates,
        config.num_items, config.news, config.impressions, output,
    )
    return 0


# === Generation ===


def generate(config: SampleConfig, output: Path) -> dict[str, Any]:
    """Write all files for `config` into `output`; return a summary of what was written."""
    config.validate()
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    text_rng = random.Random(config.seed)
    catalogue = make_catalogue(config.num_items, rng, text_rng)
    users = make_users(config.num_users, rng, text_rng)
    plan = plan_reviews(config, catalogue, users, rng)
    review_truth = write_reviews(output / REVIEWS_FILE, config, plan, catalogue, users, text_rng)
    write_meta(output / META_FILE, catalogue, text_rng)
    news = make_news(config.news, rng, text_rng)
    write_news(output / NEWS_FILE, news)
    news_truth = write_behaviors(output / BEHAVIORS_FILE, config.impressions, news, rng)
    truth = {
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "files": {
            "reviews": REVIEWS_FILE, "meta": META_FILE, "news": NEWS_FILE,
            "behaviors": BEHAVIORS_FILE,
        },
        "aspects": ASPECTS,
        "users": {
            u.reviewer_id: {"aspects": list(u.aspects), "name": u.name} for u in users
        },
        "items": {
            item.asin: {"title": item.title, "quality": item.quality_dict()} for item in catalogue
        },
        **review_truth,
        **news_truth,
    }
    _write_atomically(
        output / TRUTH_FILE,
        lambda f: f.write(json.dumps(truth, indent=1, sort_keys=True).encode() + b"\n"),
    )
    return {
        "review_lines": review_truth["review_lines"],
        "reviews": review_truth["reviews"],
        "items": len(catalogue),
        "users": len(users),
        "news": len(news),
        "impressions": config.impressions,
    }


@dataclasses.dataclass
class Item:
    """A product: its metadata, its planted quality per aspect and its popularity weight."""

    asin: str
    title: str
    brand: str
    price: float
    quality: np.ndarray  # one value in {-1, 0, 1} per aspect, in ASPECTS order
    popularity: float
    release_ts: int
    quality_map: dict[str, int] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.quality_map = {aspect: int(q) for aspect, q in zip(ASPECTS, self.quality)}

    def quality_dict(self) -> dict[str, int]:
        return dict(self.quality_map)


@dataclasses.dataclass
class User:
    """A reviewer: Amazon-style id and name, and the aspects they care about."""

    reviewer_id: str
    name: str
    aspects: tuple[str, ...]
    aspect_index: tuple[int, ...]
    other_aspects: tuple[str, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.other_aspects = tuple(a for a in ASPECTS if a not in self.aspects)


def _unique_codes(count: int, prefix: str, length: int, rng: random.Random) -> list[str]:
    """`count` distinct ids like Amazon's ("A3CIUOJXQ5VDQ2", "B0000530HU")."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    codes: list[str] = []
    seen: set[str] = set()
    while len(codes) < count:
        code = prefix + "".join(rng.choices(alphabet, k=length))
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes


def make_catalogue(num_items: int, rng: np.random.Generator, text_rng: random.Random) -> list[Item]:
    """Items with planted aspect qualities and Zipf-like popularity (rank^-0.9, shuffled)."""
    asins = _unique_codes(num_items, "B0", 8, text_rng)
    quality = rng.choice([-1, 0, 1], size=(num_items, len(ASPECTS)), p=[0.3, 0.3, 0.4])
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.9
    popularity = popularity[rng.permutation(num_items)]
    start = dt.datetime(2015, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    releases = rng.uniform(start, start + 2.5 * 365 * 86400, size=num_items)
    items = []
    for i, asin in enumerate(asins):
        brand = text_rng.choice(BRANDS)
        model = text_rng.choice(MODELS).format(n=text_rng.randint(1, 9))
        title = f"{brand} {model} {text_rng.choice(PRODUCT_TYPES)}"
        price = round(text_rng.uniform(19, 249)) - 0.01
        items.append(
            Item(asin, title, brand, price, quality[i], float(popularity[i]), int(releases[i]))
        )
    return items


def make_users(num_users: int, rng: np.random.Generator, text_rng: random.Random) -> list[User]:
    """Reviewers who each care about 2 (70%) or 3 aspects, drawn by ASPECT_INTEREST."""
    interest = np.log([ASPECT_INTEREST[a] for a in ASPECT_NAMES])
    # Gumbel top-k: each row's order is a weighted sample without replacement.
    order = np.argsort(-(interest + rng.gumbel(size=(num_users, len(ASPECT_NAMES)))), axis=1)
    counts = np.where(rng.random(num_users) < 0.3, 3, 2)
    ids = _unique_codes(num_users, "A", 13, text_rng)
    users = []
    for reviewer_id, row, count in zip(ids, order.tolist(), counts.tolist()):
        chosen = tuple(sorted(row[:count]))
        users.append(User(reviewer_id, _reviewer_name(text_rng),
                          tuple(ASPECT_NAMES[i] for i in chosen), chosen))
    return users


def _reviewer_name(rng: random.Random) -> str:
    roll = rng.random()
    first = rng.choice(FIRST_NAMES)
    if roll < 0.1:
        return "Amazon Customer"
    if roll < 0.5:
        return first
    if roll < 0.8:
        return f"{first} {rng.choice('ABCDEFGHJKLMNPRSTW')}."
    return f"{first.lower()}{rng.randint(1, 99)}"


@dataclasses.dataclass
class ReviewPlan:
    """Who reviews what and when, in file order (grouped by item like the Amazon 5-core files)."""

    user: np.ndarray  # user index per review
    item: np.ndarray  # item index per review
    day: np.ndarray  # unixReviewTime (midnight UTC) per review


def _reviews_per_user(config: SampleConfig, rng: np.random.Generator) -> np.ndarray:
    """At least 5 reviews each, the rest spread with a heavy tail, none above the catalogue size."""
    users, items = config.num_users, config.num_items
    counts = np.full(users, MIN_REVIEWS_PER_USER)
    extra = config.reviews - counts.sum()
    weights = rng.lognormal(0.0, 1.0, size=users)
    while extra > 0:
        room = items - counts
        w = np.where(room > 0, weights, 0.0)
        add = np.minimum(rng.multinomial(extra, w / w.sum()), room)
        counts += add
        extra -= add.sum()
    return counts


def _choice_logits(catalogue: list[Item], users: list[User]) -> dict[tuple[int, ...], np.ndarray]:
    """Per set of user aspects: log p(item) = log popularity + 1.2 * quality on those aspects."""
    quality = np.stack([item.quality for item in catalogue])
    log_pop = np.log([item.popularity for item in catalogue])
    return {
        aspects: log_pop + 1.2 * quality[:, list(aspects)].sum(axis=1)
        for aspects in {u.aspect_index for u in users}
    }


def _sample_items(
    logits: np.ndarray, cdf: np.ndarray, k: int, rng: np.random.Generator
) -> np.ndarray:
    """`k` distinct items drawn by `logits` without replacement (successive sampling)."""
    draws = np.searchsorted(cdf, rng.random(4 * k + 8) * cdf[-1])
    draws = np.minimum(draws, len(cdf) - 1)
    _, first = np.unique(draws, return_index=True)
    if len(first) >= k:
        return draws[np.sort(first)[:k]]
    # Popular items dominate: fall back to Gumbel top-k over the whole catalogue.
    keys = logits + rng.gumbel(size=len(logits))
    return np.argpartition(-keys, k - 1)[:k]


def _cover_every_item(chosen: list[np.ndarray], num_items: int, rng: np.random.Generator) -> None:
    """Give each never-chosen item one review, taken from a user's pick of an item chosen twice+."""
    counts = np.bincount(np.concatenate(chosen), minlength=num_items)
    for item in np.flatnonzero(counts == 0):
        for u in rng.permutation(len(chosen)):
            picks = chosen[u]
            if item in picks:
                continue
            donors = np.flatnonzero(counts[picks] >= 2)
            if len(donors):
                slot = donors[0]
                counts[picks[slot]] -= 1
                picks[slot] = item
                counts[item] += 1
                break


def plan_reviews(
    config: SampleConfig, catalogue: list[Item], users: list[User], rng: np.random.Generator
) -> ReviewPlan:
    """Choose each user's items (by popularity and quality on their aspects) and review days."""
    per_user = _reviews_per_user(config, rng)
    logits = _choice_logits(catalogue, users)
    cdfs = {key: np.cumsum(np.exp(v - v.max())) for key, v in logits.items()}
    chosen = [
        _sample_items(logits[u.aspect_index], cdfs[u.aspect_index], int(k), rng)
        for u, k in zip(users, per_user)
    ]
    _cover_every_item(chosen, len(catalogue), rng)
    user_idx = np.repeat(np.arange(len(users)), [len(c) for c in chosen])
    item_idx = np.concatenate(chosen)
    end = dt.datetime(2018, 9, 30, tzinfo=dt.timezone.utc).timestamp()
    releases = np.array([item.release_ts for item in catalogue])[item_idx]
    seconds = releases + rng.random(len(item_idx)) * (end - releases)
    day = (seconds // 86400 * 86400).astype(np.int64)
    asins = np.array([item.asin for item in catalogue])
    order = np.lexsort((day, asins[item_idx]))
    return ReviewPlan(user_idx[order], item_idx[order], day[order])


# --- review text ---


def _pick(seq: Sequence[Any], rng: random.Random) -> Any:
    """`rng.choice` without its overhead (this is the generator's innermost call)."""
    return seq[int(rng.random() * len(seq))]


@functools.cache
def _expansions(template: str, polarity: int, aspect_form: str) -> tuple[str, ...]:
    """Every sentence `template` can give for one surface form, equally likely (cached).

    Picking a template, a form, then one of these is the same as filling each slot at random,
    at a fraction of the cost; this is the generator's innermost step.
    """
    words, opposite = (POSITIVE_WORDS, NEGATIVE_WORDS) if polarity > 0 else (
        NEGATIVE_WORDS, POSITIVE_WORDS)
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    slots = {
        "w": words if used & {"w", "W"} else [""],
        "x": opposite if "x" in used else [""],
        "n": range(3, 41) if "n" in used else [0],
        "day": DAYS if "day" in used else [""],
    }
    sentences = []
    for word, other, number, day in itertools.product(*slots.values()):
        text = template.format(a=aspect_form, w=word, W=word.capitalize(), x=other, n=number,
                               day=day)
        sentences.append(text[0].upper() + text[1:])
    return tuple(sentences)


def _fill(template: str, aspect_form: str, polarity: int, rng: random.Random) -> str:
    """`template` with its slots ({a} form, {w}/{W} opinion word, {x}, {n}, {day}) filled."""
    return _pick(_expansions(template, polarity, aspect_form), rng)


def opinion_sentence(aspect: str, polarity: int, rng: random.Random) -> str:
    """One sentence about `aspect` with `polarity` in {-1, 0, 1}."""
    if rng.random() < 0.4:
        template = _pick(ASPECT_TEMPLATES[aspect][polarity], rng)
    else:
        template = _pick(GENERIC_TEMPLATES[polarity], rng)
    return _fill(template, _pick(ASPECTS[aspect], rng), polarity, rng)


def contrast_sentence(
    first: str, first_polarity: int, second: str, rng: random.Random
) -> str:
    """"The sound is great but the battery is awful.": two aspects of opposite polarity."""
    good, bad = (POSITIVE_WORDS, NEGATIVE_WORDS) if first_polarity > 0 else (
        NEGATIVE_WORDS, POSITIVE_WORDS)
    template = _pick(CONTRAST_TEMPLATES, rng)
    if first_polarity < 0 and template.startswith("I like"):
        template = "I don't like the {a1} but the {a2} is {w2}."
    w1, w2 = _pick(good, rng), _pick(bad, rng)
    return template.format(
        a1=_pick(ASPECTS[first], rng), a2=_pick(ASPECTS[second], rng),
        w1=w1, W1=w1.capitalize(), w2=w2,
    )


_OTHER_POLARITIES = {-1: (0, 1), 0: (-1, 1), 1: (-1, 0)}


def _observed_polarity(quality: int, rng: random.Random) -> int:
    """The item's quality on an aspect, replaced by another polarity 10% of the time."""
    if rng.random() < 0.1:
        return _pick(_OTHER_POLARITIES[quality], rng)
    return quality


def review_text(user: User, item: Item, rng: random.Random) -> tuple[str, int, str]:
    """(reviewText, rating, summary): 2-6 sentences, opinions mostly on the user's own aspects.

    An opinion sentence is about one of the user's aspects 80% of the time; a quarter of them
    add a second aspect of opposite polarity ("... but ..."); a quarter of the other sentences are
    filler with no opinion on an aspect. The rating follows what the review says (see
    `planted_rating`), as a real reviewer's does.
    """
    own, others = user.aspects, user.other_aspects
    quality = item.quality_map
    used: list[str] = []
    mentions: list[tuple[str, int]] = []
    sentences: list[str] = []
    for slot in range(2 + int(rng.random() * 5)):
        if slot > 0 and rng.random() < 0.25:
            sentences.append(_fill(_pick(FILLER_SENTENCES, rng), "", 1, rng))
            continue
        pool = own if rng.random() < 0.8 else others
        fresh = [a for a in pool if a not in used] or pool
        aspect = _pick(fresh, rng)
        used.append(aspect)
        polarity = _observed_polarity(quality[aspect], rng)
        mentions.append((aspect, polarity))
        if polarity != 0 and rng.random() < 0.25:
            partners = [a for a in ASPECT_NAMES if a not in used and quality[a] == -polarity]
            if partners:
                partner = _pick([a for a in partners if a in own] or partners, rng)
                used.append(partner)
                mentions.append((partner, -polarity))
                sentences.append(contrast_sentence(aspect, polarity, partner, rng))
                continue
        sentences.append(opinion_sentence(aspect, polarity, rng))
    rating = planted_rating(user, mentions, rng)
    if len(sentences) < 6 and rng.random() < 0.3:
        sentences.append(_pick(CLOSING_SENTENCES[(rating >= 4) - (rating <= 2)], rng))
    text = " ".join(sentences)
    if rng.random() < 0.03:  # a few reviews carry HTML, as scraped reviews do
        text = text.replace(". ", ".<br /><br />", 1).replace("'", "&#39;")
    return text, rating, _summary(user, rating, rng)


_STARS = ["One Star", "Two Stars", "Three Stars", "Four Stars", "Five Stars"]


def _summary(user: User, rating: int, rng: random.Random) -> str:
    form = _pick(ASPECTS[_pick(user.aspects, rng)], rng)
    stars = _STARS[rating - 1]
    if rating >= 4:
        options = [stars, f"Great {form}", f"Love the {form}", "Excellent", "Worth it"]
    elif rating == 3:
        options = [stars, "Okay", f"Decent {form}", "Mixed feelings"]
    else:
        options = [stars, f"Disappointing {form}", "Not worth it", "Returned them"]
    return _pick(options, rng)


def planted_rating(user: User, mentions: Sequence[tuple[str, int]], rng: random.Random) -> int:
    """Stars from the opinions the review voices, the user's own aspects counting double.

    A weighted mean of the mentioned polarities (own aspects weight 2, others 1) plus noise
    (sd 0.5): reviewers rate what they write about, so ratings teach opinion words, and the
    aspects a user cares about move their ratings most.
    """
    weights = [2.0 if aspect in user.aspects else 1.0 for aspect, _ in mentions]
    score = sum(w * p for w, (_, p) in zip(weights, mentions)) / sum(weights) if weights else 0.0
    return int(min(5, max(1, round(3.4 + 1.7 * score + rng.gauss(0.0, 0.5)))))


def review_time(day: int) -> str:
    """Amazon's `reviewTime`: "MM D, YYYY" (month zero-padded, day not)."""
    date = dt.datetime.fromtimestamp(int(day), dt.timezone.utc)
    return f"{date.month:02d} {date.day}, {date.year}"


def review_record(user: User, item: Item, day: int, rng: random.Random) -> dict[str, Any]:
    """One review in Amazon 2018 field names and order."""
    text, rating, summary = review_text(user, item, rng)
    return {
        "overall": float(rating),
        "verified": rng.random() < 0.9,
        "reviewTime": review_time(day),
        "reviewerID": user.reviewer_id,
        "asin": item.asin,
        "reviewerName": user.name,
        "reviewText": text,
        "summary": summary,
        "unixReviewTime": int(day),
    }


def bad_review_line(kind: str, record: dict[str, Any]) -> bytes:
    """A malformed version of a review line, of one of the BAD_RECORD_KINDS."""
    record = dict(record)
    if kind == "truncated_json":
        line = json.dumps(record).encode()
        return line[: len(line) // 2]
    if kind == "non_numeric_rating":
        record["overall"] = "five stars"
    elif kind == "missing_text":  # and no rating: a rating alone would be an interaction
        del record["reviewText"], record["overall"]
    elif kind == "empty_text":
        record["reviewText"] = "  <br /> &nbsp; "
        del record["overall"]
    elif kind == "rating_out_of_range":
        record["overall"] = 7.0
    elif kind == "invalid_utf8":
        head, tail = json.dumps(record).encode().split(b'"reviewText": "', 1)
        return head + b'"reviewText": "Caf\xe9 \xff\xfe ' + tail
    else:
        raise ValueError(f"Unknown bad-record kind. Received: {kind!r}")
    return json.dumps(record).encode()


def _plan_extra_lines(
    config: SampleConfig, rng: np.random.Generator
) -> tuple[dict[int, str], dict[int, int]]:
    """Where bad and duplicate lines go: {line: bad kind}, {line: good review index it copies}."""
    total = config.reviews + config.bad_records + config.duplicates
    extra = config.bad_records + config.duplicates
    positions = np.sort(rng.choice(np.arange(1, total), size=extra, replace=False)) if extra else []
    slots = rng.permutation(np.asarray(positions, dtype=np.int64))
    kinds = list(BAD_RECORD_KINDS)
    bad = {int(p): kinds[i % len(kinds)] for i, p in enumerate(sorted(slots[: config.bad_records]))}
    extra_set = {int(p) for p in positions}
    copies: dict[int, int] = {}
    for p in sorted(int(p) for p in slots[config.bad_records:]):
        good_before = p - sum(1 for q in extra_set if q < p)
        copies[p] = int(rng.integers(0, max(1, good_before)))
    return bad, copies


def _write_atomically(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write via `path.tmp` and rename, so a crash never leaves a half-written input file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        write(raw)
    os.replace(tmp, path)


def _gzip_writer(raw: IO[bytes]) -> gzip.GzipFile:
    """A gzip stream with no name and mtime 0 in its header, so output bytes depend on the seed."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)


def write_reviews(
    path: Path,
    config: SampleConfig,
    plan: ReviewPlan,
    catalogue: list[Item],
    users: list[User],
    rng: random.Random,
) -> dict[str, Any]:
    """Stream the review lines (good, bad and duplicated) and return their truth entries."""
    bad, copies = _plan_extra_lines(config, np.random.default_rng(config.seed + 1))
    wanted = set(copies.values())
    kept: dict[int, bytes] = {}
    bad_lines: list[dict[str, Any]] = []
    duplicate_lines: list[dict[str, int]] = []
    total = config.reviews + config.bad_records + config.duplicates

    def lines() -> Iterator[bytes]:
        good = 0
        for line_no in tqdm(range(total), desc="reviews", unit=" lines", disable=None):
            if line_no in bad:
                u = users[rng.randrange(len(users))]
                item = catalogue[rng.randrange(len(catalogue))]
                sample = review_record(u, item, int(plan.day[0]), rng)
                bad_lines.append({"line": line_no, "kind": bad[line_no],
                                  "reason": BAD_RECORD_KINDS[bad[line_no]]})
                yield bad_review_line(bad[line_no], sample)
            elif line_no in copies:
                duplicate_lines.append({"line": line_no, "copy_of_review": copies[line_no]})
                yield kept[copies[line_no]]
            else:
                record = review_record(users[plan.user[good]], catalogue[plan.item[good]],
                                       int(plan.day[good]), rng)
                line = json.dumps(record).encode()
                if good in wanted:
                    kept[good] = line
                good += 1
                yield line

    def write(raw: IO[bytes]) -> None:
        with _gzip_writer(raw) as out:
            for line in lines():
                out.write(line + b"\n")

    _write_atomically(path, write)
    return {
        "reviews": config.reviews,
        "review_lines": total,
        "bad_records": len(bad_lines),
        "bad_record_lines": bad_lines,
        "duplicates": len(duplicate_lines),
        "duplicate_lines": duplicate_lines,
    }


def meta_record(item: Item, rng: random.Random) -> dict[str, Any]:
    """Amazon 2018 metadata fields for one item (description lines may hold HTML)."""
    lines = rng.sample(DESCRIPTION_LINES, k=rng.randint(1, 3))
    description = [
        line.format(n=rng.randint(2, 6), d=rng.randint(1, 7)) for line in lines
    ]
    return {
        "category": CATEGORY_PATH + [rng.choice(["Earbud Headphones", "Over-Ear Headphones"])],
        "description": description,
        "title": item.title,
        "brand": item.brand,
        "main_cat": "All Electronics",
        "price": f"${item.price:.2f}",
        "asin": item.asin,
    }


def write_meta(path: Path, catalogue: list[Item], rng: random.Random) -> None:
    def write(raw: IO[bytes]) -> None:
        with _gzip_writer(raw) as out:
            for item in catalogue:
                out.write(json.dumps(meta_record(item, rng)).encode() + b"\n")

    _write_atomically(path, write)


# --- news ---


@dataclasses.dataclass
class NewsArticle:
    news_id: str
    category: str
    subcategory: str
    title: str
    abstract: str
    url: str
    entity: str


def _news_text(template: str, topic: dict[str, list[str]], rng: random.Random) -> tuple[str, str]:
    entity, other = rng.sample(topic["entities"], 2)
    word, word2 = rng.sample(topic["words"], 2)
    text = template.format(E=entity, E2=other, w=word, w2=word2)
    return text[0].upper() + text[1:], entity


def make_news(count: int, rng: np.random.Generator, text_rng: random.Random) -> list[NewsArticle]:
    """`count` articles spread over the topics, each titled and abstracted from its vocabulary."""
    topics = list(NEWS_TOPICS)
    numbers = rng.choice(np.arange(1000, max(70_000, 2 * count)), size=count, replace=False)
    articles = []
    for i, number in enumerate(numbers):
        category = topics[i % len(topics)] if i < 2 * len(topics) else text_rng.choice(topics)
        topic = NEWS_TOPICS[category]
        title, entity = _news_text(text_rng.choice(topic["titles"]), topic, text_rng)
        abstract = " ".join(
            _news_text(t, topic, text_rng)[0]
            for t in text_rng.sample(topic["abstracts"], text_rng.randint(1, 2))
        )
        if text_rng.random() < 0.05:
            abstract = ""  # MIND has a few empty abstracts
        code = "".join(text_rng.choices(string.ascii_letters, k=4))
        articles.append(NewsArticle(
            f"N{number}", category, text_rng.choice(topic["subcategories"]), title, abstract,
            f"https://assets.msn.com/labs/mind/AA{code}.html", entity,
        ))
    return articles


def write_news(path: Path, news: list[NewsArticle]) -> None:
    """MIND news.tsv: 8 tab-separated columns, no header."""

    def write(raw: IO[bytes]) -> None:
        for a in news:
            fields = [a.news_id, a.category, a.subcategory, a.title, a.abstract, a.url,
                      _stable_entities(a, a.title), _stable_entities(a, a.abstract)]
            raw.write(("\t".join(fields) + "\n").encode())

    _write_atomically(path, write)


def _stable_entities(article: NewsArticle, text: str) -> str:
    """MIND-style entity list: the article's entity where its surface form occurs in `text`.

    The WikidataId is a checksum of the name (not `hash()`, which changes between processes).
    """
    surface = article.entity.removeprefix("the ").removeprefix("a ")
    offset = text.find(surface)
    if offset < 0:
        return "[]"
    wikidata = "Q" + str(sum(ord(c) * 31**i for i, c in enumerate(surface)) % 10**7)
    return json.dumps([{
        "Label": surface, "Type": "O", "WikidataId": wikidata, "Confidence": 1.0,
        "OccurrenceOffsets": [offset], "SurfaceForms": [surface],
    }])


def make_bursts(rng: np.random.Generator) -> dict[str, list[list[int]]]:
    """1-2 burst windows of 6-18 hours per topic inside the news period."""
    start = int(NEWS_PERIOD_START.timestamp())
    span = NEWS_PERIOD_DAYS * 86400
    bursts = {}
    for topic in NEWS_TOPICS:
        windows = []
        for _ in range(int(rng.integers(1, 3))):
            length = int(rng.integers(6, 19)) * 3600
            begin = start + int(rng.integers(0, span - length))
            windows.append([begin, begin + length])
        bursts[topic] = sorted(windows)
    return bursts


def mind_time(ts: int) -> str:
    """MIND's impression time: "11/12/2019 2:14:46 PM" (no zero padding on month, day, hour)."""
    t = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    hour = t.hour % 12 or 12
    half = "AM" if t.hour < 12 else "PM"
    return f"{t.month}/{t.day}/{t.year} {hour}:{t.minute:02d}:{t.second:02d} {half}"


def write_behaviors(
    path: Path, impressions: int, news: list[NewsArticle], rng: np.random.Generator
) -> dict[str, Any]:
    """MIND behaviors.tsv; returns the topic bursts and each reader's favourite topics.

    Each impression shows 5-20 candidates whose topics are 4x likelier when the topic is in a burst
    at the impression's time; 1-2 are clicked, with weight 4x for the reader's favourite topics
    times 4x for bursting topics. Histories lean 4:1 to the reader's favourite topics.
    """
    topics = list(NEWS_TOPICS)
    bursts = make_bursts(rng)
    # News ids grouped by topic in one array, with each topic's offset and size.
    ids = np.array([a.news_id for t in topics for a in news if a.category == t])
    sizes = np.array([sum(a.category == t for a in news) for t in topics])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    readers = max(10, impressions // 3)
    numbers = rng.choice(np.arange(100, max(100_000, 2 * readers)), size=readers, replace=False)
    reader_ids = [f"U{n}" for n in numbers]
    favourites = {
        u: sorted(rng.choice(topics, size=int(rng.integers(1, 3)), replace=False).tolist())
        for u in reader_ids
    }
    fav_weights = {u: np.array([4.0 if t in favourites[u] else 1.0 for t in topics])
                   for u in reader_ids}
    start = int(NEWS_PERIOD_START.timestamp())
    times = np.sort(rng.integers(start, start + NEWS_PERIOD_DAYS * 86400, size=impressions))
    # Everything random is drawn up front, vectorised; the loop below only formats lines.
    user_of = rng.integers(readers, size=impressions)
    fav = np.array([fav_weights[reader_ids[u]] for u in user_of]).reshape(-1, len(topics))
    in_burst = np.array(
        [[any(b <= ts < e for b, e in bursts[t]) for t in topics] for ts in times.tolist()],
        dtype=bool,
    ).reshape(-1, len(topics))
    burst = np.where(in_burst, 4.0, 1.0)

    def draw(weights: np.ndarray, counts: np.ndarray) -> tuple[list[list[str]], list[np.ndarray]]:
        """Per impression `counts[i]` news, topics drawn with probabilities ∝ `weights[i]`."""
        rows = np.repeat(np.arange(len(counts)), counts)
        cdf = np.cumsum(weights, axis=1)[rows]
        topic = (cdf < (rng.random(len(rows)) * cdf[:, -1])[:, None]).sum(axis=1)
        picked = ids[offsets[topic] + (rng.random(len(rows)) * sizes[topic]).astype(int)]
        bounds = np.cumsum(counts)[:-1]
        return [list(p) for p in np.split(picked, bounds)], np.split(topic, bounds)

    histories, _ = draw(fav, rng.integers(0, 25, size=impressions))
    shown, shown_topics = draw(burst, rng.integers(5, 21, size=impressions))
    second_click = rng.random(impressions) < 0.3

    def write(raw: IO[bytes]) -> None:
        for n, ts in enumerate(times.tolist()):
            first = {}  # candidate -> its first position: a news item is shown once
            for i, news_id in enumerate(shown[n]):
                first.setdefault(news_id, i)
            keep = list(first.values())
            topic = shown_topics[n][keep]
            # 1-2 clicks, weighted by favourite x burst (Gumbel top-k = sampling w/o replacement).
            keys = np.log(fav[n][topic] * burst[n][topic]) + rng.gumbel(size=len(keep))
            clicked = set(np.argsort(-keys)[: 1 + int(second_click[n])].tolist())
            labels = " ".join(f"{c}-{int(i in clicked)}" for i, c in enumerate(first))
            fields = [str(n + 1), reader_ids[user_of[n]], mind_time(ts), " ".join(histories[n]),
                      labels]
            raw.write(("\t".join(fields) + "\n").encode())

    _write_atomically(path, write)
    return {
        "topics": {t: {"bursts": bursts[t]} for t in topics},
        "news_users": {u: {"topics": favourites[u]} for u in reader_ids},
        "news_period": [start, start + NEWS_PERIOD_DAYS * 86400],
    }
