"""`opinionrec trends`: topic volume tracked over event time, and the bursts that stand out.

A Beam job over the ingest stage's tables. Every news impression (a candidate shown in a MIND
impression log) counts for its article's topic (the news category) in fixed event-time windows
(`--window`: Beam `FixedWindows` on each record's own timestamp, not on when it is processed). Per
window and topic it counts impressions and clicks and keeps the most clicked articles.

A topic's window is flagged as a burst when the topic stands out against its own trailing
baseline (`burst_scores`: its volume over the other topics' median volume, scored against the
median of its previous `--baseline` windows that were not bursts); consecutive flagged windows make
one burst, explained by the articles clicked most during it. Writes, in the stage folder:
`windows.jsonl` (one row per window and topic), `bursts.json` (the bursts, with the parameters)
and `volume.png` (each topic's share over time, bursts marked).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.transforms import window as beam_window

from pipelines import workspace as ws_lib
from pipelines.beam_counts import counter_values
from pipelines.ingest.stats import parquet_rows

log = logging.getLogger("opinionrec")

STAGE = "trends"
COUNTERS = "trends"
TOP_ARTICLES = 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_window(text: str) -> int:
    """"6h" -> 21600 seconds (m, h, d, w)."""
    match = _DURATION.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"a window is a positive number and a unit m, h, d or w (e.g. 6h, 1d). "
            f"Received: {text!r}")
    return int(float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


# === The Beam job ===


class TopicOf(beam.DoFn):
    """(impression row, {article: topic}) -> (topic, article, clicked) with its event time;
    rows without a time or of an article the news table lacks are counted and left out."""

    def __init__(self) -> None:
        from apache_beam.metrics import Metrics

        self.untimed = Metrics.counter(COUNTERS, "impressions_without_time")
        self.unknown = Metrics.counter(COUNTERS, "impressions_of_unknown_news")
        self.kept = Metrics.counter(COUNTERS, "impressions")

    def process(self, row: Mapping[str, Any], topics: Mapping[str, str]):
        timestamp = row.get("timestamp")
        if timestamp is None or (isinstance(timestamp, float) and math.isnan(timestamp)):
            self.untimed.inc()
            return
        topic = topics.get(row["item"])
        if topic is None:
            self.unknown.inc()
            return
        self.kept.inc()
        yield beam_window.TimestampedValue((topic, row["item"], bool(row.get("clicked"))),
                                           int(timestamp))


class WithWindowStart(beam.DoFn):
    """Keyed aggregates -> plain rows that carry their window's start (epoch seconds)."""

    def process(self, element, window=beam.DoFn.WindowParam):
        key, value = element
        yield int(window.start), key, value


def build_pipeline(pipeline: beam.Pipeline, docs_pattern: str, interactions_pattern: str,
                   window_seconds: int, output: Path) -> None:
    """Impressions -> per (window, topic) volume, clicks and top articles -> `cells.jsonl`."""
    news = (
        pipeline
        | "ReadNews" >> beam.io.ReadFromParquet(docs_pattern,
                                                columns=["kind", "item", "label", "title"])
        | "OnlyNews" >> beam.Filter(lambda d: d["kind"] == "news" and d["item"] and d["label"])
    )
    topics = news | "TopicByArticle" >> beam.Map(lambda d: (d["item"], d["label"]))
    shown = (
        pipeline
        | "ReadImpressions" >> beam.io.ReadFromParquet(
            interactions_pattern, columns=["item", "timestamp", "clicked", "history"])
        | "Shown" >> beam.Filter(lambda r: not r["history"])  # history clicks are older reads
        | "TopicAndTime" >> beam.ParDo(TopicOf(), topics=beam.pvalue.AsDict(topics))
        | "FixedWindows" >> beam.WindowInto(beam_window.FixedWindows(window_seconds))
    )
    volume = (
        shown
        | "VolumeKey" >> beam.Map(lambda e: (e[0], (1, int(e[2]))))
        | "SumVolume" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(sum, sum))
        | "VolumeWindow" >> beam.ParDo(WithWindowStart())
        | "VolumeRow" >> beam.Map(lambda e: {"window_start": e[0], "topic": e[1],
                                             "impressions": e[2][0], "clicks": e[2][1]})
    )
    top = (
        shown
        | "ByArticle" >> beam.Map(lambda e: ((e[0], e[1]), (int(e[2]), 1)))
        | "CountArticle" >> beam.CombinePerKey(beam.combiners.TupleCombineFn(sum, sum))
        | "ByTopic" >> beam.Map(lambda e: (e[0][0], (e[1], e[0][1])))
        | "TopArticles" >> beam.combiners.Top.PerKey(TOP_ARTICLES)  # by clicks, then shown
        | "TopWindow" >> beam.ParDo(WithWindowStart())
        | "TopRow" >> beam.Map(lambda e: {"window_start": e[0], "topic": e[1], "top_articles": [
            [a, clicks, shown] for (clicks, shown), a in e[2]]})
    )
    titles = news | "Titles" >> beam.Map(lambda d: {"article": d["item"], "title": d["title"]})
    for name, rows in (("volume", volume), ("top", top), ("titles", titles)):
        (rows
         | f"Global{name}" >> beam.WindowInto(beam_window.GlobalWindows())
         | f"Json{name}" >> beam.Map(json.dumps, ensure_ascii=False)
         | f"Write{name}" >> beam.io.WriteToText(str(output / f"{name}.jsonl"),
                                                 shard_name_template=""))


# === Burst scores (the cells are windows x topics: small, scored in one process) ===


def burst_scores(cells: Sequence[dict], baseline: int = 8, min_history: int = 3,
                 z_threshold: float = 4.0, min_ratio: float = 1.5,
                 min_volume: int = 10) -> list[dict]:
    """Every (window, topic) cell with its `share` of the window, the `baseline_share` (the share
    its baseline expects), `z` and `flagged` (z >= `z_threshold`, volume at least `min_ratio` x
    the expected, at least `min_volume` impressions).

    A topic's level in a window is its volume over the median volume of the other topics there:
    unlike its share of the total, that level does not drop while other topics burst, so a topic
    does not look hot merely because the others calmed down. The baseline is the median level of
    the topic's last `baseline` windows that were not flagged themselves (a burst longer than a
    window does not raise its own baseline); a topic flagged for more than `baseline` windows in
    a row has shifted level, and its recent windows count again. Until `min_history` windows
    precede, the topic's median over the whole period stands in (a batch report can look ahead).
    z = (volume - expected) / sqrt(expected + (reference x spread)^2): Poisson noise plus the
    baseline's own spread (1.4826 MAD), so a topic that always wobbles needs a bigger jump.
    """
    windows = sorted({c["window_start"] for c in cells})
    topics = sorted({c["topic"] for c in cells})
    at = {w: i for i, w in enumerate(windows)}
    column = {t: j for j, t in enumerate(topics)}
    volume = np.zeros((len(windows), len(topics)))
    clicks = np.zeros_like(volume)
    for c in cells:
        volume[at[c["window_start"]], column[c["topic"]]] += c["impressions"]
        clicks[at[c["window_start"]], column[c["topic"]]] += c.get("clicks", 0)
    total = volume.sum(axis=1)
    share = volume / np.maximum(total, 1)[:, None]
    reference = np.empty_like(volume)
    for j in range(len(topics)):
        others = np.delete(volume, j, axis=1)
        reference[:, j] = np.median(others, axis=1) if others.shape[1] else total
    reference = np.maximum(reference, 1.0)
    level = volume / reference
    flagged = np.zeros_like(volume, dtype=bool)
    rows = []
    for j, topic in enumerate(topics):
        run = 0  # consecutive flagged windows of this topic so far
        for i, start in enumerate(windows):
            calm = [k for k in range(i) if not flagged[k, j] or run > baseline][-baseline:]
            past = level[calm, j] if len(calm) >= min_history else level[:, j]
            base = float(np.median(past))
            spread = 1.4826 * float(np.median(np.abs(past - base)))
            expected = base * reference[i, j]
            noise = math.sqrt(expected + (reference[i, j] * spread) ** 2) or 1.0
            z = (volume[i, j] - expected) / noise
            flagged[i, j] = (z >= z_threshold and volume[i, j] >= min_ratio * expected
                             and volume[i, j] >= min_volume)
            run = run + 1 if flagged[i, j] else 0
            rows.append({
                "window_start": int(start), "topic": topic, "impressions": int(volume[i, j]),
                "clicks": int(clicks[i, j]), "share": round(float(share[i, j]), 4),
                "baseline_share": round(expected / max(total[i], 1), 4),
                "z": round(float(z), 2), "flagged": bool(flagged[i, j]),
            })
    return sorted(rows, key=lambda r: (r["window_start"], r["topic"]))


def merge_bursts(rows: Sequence[dict], window_seconds: int) -> list[dict]:
    """Consecutive flagged windows of a topic -> one burst (start, end, volume, and the peak
    window's z, share and baseline share)."""
    bursts: list[dict] = []
    for row in sorted((r for r in rows if r["flagged"]),
                      key=lambda r: (r["topic"], r["window_start"])):
        last = bursts[-1] if bursts else None
        if last and last["topic"] == row["topic"] and last["end"] == row["window_start"]:
            last["end"] += window_seconds
            if row["z"] > last["peak_z"]:  # share and baseline are the peak window's
                last.update(peak_z=row["z"], share=row["share"],
                            baseline_share=row["baseline_share"])
            last["impressions"] += row["impressions"]
            last["windows"] += 1
            continue
        bursts.append({"topic": row["topic"], "start": row["window_start"],
                       "end": row["window_start"] + window_seconds, "peak_z": row["z"],
                       "impressions": row["impressions"], "windows": 1,
                       "baseline_share": row["baseline_share"], "share": row["share"]})
    return sorted(bursts, key=lambda b: -b["peak_z"])


def explain(bursts: list[dict], top: Iterable[dict], titles: Mapping[str, str],
            window_seconds: int, limit: int = TOP_ARTICLES) -> None:
    """Adds to each burst the articles clicked most during it (then shown most), with their
    titles; articles that share a title, e.g. one story filed twice, count as one."""
    ranked: dict[tuple[str, int], list] = {}
    for row in top:
        ranked[(row["topic"], row["window_start"])] = row["top_articles"]
    for burst in bursts:
        counts: dict[str, list] = {}
        for start in range(burst["start"], burst["end"], window_seconds):
            for article, clicks, shown in ranked.get((burst["topic"], start), []):
                entry = counts.setdefault(titles.get(article) or article, [article, 0, 0])
                entry[1] += clicks
                entry[2] += shown
        best = sorted(counts.values(), key=lambda e: (-e[1], -e[2], e[0]))[:limit]
        burst["articles"] = [{"article": a, "title": titles.get(a, ""), "clicks": clicks,
                              "impressions": shown} for a, clicks, shown in best]


def score_against_planted(rows: Sequence[dict], planted: Mapping[str, Sequence[Sequence[int]]],
                          window_seconds: int) -> dict:
    """Recall of planted bursts (`{topic: [[start, end], ...]}`, e.g. sample-data's truth.json):
    found when a flagged window of the topic overlaps it; precision: flagged windows that overlap
    a planted burst of their topic."""
    flagged = [r for r in rows if r["flagged"]]

    def overlaps(row, span) -> bool:
        return row["window_start"] < span[1] and span[0] < row["window_start"] + window_seconds

    found = [any(overlaps(r, span) for r in flagged if r["topic"] == topic)
             for topic, spans in planted.items() for span in spans]
    right = [any(overlaps(r, span) for span in planted.get(r["topic"], [])) for r in flagged]
    return {"planted": len(found), "found": int(sum(found)),
            "recall": sum(found) / len(found) if found else None,
            "flagged_windows": len(flagged),
            "precision": sum(right) / len(right) if right else None}


def plot_volume(rows: Sequence[dict], path: Path, window_seconds: int,
                max_lines: int = 8) -> Path:
    """Each topic's share of the volume per window, bursts marked: one line per topic, or a
    topics x windows heat map when more than `max_lines` topics would tangle the lines."""
    import datetime as dt

    from pipelines.plotting import pyplot, save

    plt = pyplot()
    topics = sorted({r["topic"] for r in rows})
    windows = sorted({r["window_start"] for r in rows})
    span = (f"{window_seconds // 86400}d" if window_seconds % 86400 == 0 else
            f"{window_seconds // 3600}h" if window_seconds % 3600 == 0 else
            f"{window_seconds // 60}min")
    fig, ax = plt.subplots(figsize=(11, 4.5 if len(topics) <= max_lines else
                                    1.2 + 0.32 * len(topics)))
    if len(topics) <= max_lines:
        for topic in topics:
            series = sorted((r for r in rows if r["topic"] == topic),
                            key=lambda r: r["window_start"])
            when = [dt.datetime.fromtimestamp(r["window_start"] + window_seconds / 2,
                                              dt.timezone.utc) for r in series]
            line, = ax.plot(when, [r["share"] for r in series], label=topic, linewidth=1.2)
            hot = [(w, r["share"]) for w, r in zip(when, series) if r["flagged"]]
            if hot:
                ax.scatter(*zip(*hot), color=line.get_color(), s=40, zorder=3,
                           edgecolor="black")
        ax.set_ylabel("share of impressions")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        fig.autofmt_xdate()
        title = "circled: bursts"
    else:
        share = np.zeros((len(topics), len(windows)))
        for r in rows:
            share[topics.index(r["topic"]), windows.index(r["window_start"])] = r["share"]
        image = ax.imshow(share, aspect="auto", cmap="Blues", interpolation="nearest")
        for r in rows:
            if r["flagged"]:
                ax.add_patch(plt.Rectangle(
                    (windows.index(r["window_start"]) - 0.5, topics.index(r["topic"]) - 0.5),
                    1, 1, fill=False, edgecolor="crimson", linewidth=1.6))
        ax.set_yticks(range(len(topics)), topics, fontsize=8)
        step = max(1, len(windows) // 12)
        ax.set_xticks(range(0, len(windows), step), [
            dt.datetime.fromtimestamp(w, dt.timezone.utc).strftime("%m-%d %H:%M")
            for w in windows[::step]], rotation=30, ha="right", fontsize=8)
        fig.colorbar(image, ax=ax, label="share of impressions", pad=0.01)
        title = "boxed: bursts"
    ax.set_title(f"Topic volume per {span} window ({title})")
    return save(plt, fig, path, dpi=110)


# === The command ===


def add_arguments(parser: argparse.ArgumentParser) -> None:
    ws_lib.add_workspace_argument(parser)
    parser.add_argument("--window", type=parse_window, default=parse_window("1d"),
                        help="fixed event-time window: a number and m, h, d or w, e.g. 6h, 1d, "
                        "1w (default: 1d)")
    parser.add_argument("--baseline", type=int, default=8,
                        help="windows of trailing history a window is compared with "
                        "(default: %(default)s)")
    parser.add_argument("--z", type=float, default=4.0, dest="z_threshold",
                        help="z-score from which a window is a burst (default: %(default)s)")
    parser.add_argument("--min-ratio", type=float, default=1.5,
                        help="and its volume at least this many times what its baseline expects "
                        "(default: %(default)s)")
    parser.add_argument("--min-volume", type=int, default=10,
                        help="and at least this many impressions (default: %(default)s)")
    parser.add_argument("--optional", action="store_true",
                        help="without impression logs, say so and exit 0 instead of failing "
                        "(`opinionrec run` uses it: not every corpus has news)")
    parser.add_argument("--truth", type=Path, default=None,
                        help="sample-data's truth.json: score the bursts found against the "
                        "planted ones (default: WORKSPACE/raw/truth.json when present)")


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file a Beam job wrote ([] when it wrote none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines.beam_options import pipeline_options

    ws = ws_lib.workspace_from_args(args)
    params = {"window": args.window, "baseline": args.baseline, "z": args.z_threshold,
              "min_ratio": args.min_ratio, "min_volume": args.min_volume}
    if ws_lib.skip_if_fresh(args, ws, STAGE, params, {"ingest": "stage:ingest"}):
        return 0
    if not parquet_rows(ws.interactions) and args.optional:
        log.info("trends: no impression logs in %s (MIND behaviors.tsv); nothing to follow",
                 ws.interactions)
        return 0
    if not parquet_rows(ws.interactions):
        raise SystemExit(f"trends: no impression logs in {ws.interactions}; trends follows news "
                         "topics: ingest MIND behaviors.tsv (with news.tsv) first")
    out = ws.stage_dir(STAGE)
    with ws_lib.stage_run(ws, STAGE, params, {"ingest": "stage:ingest"}) as record:
        started = time.perf_counter()
        pipeline = beam.Pipeline(options=pipeline_options(beam_args))
        build_pipeline(pipeline, str(ws.docs / "*.parquet"), str(ws.interactions / "*.parquet"),
                       args.window, out)
        result = pipeline.run()
        result.wait_until_finish()
        beam_seconds = time.perf_counter() - started
        left_out = {name: value for (_, name), value in
                    counter_values(result, [COUNTERS]).items()}
        cells = read_jsonl(out / "volume.jsonl")
        if not cells:
            raise SystemExit(
                "trends: no interaction is an impression of a known news article with a time "
                f"({left_out.get('impressions_of_unknown_news', 0)} of items missing from the "
                f"news table, {left_out.get('impressions_without_time', 0)} without a time); "
                "trends follows news topics: ingest MIND behaviors.tsv with its news.tsv")
        rows = burst_scores(cells, args.baseline, z_threshold=args.z_threshold,
                            min_ratio=args.min_ratio, min_volume=args.min_volume)
        bursts = merge_bursts(rows, args.window)
        titles = {t["article"]: t["title"] for t in read_jsonl(out / "titles.jsonl")}
        explain(bursts, read_jsonl(out / "top.jsonl"), titles, args.window)
        (out / "windows.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        summary: dict[str, Any] = {
            "windows": len({r["window_start"] for r in rows}),
            "topics": len({r["topic"] for r in rows}),
            "impressions": sum(r["impressions"] for r in rows), "bursts": len(bursts),
            "impressions_without_time": left_out.get("impressions_without_time", 0),
            "impressions_of_unknown_news": left_out.get("impressions_of_unknown_news", 0)}
        truth = args.truth or ws.raw / "truth.json"
        if truth.exists():
            planted = {t: v["bursts"] for t, v in
                       json.loads(truth.read_text()).get("topics", {}).items()}
            if planted:
                summary["against_planted"] = score_against_planted(rows, planted, args.window)
        plot_volume(rows, out / "volume.png", args.window)
        summary["beam_seconds"] = round(beam_seconds, 2)  # the Beam job, start-up included
        summary["scoring_seconds"] = round(time.perf_counter() - started - beam_seconds, 2)
        (out / "bursts.json").write_text(json.dumps(
            {"params": params, "summary": summary, "bursts": bursts}, indent=2,
            ensure_ascii=False) + "\n", encoding="utf-8")
        record["summary"] = summary
    log.info("trends: %(impressions)d impressions in %(windows)d windows x %(topics)d topics "
             "(left out: %(impressions_of_unknown_news)d of articles missing from the news table, "
             "%(impressions_without_time)d without a time); %(bursts)d bursts", summary)
    for burst in bursts[:10]:
        log.info("trends: burst %s %s (z %.1f, %d windows): %s", burst["topic"],
                 _when(burst["start"]), burst["peak_z"], burst["windows"],
                 "; ".join(a["title"] for a in burst["articles"]) or "-")
    if "against_planted" in summary:
        log.info("trends: against the planted bursts: %s", summary["against_planted"])
    log.info("trends: %s (bursts.json, windows.jsonl, volume.png)", out)
    return 0


def _when(seconds: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
