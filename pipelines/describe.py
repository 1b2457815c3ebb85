"""`opinionrec describe`: each item's pros and cons, with counts and a verbatim quote for each.

An item description says what reviewers praise and criticise about a product, per aspect:

    Pros: smell (praised in 12 of 15 mentions): "It smells wonderful and lasts all day."
    Cons: size (criticised in 3 of 4 mentions): "The bottle is way too small for the price."

Rules (`aspect_points`, the same numbers the explanations use):
  - A mention praises when the encoder's clause polarity is at least `PRAISE` and criticises when
    it is at most `-PRAISE` (features stage threshold).
  - A pro is an aspect with more praising than criticising mentions and a quote that a reader takes
    as praise too (`clause_praises`); a con is one with at least `MIN_CON_MENTIONS` criticising
    mentions, at least a third of all, and a quote whose clause names the aspect with a negative
    word or a negated positive one (`clause_criticises`). The encoder, the words and the star
    rating must agree: a pro's quote comes from a review rated 3 or more, a con's from one rated 3
    or less (or unrated), so a lukewarm or misread sentence is not held up as evidence.
  - Pros rank by praising mentions, cons by criticising ones (then by the share); `--top` of each.
  - Listings of one product (item groups, see `recommender.data`) are described once, and a review
    copied onto several of them counts once.

Output: `describe/items.json` (every item) and `describe/items.md` (readable), and the items asked
for with `--item` (or the most reviewed) printed.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Iterable

from pipelines import workspace as ws_lib

log = logging.getLogger("opinionrec")

MIN_CON_MENTIONS = 2
CON_SHARE = 1.0 / 3.0


@dataclass
class Point:
    """One pro or con: the aspect, its mention counts and the quoted sentence."""

    aspect: str
    mentions: int
    praised: int
    criticised: int
    quote: str

    def line(self, kind: str) -> str:
        verb, count = ("praised", self.praised) if kind == "pro" else ("criticised",
                                                                       self.criticised)
        return f'{self.aspect} ({verb} in {count} of {self.mentions} mentions): "{self.quote}"'


@dataclass
class Description:
    """An item's description: counts, pros, cons and a one-line summary."""

    item: str
    title: str
    reviews: int
    listings: list[str] = field(default_factory=list)  # other listings of the same product
    pros: list[Point] = field(default_factory=list)
    cons: list[Point] = field(default_factory=list)

    @property
    def summary(self) -> str:
        parts = []
        if self.pros:
            parts.append("Praised for " + _join([p.aspect for p in self.pros]))
        if self.cons:
            parts.append("criticised for " + _join([c.aspect for c in self.cons]))
        if not parts:
            return "No aspect stands out."
        text = "; ".join(parts)
        return text[0].upper() + text[1:] + "."

    def as_dict(self) -> dict:
        return {**asdict(self), "summary": self.summary}

    def markdown(self) -> str:
        name = self.title or self.item
        lines = [f"### {name}", "", f"`{self.item}`, {self.reviews} reviews. {self.summary}", ""]
        lines += [f"- Pro: {p.line('pro')}" for p in self.pros]
        lines += [f"- Con: {c.line('con')}" for c in self.cons]
        return "\n".join(lines) + "\n"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def aspect_points(mentions: Iterable[tuple[str, float, str, float | None]],
                  terms: dict[str, list[str]], top: int = 3) -> tuple[list[Point], list[Point]]:
    """(pros, cons) of one item from its (aspect, polarity, sentence, rating or None) mentions;
    see the module docstring for the rule. Quotes follow the features stage's rule
    (`quotable_praise`, `quotable_criticism`) and ranking (`quote_rank`)."""
    from pipelines.features import PRAISE, quotable_criticism, quotable_praise, quote_rank

    stats: dict[str, dict] = defaultdict(lambda: {"n": 0, "pos": 0, "neg": 0, "pro": None,
                                                  "con": None})

    def keep_best(entry: dict, kind: str, rank: float, sentence: str) -> None:
        if entry[kind] is None or rank > entry[kind][0]:
            entry[kind] = (rank, sentence)

    for aspect, polarity, sentence, rating in mentions:
        entry = stats[aspect]
        entry["n"] += 1
        words = terms.get(aspect) or [aspect]
        entry["pos"] += polarity >= PRAISE
        entry["neg"] += polarity <= -PRAISE
        if quotable_praise(polarity, sentence, rating, words):
            keep_best(entry, "pro", quote_rank(polarity, sentence, True), sentence)
        elif quotable_criticism(polarity, sentence, rating, words):
            keep_best(entry, "con", quote_rank(-polarity, sentence, True), sentence)
    pros, cons = [], []
    for aspect, entry in stats.items():
        point = Point(aspect, entry["n"], entry["pos"], entry["neg"], "")
        if entry["pos"] > entry["neg"] and entry["pro"] is not None:
            pros.append(replace(point, quote=entry["pro"][1]))
        if (entry["neg"] >= MIN_CON_MENTIONS and entry["neg"] >= CON_SHARE * entry["n"]
                and entry["con"] is not None):
            cons.append(replace(point, quote=entry["con"][1]))
    pros.sort(key=lambda p: (-p.praised, -p.praised / p.mentions, p.aspect))
    cons.sort(key=lambda c: (-c.criticised, -c.criticised / c.mentions, c.aspect))
    return pros[:top], cons[:top]


def describe_items(sentences, docs, titles: dict[str, str], groups: dict[str, list[str]],
                   terms: dict[str, list[str]], top: int = 3) -> list[Description]:
    """Descriptions of every reviewed item, most reviewed first.

    Args:
      sentences: frame of `doc_id`, `text`, `aspects`, `aspect_polarity` (features/sentences).
      docs: frame of `doc_id`, `user`, `item`, `rating` and optionally `kind` (features/docs);
        only reviews are described (news carry an item id too: the news id).
      titles: item id -> title.
      groups: representative listing -> its other listings (one product).
      terms: aspect -> surface terms.
    """
    owner = {listing: rep for rep, others in groups.items() for listing in others}
    if "kind" in docs:
        docs = docs[docs["kind"] == "review"]
    doc_item, doc_user, doc_rating = {}, {}, {}
    for doc_id, user, item, rating in zip(docs["doc_id"], docs["user"], docs["item"],
                                          docs["rating"]):
        if item:
            doc_item[doc_id] = owner.get(item, item)
            doc_user[doc_id] = user or doc_id  # an anonymous review is its own reviewer
            doc_rating[doc_id] = rating
    # A review copied onto several listings of a product: (product, user, sentence) counts once.
    seen_sentences: set[tuple[str, str, str]] = set()
    reviewers: dict[str, set] = defaultdict(set)
    mentions: dict[str, list] = defaultdict(list)
    for doc_id, text, aspects, polarity in zip(sentences["doc_id"], sentences["text"],
                                               sentences["aspects"], sentences["aspect_polarity"]):
        item = doc_item.get(doc_id)
        if item is None:
            continue
        reviewers[item].add(doc_user[doc_id])
        key = (item, doc_user[doc_id], text)
        if key in seen_sentences:
            continue
        seen_sentences.add(key)
        for aspect, value in zip(list(aspects), list(polarity)):
            mentions[item].append((str(aspect), float(value), text, doc_rating[doc_id]))
    out = []
    for item in sorted(reviewers, key=lambda i: (-len(reviewers[i]), i)):
        pros, cons = aspect_points(mentions[item], terms, top)
        out.append(Description(item=item, title=titles.get(item, ""),
                               reviews=len(reviewers[item]), listings=list(groups.get(item, [])),
                               pros=pros, cons=cons))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--item", action="append", default=[],
                        help="item id to print (repeatable; default: the five most reviewed)")
    parser.add_argument("--top", type=int, default=3,
                        help="pros and cons per item (default: %(default)s)")


def _rows(path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    del beam_args
    from pipelines.corpus import read_parquet_dir
    from pipelines.features import _aspect_terms, _item_titles
    from recommender.data import load_features

    ws = ws_lib.workspace_from_args(args)
    params = {"top": args.top}
    inputs = {"features": "stage:features"}
    out_dir = ws.stage_dir("describe")
    fresh = ws_lib.skip_if_fresh(args, ws, "describe", params, inputs)
    if not fresh:
        with ws_lib.stage_run(ws, "describe", params, inputs) as record:
            # Item profiles need reviews with a user; a review table without users (Chinese
            # sets read with `ingest --kind review`) has none, and no listings to group.
            features = load_features(ws.features, group_items=True) if _rows(
                ws.features / "items.parquet") else None
            sentences = read_parquet_dir(ws.features / "sentences",
                                         ["doc_id", "text", "aspects", "aspect_polarity"])
            docs = read_parquet_dir(ws.features / "docs",
                                   ["doc_id", "kind", "user", "item", "rating"])
            titles = {i: t for i, t in zip(features.items.ids, features.items.titles)} \
                if features else {}
            titles = {**_item_titles(ws.items), **{k: v for k, v in titles.items() if v}}
            descriptions = describe_items(sentences, docs, titles,
                                          (features.groups if features else None) or {},
                                          _aspect_terms(ws), args.top)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "items.json").write_text(json.dumps(
                {"items": [d.as_dict() for d in descriptions]}, indent=2) + "\n")
            (out_dir / "items.md").write_text(
                "# Item descriptions\n\n" + "\n".join(d.markdown() for d in descriptions))
            summary = {"items": len(descriptions),
                       "with_pros": sum(bool(d.pros) for d in descriptions),
                       "with_cons": sum(bool(d.cons) for d in descriptions)}
            record["summary"] = summary
            log.info("describe: %(items)d items, %(with_pros)d with pros, %(with_cons)d with cons"
                     " -> " + str(out_dir / "items.md"), summary)
    data = json.loads((out_dir / "items.json").read_text())["items"]
    wanted = args.item or [d["item"] for d in data[:5]]
    by_id = {d["item"]: d for d in data}
    for listing, rep in {o: d["item"] for d in data for o in d["listings"]}.items():
        by_id.setdefault(listing, by_id[rep])
    missing = [i for i in wanted if i not in by_id]
    if missing:
        raise SystemExit(f"describe: no reviews for item(s) {', '.join(missing)}")
    for item in wanted:
        d = by_id[item]
        print(f"{d['title'] or d['item']} ({d['item']}, {d['reviews']} reviews)")
        print(f"  {d['summary']}")
        for kind, points in (("Pro", d["pros"]), ("Con", d["cons"])):
            for p in points:
                print(f"  {kind}: " + Point(**p).line(kind.lower()))
    return 0
