"""Display names for items without a title: the name their reviews call them by.

Amazon metadata leaves many titles empty (Magazine_Subscriptions: every title is an HTML fragment
that ingest cleans away; All_Beauty has no metadata at all), and "Because you liked B00EVV77A0"
tells a reader nothing. An untitled item is named by the capitalised phrase its reviews use most
in mid-sentence ("I love Entertainment Weekly", "Pantene's shampoo"), if at least `MIN_REVIEWS`
of its reviews use it and at least `MIN_OWN_SHARE` of the phrase's uses across the catalogue are
in this item's reviews (so "Amazon" or "Christmas", which every item's reviews say, name none);
else by its brand; else it stays unnamed (explanations show the id). A derived name is shown with
the id after it, "Entertainment Weekly (B000IJ7RQ8)": it is what reviewers say, not a title.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterable

MIN_REVIEWS = 2
MIN_OWN_SHARE = 0.5
MAX_WORDS = 4

# Capitalised words that are no names mid-sentence: the first person, days, months, holidays
# and words readers capitalise for emphasis.
NOT_NAMES = frozenset("""
i i'm i've i'd i'll a an the this that it it's my we our you your he she they and or but so
if for of to in on at with as is are was be not no yes ok okay please thanks thank
monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december christmas easter thanksgiving birthday
mother's father's valentine's day mom dad god amazon prime kindle usa us u.s. uk
great love good best nice very highly five stars star magazine magazines product products item
gift card cards subscription issue issues
""".split())
# Sentence openers that start no name ("This Olay cream", "Maybe I"): `name_phrases` skips them.
OPENERS = frozenset("""
the a an this that these those my our your his her their its i we you they it he she maybe so
and but if when then just also very really only even still now well yes no
""".split())
# Lower-case words that may join the capitalised ones of one name ("Better Homes and Gardens").
CONNECTORS = frozenset("and of & de la du".split())

_SENTENCE = re.compile(r"[^.!?\n]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'&\-]*")


def _capitalised(word: str) -> bool:
    """Capitalised like a name: an initial capital, and not shouted (all capitals past 4
    letters; "PC" and "EW" are acronyms)."""
    return bool(word) and word[0].isupper() and not (word.isupper() and len(word) > 4)


def name_phrases(text: str) -> set[str]:
    """The capitalised phrases of `text` that could be names: runs of up to `MAX_WORDS`
    capitalised words (lower-case connectors allowed inside), not made only of `NOT_NAMES`
    words; a sentence's first word (capitalised anyway) only when it and the next one could be
    names ("Good Housekeeping is ..."); one word in capitals alone ("UV", "SPF") is no name."""
    phrases: set[str] = set()
    for sentence in _SENTENCE.findall(text):
        words = _WORD.findall(sentence)
        # "Maybe I ...", "This Olay cream ...": the opener joins only a name-like next word.
        if words and not (len(words) > 1 and _capitalised(words[1])
                          and words[0].lower() not in OPENERS
                          and words[1].lower() not in NOT_NAMES):
            words = words[1:]
        run: list[str] = []
        for word in words + [""]:
            if _capitalised(word) or (run and word.lower() in CONNECTORS):
                run.append(word)
                continue
            while run and run[-1].lower() in CONNECTORS:
                run.pop()
            if (0 < len(run) <= MAX_WORDS and any(w.lower() not in NOT_NAMES for w in run)
                    and not (len(run) == 1 and run[0].isupper())):
                phrases.add(" ".join(run))
            run = []
    return phrases


def review_names(reviews: Iterable[tuple[str, str]], named: set[str] = frozenset()
                 ) -> tuple[dict[str, str], set[str]]:
    """The name each item's reviews use most, from (item, text) pairs of every item's reviews,
    for the items not in `named` (those with a title); with every item seen. Items with no
    qualifying phrase are left out of the names."""
    per_item: dict[str, Counter[str]] = defaultdict(Counter)
    everywhere: Counter[str] = Counter()
    seen: set[str] = set()
    for item, text in reviews:
        seen.add(item)
        if not isinstance(text, str) or not text:
            continue
        phrases = name_phrases(text)
        everywhere.update(phrases)
        if item not in named:
            per_item[item].update(phrases)
    names = {}
    for item, counts in per_item.items():
        candidates = [(count, len(phrase), phrase) for phrase, count in counts.items()
                      if count >= MIN_REVIEWS and count >= MIN_OWN_SHARE * everywhere[phrase]]
        if candidates:
            names[item] = max(candidates)[2]
    return names, seen


def display_names(titles: dict[str, str], brands: dict[str, str],
                  reviews: Iterable[tuple[str, str]]) -> tuple[dict[str, str], dict[str, int]]:
    """Every item's display name (items of `titles` and of `reviews`): its title, else "<what
    its reviews call it> (<id>)", else "<brand> (<id>)", else "" (the id is shown); with how
    many items each source named."""
    titled = {item for item, title in titles.items() if title.strip()}
    derived, seen = review_names(reviews, titled)
    names, sources = {}, Counter()
    for item in sorted(set(titles) | seen):
        title, brand = titles.get(item, ""), brands.get(item, "").strip()
        if title.strip():
            names[item], source = title, "title"
        elif item in derived:
            names[item], source = f"{derived[item]} ({item})", "reviews"
        elif brand:
            names[item], source = f"{brand} ({item})", "brand"
        else:
            names[item], source = "", "none"
        sources[source] += 1
    return names, dict(sources)
