"""`opinionrec report`: one self-contained HTML page an analyst reads, and the same data as JSON.

It gathers what the workspace's stages found: review sentiment over time (from the features
stage's documents: volume, mean sentiment, share negative per window, shifts flagged against a
trailing baseline), each top product's aspect sentiment over time, news topics over time and
their bursts with headlines (the trends stage), and per product the pros and cons with quotes
and counts (the describe stage). A summary of a few sentences opens the page. Plots are PNGs
made with matplotlib and embedded as data URIs, so the page needs nothing at view time.

Writes `report/report.html`, `report/report.json` (validates against `report.schema.json`,
shipped beside this module and documented in README) and the plots as PNG files.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipelines import workspace as ws_lib
from pipelines.plotting import pyplot, save
from pipelines.trends import parse_window

log = logging.getLogger("opinionrec")

STAGE = "report"
SCHEMA = Path(__file__).with_name("report.schema.json")
SCHEMA_VERSION = 1
# Window sizes a report picks from: the smallest that gives at most MAX_WINDOWS over the period.
WINDOW_CHOICES = ("1d", "1w", "30d", "91d", "365d")
MAX_WINDOWS = 40
SHIFT_Z = 3.0  # a window's share of negative reviews this far above its baseline is a shift
MIN_SHIFT = 0.03  # ... and at least 3 points above it: 0% -> 2% is noise to a reader
MIN_EXCESS = 3  # ... and at least 3 more negative reviews than the baseline expects
MIN_WINDOW_REVIEWS = 10  # windows with fewer reviews are drawn but never flagged
MIN_ASPECT_MENTIONS = 5  # an aspect drawn over time has at least this many mentions


def choose_window(first: int, last: int) -> int:
    """The smallest of WINDOW_CHOICES that covers [first, last] in at most MAX_WINDOWS windows."""
    for choice in WINDOW_CHOICES:
        seconds = parse_window(choice)
        if (last - first) / seconds < MAX_WINDOWS:
            return seconds
    return parse_window(WINDOW_CHOICES[-1])


def iso(seconds: int | float, hours: bool = False) -> str:
    """UTC date of epoch `seconds` ("2019-11-12"), with the time for sub-day windows."""
    when = dt.datetime.fromtimestamp(int(seconds), dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M" if hours else "%Y-%m-%d")


def pct(share: float) -> str:
    """0.19 -> "19%"; a share that rounds to 0 but is not 0 -> "<1%"."""
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def window_label(seconds: int) -> str:
    named = {parse_window(choice): choice for choice in WINDOW_CHOICES}
    if seconds in named:
        return named[seconds]
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


# === Review sentiment over time ===


def sentiment_over_time(docs, window: int, baseline: int = 8) -> list[dict]:
    """Per window of review time: reviews, mean sentiment (P(positive) - P(negative)), share
    negative (the sentiment head's argmax), mean rating, and the shift flags of `flag_shifts`."""
    if docs.empty:
        return []
    start = (docs["timestamp"].to_numpy() // window) * window
    probs = np.stack(docs["sentiment"].to_numpy())
    score = probs[:, -1] - probs[:, 0]
    negative = probs.argmax(axis=1) == 0
    ratings = docs["rating"].to_numpy(dtype=float)
    rows = []
    for w in np.unique(start):
        mask = start == w
        rated = ratings[mask][~np.isnan(ratings[mask])]
        rows.append({"start": iso(w), "start_seconds": int(w), "reviews": int(mask.sum()),
                     "mean_sentiment": round(float(score[mask].mean()), 4),
                     "share_negative": round(float(negative[mask].mean()), 4),
                     "mean_rating": round(float(rated.mean()), 3) if len(rated) else None})
    return flag_shifts(rows, float(negative.mean()), baseline)


def flag_shifts(rows: list[dict], overall_negative: float, baseline: int = 8,
                count: str = "reviews") -> list[dict]:
    """Adds `baseline_negative`, `z` and `shift` to consecutive windows' rows (each with `count`
    documents and their `share_negative`): a shift is a rise of the share negative against the
    median of the previous `baseline` windows (z >= SHIFT_Z, binomial noise plus the baseline's
    spread, at least MIN_SHIFT above it and MIN_EXCESS documents more than it expects, at least
    MIN_WINDOW_REVIEWS documents). The baseline is at least half of `overall_negative` (the whole
    period's share), so a series with almost no negatives is not "shifting" at its first two."""
    floor = overall_negative / 2
    for i, row in enumerate(rows):
        history = [r["share_negative"] for r in rows[max(0, i - baseline):i]
                   if r[count] >= MIN_WINDOW_REVIEWS]
        if len(history) < 3:
            row.update(baseline_negative=None, z=None, shift=False)
            continue
        base = max(float(np.median(history)), floor)
        spread = 1.4826 * float(np.median(np.abs(np.array(history) - base)))
        n = row[count]
        noise = math.sqrt(n * base * (1 - base) + (n * spread) ** 2) or 1.0
        z = (row["share_negative"] * n - base * n) / noise
        row.update(baseline_negative=round(base, 4), z=round(z, 2),
                   shift=bool(z >= SHIFT_Z and row["share_negative"] - base >= MIN_SHIFT
                              and (row["share_negative"] - base) * n >= MIN_EXCESS
                              and n >= MIN_WINDOW_REVIEWS))
    return rows


def drop_review_copies(docs, interactions_file: Path):
    """`docs` with a review copied onto several listings (Amazon's variants, or one user posting
    one text on many cards the same day) kept once: same user, time, rating and text, the text
    known by the features stage's `text_key` (the hash the recommender groups listings by)."""
    import pandas as pd

    if not interactions_file.exists():
        return docs
    keys = pd.read_parquet(interactions_file, columns=["user", "item", "timestamp", "text_key"])
    keys = keys.drop_duplicates(["user", "item", "timestamp"])
    keyed = docs.merge(keys, on=["user", "item", "timestamp"], how="left")
    keyed.index = docs.index
    text = keyed["text_key"].fillna("")
    # A review without a known text is its own key: never merged with another.
    text = text.where(text != "", pd.Series(docs.index.astype(str), index=docs.index))
    return docs[~keyed.assign(text_key=text).duplicated(["user", "timestamp", "rating",
                                                         "text_key"])]


def aspects_over_time(docs, owner: dict[str, str], titles: dict[str, str], window: int,
                      products: int = 4, aspects: int = 3) -> list[dict]:
    """For the `products` products (listings of one product merged through `owner`) with the
    most mentions of aspects mentioned at least MIN_ASPECT_MENTIONS times, their `aspects` most
    mentioned such aspects: mentions and mean polarity per window."""
    if docs.empty:
        return []
    mentions: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for item, ts, names, values in zip(docs["item"], docs["timestamp"], docs["aspects"],
                                       docs["aspect_polarity"]):
        mine = mentions.setdefault(owner.get(item, item), {})
        for name, value in zip(list(names), list(values)):
            mine.setdefault(str(name), []).append((int(ts // window * window), float(value)))
    chosen = {}
    for item, by_aspect in mentions.items():
        kept = sorted((a for a in by_aspect if len(by_aspect[a]) >= MIN_ASPECT_MENTIONS),
                      key=lambda a: (-len(by_aspect[a]), a))[:aspects]
        if kept:
            chosen[item] = kept
    ranked = sorted(chosen, key=lambda i: (-sum(len(mentions[i][a]) for a in chosen[i]), i))
    out = []
    for item in ranked[:products]:
        for name in chosen[item]:
            by_window: dict[int, list[float]] = {}
            for start, value in mentions[item][name]:
                by_window.setdefault(start, []).append(value)
            out.append({"item": item, "title": titles.get(item, ""), "aspect": name,
                        "mentions": len(mentions[item][name]),
                        "windows": [{"start": iso(w), "start_seconds": w,
                                     "mentions": len(v), "mean_polarity": round(float(
                                         np.mean(v)), 4)} for w, v in sorted(by_window.items())]})
    return out


def sentiment_by_product(docs, owner: dict[str, str], titles: dict[str, str],
                         limit: int = 15) -> list[dict]:
    """The `limit` most reviewed products (listings of one product merged through `owner`; for
    a table read with `--kind review`, its item column, e.g. a category): reviews, shares read
    positive and negative, mean sentiment (P(positive) - P(negative)) and mean rating."""
    if docs.empty:
        return []
    probs = np.stack(docs["sentiment"].to_numpy())
    frame = docs.assign(product=docs["item"].map(lambda i: owner.get(i, i)),
                        positive=probs.argmax(1) == 2, negative=probs.argmax(1) == 0,
                        score=probs[:, -1] - probs[:, 0])
    frame = frame[frame["product"].fillna("") != ""]
    rows = []
    for product, group in frame.groupby("product"):
        rated = group["rating"].dropna()
        rows.append({"item": str(product), "title": titles.get(product, ""),
                     "reviews": int(len(group)),
                     "share_positive": round(float(group["positive"].mean()), 4),
                     "share_negative": round(float(group["negative"].mean()), 4),
                     "mean_sentiment": round(float(group["score"].mean()), 4),
                     "mean_rating": round(float(rated.mean()), 2) if len(rated) else None})
    return sorted(rows, key=lambda r: (-r["reviews"], r["item"]))[:limit]


# === Plots (PNG bytes) ===


def _dates(rows: Sequence[dict], window: int) -> list[dt.datetime]:
    return [dt.datetime.fromtimestamp(r["start_seconds"] + window / 2, dt.timezone.utc)
            for r in rows]


def plot_sentiment(rows: Sequence[dict], window: int, path: Path) -> Path:
    """Mean sentiment and share negative per window, review counts as bars, shifts marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.6))
    when = _dates(rows, window)
    bars = ax.twinx()
    bars.bar(when, [r["reviews"] for r in rows], width=window / 86400 * 0.8, color="#dddddd",
             zorder=0)
    bars.set_ylabel("reviews", color="#888888")
    ax.set_zorder(bars.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(when, [r["mean_sentiment"] for r in rows], color="#1f77b4", marker="o",
            markersize=3, label="mean sentiment (P+ - P-)")
    ax.plot(when, [r["share_negative"] for r in rows], color="#d62728", marker="o",
            markersize=3, label="share negative")
    shifts = [(w, r["share_negative"]) for w, r in zip(when, rows) if r.get("shift")]
    if shifts:
        ax.scatter(*zip(*shifts), s=90, facecolor="none", edgecolor="black", linewidth=1.5,
                   label="negative shift", zorder=4)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.set_title(f"Review sentiment per {window_label(window)} window")
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return save(plt, fig, path)


def plot_aspects(series: Sequence[dict], window: int, path: Path) -> Path:
    """One panel per product: each top aspect's mean polarity per window."""
    plt = pyplot()
    items = list(dict.fromkeys(s["item"] for s in series))
    fig, axes = plt.subplots(len(items), 1, figsize=(10, 2.4 * len(items)), squeeze=False,
                             sharex=True)
    for ax, item in zip(axes[:, 0], items):
        mine = [s for s in series if s["item"] == item]
        for s in mine:
            rows = s["windows"]  # windows with at least one mention
            ax.plot(_dates(rows, window), [r["mean_polarity"] for r in rows], marker="o",
                    markersize=3, label=f"{s['aspect']} ({s['mentions']})")
        ax.axhline(0, color="#999999", linewidth=0.6)
        ax.set_ylim(-1.05, 1.05)
        name = mine[0]["title"] or item
        ax.set_title(name if len(name) <= 90 else name[:87] + "...", fontsize=9)
        ax.legend(loc="lower left", fontsize=7)
    axes[0, 0].figure.suptitle(f"Aspect polarity per {window_label(window)} window "
                               "(mentions in brackets)", fontsize=10)
    fig.autofmt_xdate()
    return save(plt, fig, path)


# === The page ===


QUIET = "No aspect stands out."
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1040px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.2em}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.warning{background:#fff4e5;border-left:4px solid #e67e22;padding:.6em 1em}
.meta{color:#666;font-size:.9em} .summary{background:#f5f7fa;border-left:4px solid #1f77b4;
padding:.6em 1em} img{max-width:100%;display:block;margin:1em 0}
table{border-collapse:collapse;width:100%;font-size:.92em} td,th{border-bottom:1px solid #eee;
padding:.35em .5em;text-align:left;vertical-align:top} .pro{color:#2a7d2a} .con{color:#b22222}
q{font-style:italic} .product{margin-bottom:1.4em}
"""


def plot_product_sentiment(rows: Sequence[dict], path: Path) -> Path:
    """Per product, the shares of reviews read positive and negative as stacked bars."""
    plt = pyplot()
    names = [_short(r["title"] or r["item"]) + f" ({r['reviews']})" for r in rows][::-1]
    positive = [r["share_positive"] for r in rows][::-1]
    negative = [r["share_negative"] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.34 * len(rows)))
    ax.barh(names, negative, color="#d62728", label="negative")
    ax.barh(names, [1 - p - n for p, n in zip(positive, negative)], left=negative,
            color="#dddddd", label="neutral")
    ax.barh(names, positive, left=[1 - p for p in positive], color="#2ca02c", label="positive")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of reviews (the sentiment head's reading)")
    ax.set_title("Review sentiment per product (reviews in brackets)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    return save(plt, fig, path)


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(report: dict, plots: dict[str, Path]) -> str:
    """The report as one HTML page with its plots inline."""
    e = html.escape
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Opinion report</title><style>{CSS}</style></head><body>",
             "<h1>Opinion report</h1>",
             f"<p class='meta'>{e(report['workspace'])}, generated {e(report['generated_at'])}"
             "</p>",
             *(f"<p class='warning'>{e(w)}</p>" for w in report.get("warnings", [])),
             "<div class='summary'><ul>" + "".join(f"<li>{e(s)}</li>" for s in report["summary"]
                                                    if not s.startswith("Warning: "))
             + "</ul></div>"]
    sentiment = report.get("sentiment")
    if sentiment and sentiment["windows"]:
        parts.append("<h2>Review sentiment over time</h2>")
        parts.append(_img(plots["sentiment"], "review sentiment over time"))
        shifts = [w for w in sentiment["windows"] if w["shift"]]
        if shifts:
            parts.append("<p>Negative shifts: " + "; ".join(
                f"{e(w['start'])} ({pct(w['share_negative'])} negative of {w['reviews']} reviews"
                f", usually {pct(w['baseline_negative'])})" for w in shifts) + "</p>")
    if report.get("product_sentiment"):
        parts.append("<h2>Review sentiment per product</h2>")
        parts.append(_img(plots["products"], "review sentiment per product"))
    if report.get("aspects_over_time"):
        parts.append("<h2>Product aspects over time</h2>")
        parts.append(_img(plots["aspects"], "aspect polarity over time per product"))
    tracked = report.get("review_topics")
    if tracked:
        parts.append("<h2>Review topics over time</h2>" if tracked["window"] != "all time"
                     else "<h2>Review topics</h2>")
        if "review_topics" in plots:
            parts.append(_img(plots["review_topics"], "review topics over time"))
        parts.append("<table><tr><th>topic</th><th>documents</th><th>negative</th>"
                     "<th>aspects (mean polarity)</th><th>bursts</th><th>negative shifts</th>"
                     "</tr>")
        for t in tracked["topics"]:
            aspects = ", ".join(f"{e(a['aspect'])} ({a['mean_polarity']:+.2f})"
                                for a in t["top_aspects"])
            parts.append(f"<tr><td>{e(t['name'])}</td><td>{t['docs']}</td>"
                         f"<td>{pct(t['share_negative'])}</td><td>{aspects}</td>"
                         f"<td>{e(', '.join(t['bursts']))}</td>"
                         f"<td>{e(', '.join(t['shifts']))}</td></tr>")
        parts.append("</table>")
        for n in tracked["new_topics"]:
            parts.append(f"<p>New topic <b>{e(n['name'])}</b> from {e(n['first_window'])}: "
                         f"{n['docs']} documents, {pct(n['share_negative'])} negative, e.g. "
                         + "; ".join(f"<q>{e(x)}</q>" for x in n["examples"][:2]) + "</p>")
    topics = report.get("topics")
    if topics:
        parts.append("<h2>News topics over time</h2>")
        parts.append(_img(plots["topics"], "topic volume over time"))
        parts.append("<table><tr><th>topic</th><th>when</th><th>z</th><th>share (usual)</th>"
                     "<th>articles</th></tr>")
        for b in topics["bursts"][:15]:
            articles = "<br>".join(e(a["title"] or a["article"]) for a in b["articles"])
            parts.append(f"<tr><td>{e(b['topic'])}</td><td>{e(b['start'])} "
                         f"({b['windows']} x {e(topics['window'])})</td><td>{b['peak_z']:.1f}"
                         f"</td><td>{pct(b['share'])} ({pct(b['baseline_share'])})</td>"
                         f"<td>{articles}</td></tr>")
        parts.append("</table>")
    if report.get("products"):
        parts.append("<h2>Products: pros and cons</h2>")
        for p in report["products"]:
            parts.append(f"<div class='product'><h3>{e(p['title'] or p['item'])}</h3>"
                         f"<p class='meta'>{e(p['item'])}, {p['reviews']} reviews. "
                         f"{e(p['summary']) if p['pros'] or p['cons'] else QUIET}</p><ul>")
            for kind, verb, key in (("pro", "praised", "praised"),
                                    ("con", "criticised", "criticised")):
                for point in p[kind + "s"]:
                    parts.append(
                        f"<li><span class='{kind}'>{kind.title()}: {e(point['aspect'])}</span> "
                        f"({verb} in {point[key]} of {point['mentions']} mentions): "
                        f"<q>{e(point['quote'])}</q></li>")
            parts.append("</ul></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


# === Putting it together ===


def summarise(report: dict) -> list[str]:
    """A few sentences for the top of the page: what the data is, what moved, what stands out."""
    lines = [f"Warning: {w}" for w in report.get("warnings", [])]
    corpus = report["corpus"]
    if corpus["reviews"]:
        lines.append(f"{corpus['reviews']:,} reviews of {corpus['products']:,} products, "
                     + (f"{corpus['first_review']} to {corpus['last_review']}."
                        if corpus["first_review"] else "without review times."))
    sentiment = report.get("sentiment")
    if sentiment:
        overall = sentiment["overall"]
        rating = overall["mean_rating"]
        lines.append(f"Overall {pct(overall['share_positive'])} of reviews read positive and "
                     f"{pct(overall['share_negative'])} negative"
                     + (f" (mean rating {rating})." if rating is not None else "."))
        shifts = [w for w in sentiment["windows"] if w["shift"]]
        by_product = [r for r in report.get("product_sentiment") or []
                      if r["reviews"] >= MIN_WINDOW_REVIEWS]  # a share of 3 reviews says little
        worst = max(by_product, key=lambda r: (r["share_negative"], r["reviews"]), default=None)
        best = max(by_product, key=lambda r: (r["share_positive"], r["reviews"]), default=None)
        # Products that all read alike (a model that calls everything positive) have no extremes.
        if len(by_product) > 1 and worst is not best and worst["share_negative"] > 0:
            lines.append(f"Most negative: {worst['title'] or worst['item']} "
                         f"({pct(worst['share_negative'])} of {worst['reviews']:,} reviews); most "
                         f"positive: {best['title'] or best['item']} "
                         f"({pct(best['share_positive'])} of {best['reviews']:,}).")
        if shifts:
            worst = max(shifts, key=lambda w: w["z"])
            lines.append(f"{len(shifts)} window(s) with a rise in negative reviews; the largest "
                         f"from {worst['start']}: {pct(worst['share_negative'])} negative against "
                         f"a usual {pct(worst['baseline_negative'])}.")
        elif sentiment["windows"]:
            lines.append("No window stands out with more negative reviews than usual.")
    topics = report.get("topics")
    if topics:
        lines.append(f"{topics['impressions']:,} news impressions in {topics['windows']} "
                     f"windows of {topics['window']} over {topics['topics']} topics; "
                     f"{len(topics['bursts'])} burst(s).")
        for b in topics["bursts"][:3]:
            head = b["articles"][0]["title"] if b["articles"] else ""
            lines.append(f"Emerging: {b['topic']} from {b['start']} ({pct(b['share'])} of "
                         f"impressions, usually {pct(b['baseline_share'])})"
                         + (f", led by \"{head}\"." if head else "."))
    tracked = report.get("review_topics")
    if tracked and tracked["topics"]:
        lines.append(f"{len(tracked['topics'])} review topics; the largest: "
                     + ", ".join(f"{t['name']} ({t['docs']:,})" for t in sorted(
                         tracked["topics"], key=lambda t: -t["docs"])[:3]) + ".")
        hot = [(t, when) for t in tracked["topics"] for when in t["bursts"]]
        shifted = [(t, when) for t in tracked["topics"] for when in t["shifts"]]
        if hot:
            lines.append("Review topic bursts: " + "; ".join(
                f"{t['name']} from {when}" for t, when in hot[:3]) + ".")
        if shifted:
            lines.append("More negative than usual: " + "; ".join(
                f"{t['name']} from {when}" for t, when in shifted[:3]) + ".")
    for n in (tracked or {}).get("new_topics", [])[:2]:
        lines.append(f"New topic: {n['name']} from {n['first_window']} ({n['docs']} "
                     "documents no earlier topic fits).")
    products = report.get("products") or []
    pros = [(p, x) for p in products for x in p["pros"]]
    cons = [(p, x) for p in products for x in p["cons"]]
    if pros:
        p, x = max(pros, key=lambda px: px[1]["praised"])
        lines.append(f"Most praised: {x['aspect']} of {p['title'] or p['item']} "
                     f"({x['praised']} of {x['mentions']} mentions).")
    if cons:
        p, x = max(cons, key=lambda px: px[1]["criticised"])
        lines.append(f"Most criticised: {x['aspect']} of {p['title'] or p['item']} "
                     f"({x['criticised']} of {x['mentions']} mentions).")
    return lines


def model_warnings(ws: ws_lib.Workspace) -> list[str]:
    """What the finetune stage found below its TF-IDF baseline on held-out texts: the report's
    sentiment and topics are that model's reading, and the reader should know."""
    metrics_file = ws.stage_dir("finetune") / "metrics.json"
    if not metrics_file.exists():
        return []
    warnings = []
    for head, scores in json.loads(metrics_file.read_text()).items():
        if isinstance(scores, dict) and scores.get("below_baseline"):
            model = next((v for k, v in scores.items() if k != "tfidf_lr"
                          and isinstance(v, dict) and "accuracy" in v), {})
            baseline = scores.get("tfidf_lr", {})
            warnings.append(
                f"The {head} model is below its TF-IDF + logistic regression baseline on held-out "
                f"texts (accuracy {model.get('accuracy', float('nan')):.3f} against "
                f"{baseline.get('accuracy', float('nan')):.3f}); its {head} figures here are "
                "that weaker model's reading.")
    return warnings


def build_report(ws: ws_lib.Workspace, out: Path, window: int | None,
                 products: int) -> tuple[dict, dict[str, Path]]:
    """Reads the stages' outputs, writes the plots into `out`, returns the report dict."""
    from pipelines.corpus import read_parquet_dir

    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "workspace": str(ws.root),
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "corpus": {"reviews": 0, "products": 0, "first_review": None, "last_review": None},
        "summary": [], "sentiment": None, "product_sentiment": [], "aspects_over_time": [],
        "topics": None, "review_topics": None,
        "products": [], "plots": {}, "warnings": model_warnings(ws)}
    plots: dict[str, Path] = {}
    described = ws.stage_dir("describe") / "items.json"
    items = json.loads(described.read_text())["items"] if described.exists() else []
    owner = {listing: d["item"] for d in items for listing in d["listings"]}
    titles = {d["item"]: d["title"] for d in items}
    report["products"] = items[:products]

    if (ws.features / "docs").exists():
        docs = read_parquet_dir(ws.features / "docs", ["kind", "user", "item", "rating",
                                                       "timestamp", "sentiment", "aspects",
                                                       "aspect_polarity"])
        docs = drop_review_copies(docs[docs["kind"] == "review"],
                                  ws.features / "interactions.parquet")
        timed = docs[docs["timestamp"].notna() & (docs["timestamp"] > 0)]
        if not docs.empty:
            probs = np.stack(docs["sentiment"].to_numpy())
            ratings = docs["rating"].dropna()
            report["corpus"].update(
                reviews=len(docs), products=int(docs["item"].map(
                    lambda i: owner.get(i, i)).nunique()))
            report["sentiment"] = {
                "window": None, "windows": [],
                "overall": {"share_positive": round(float((probs.argmax(1) == 2).mean()), 4),
                            "share_negative": round(float((probs.argmax(1) == 0).mean()), 4),
                            "mean_rating": round(float(ratings.mean()), 2)
                            if len(ratings) else None}}
            by_product = sentiment_by_product(docs, owner, titles)
            report["product_sentiment"] = by_product
            if by_product:
                plots["products"] = plot_product_sentiment(by_product, out / "products.png")
        if not timed.empty:
            first, last = int(timed["timestamp"].min()), int(timed["timestamp"].max())
            every = window or choose_window(first, last)
            report["corpus"].update(first_review=iso(first), last_review=iso(last))
            rows = sentiment_over_time(timed, every)
            report["sentiment"].update(window=window_label(every), windows=rows)
            plots["sentiment"] = plot_sentiment(rows, every, out / "sentiment.png")
            series = aspects_over_time(timed, owner, titles, every, products=min(products, 4))
            report["aspects_over_time"] = series
            if series:
                plots["aspects"] = plot_aspects(series, every, out / "aspects.png")

    bursts_file = ws.stage_dir("trends") / "bursts.json"
    if bursts_file.exists():
        trends = json.loads(bursts_file.read_text())
        volume = ws.stage_dir("trends") / "volume.png"
        hours = trends["params"]["window"] % 86400 != 0
        report["topics"] = {
            "window": window_label(trends["params"]["window"]),
            "windows": trends["summary"]["windows"], "topics": trends["summary"]["topics"],
            "impressions": trends["summary"]["impressions"],
            "bursts": [{**b, "start": iso(b["start"], hours), "end": iso(b["end"], hours)}
                       for b in trends["bursts"]]}
        if volume.exists():
            plots["topics"] = out / "topics.png"
            plots["topics"].write_bytes(volume.read_bytes())
    tracked = ws.stage_dir("track") / "topics.json"
    track = json.loads(tracked.read_text(encoding="utf-8")) if tracked.exists() else None
    if track and track["topics"]:
        every = track["params"]["window"]
        report["review_topics"] = {
            "window": window_label(every) if every else "all time",
            "docs": track["summary"]["docs"],
            "novel_docs": track["summary"]["novel_docs"],
            "topics": [{"topic": t["topic"], "name": t["name"], "docs": t["docs"],
                        "share_negative": t["share_negative"], "top_aspects": t["top_aspects"],
                        "bursts": [iso(b["start"]) for b in t["bursts"]],
                        "shifts": [iso(w) for w in t["shifts"]]} for t in track["topics"]],
            "new_topics": [{**n, "first_window": iso(n["first_window"])}
                           for n in track["new_topics"]]}
        volume = ws.stage_dir("track") / "volume.png"
        if volume.exists():
            plots["review_topics"] = out / "review_topics.png"
            plots["review_topics"].write_bytes(volume.read_bytes())
    if report["sentiment"] is None and report["topics"] is None and not items:
        raise SystemExit("report: nothing to report yet; run `features` and `describe` (reviews) "
                         "or `trends` (news) first")
    report["plots"] = {name: path.name for name, path in plots.items()}
    report["summary"] = summarise(report)
    return report, plots


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--window", type=parse_window, default=None,
                        help="window for sentiment over time: a number and m, h, d or w, e.g. "
                        "1w (default: the smallest of 1d, 1w, 30d, 91d, 365d that gives at most "
                        f"{MAX_WINDOWS} windows)")
    parser.add_argument("--products", type=int, default=10,
                        help="products with pros and cons on the page, most reviewed first "
                        "(default: %(default)s; the first 4 also get aspects over time)")


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    del beam_args
    ws = ws_lib.workspace_from_args(args)
    out = ws.stage_dir(STAGE)
    params = {"window": args.window, "products": args.products}
    # Whichever of the stages it reads have run: a new run of any of them makes the report stale.
    inputs = {stage: f"stage:{stage}" for stage in ("features", "describe", "trends", "track")
              if (ws.stage_dir(stage) / ws_lib.STAGE_RECORD).exists()}
    if not ws_lib.skip_if_fresh(args, ws, STAGE, params, inputs):
        with ws_lib.stage_run(ws, STAGE, params, inputs) as record:
            report, plots = build_report(ws, out, args.window, args.products)
            (out / "report.json").write_text(
                json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            (out / "report.html").write_text(render_html(report, plots), encoding="utf-8")
            record["summary"] = {"sections": sorted(report["plots"]),
                                 "products": len(report["products"])}
        for line in report["summary"]:
            (log.warning if line.startswith("Warning: ") else log.info)("report: %s", line)
    log.info("report: %s (open in a browser; report.json has the same data)",
             out / "report.html")
    return 0
