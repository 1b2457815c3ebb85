"""`opinionrec trends`: topic volume in event-time windows and the bursts that stand out.

The scoring functions are checked on hand-made windows; the Beam job on sample-data's news, whose
impression logs carry planted topic bursts (`truth.json`) that it must find, and nothing else.
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from pipelines import cli, trends

HOUR = 3600


def test_parse_window_reads_a_number_and_a_unit():
    assert trends.parse_window("6h") == 6 * HOUR
    assert trends.parse_window("1d") == 24 * HOUR
    assert trends.parse_window("2w") == 14 * 24 * HOUR
    assert trends.parse_window("90m") == 90 * 60
    for bad in ("6", "h", "0h", "-1d", "3 days"):
        with pytest.raises(argparse.ArgumentTypeError, match="m, h, d or w"):
            trends.parse_window(bad)


def _cells(volumes: dict[str, list[int]]) -> list[dict]:
    return [{"window_start": i * HOUR, "topic": topic, "impressions": n, "clicks": n // 10}
            for topic, series in volumes.items() for i, n in enumerate(series) if n]


def test_a_jump_in_share_is_flagged_and_steady_topics_are_not():
    steady = [100, 104, 97, 101, 99, 102, 98, 100, 103, 100]
    jump = [50, 52, 49, 51, 48, 150, 50, 52, 49, 51]
    rows = trends.burst_scores(_cells({"sports": steady, "news": steady, "health": jump}))
    flagged = [(r["topic"], r["window_start"] // HOUR) for r in rows if r["flagged"]]
    assert flagged == [("health", 5)]
    peak = next(r for r in rows if r["topic"] == "health" and r["window_start"] == 5 * HOUR)
    assert peak["share"] == pytest.approx(150 / (150 + 2 * 102), abs=1e-3) and peak["z"] > 4
    # its baseline expects half the other topics' median volume: 51 of the window's 354.
    assert peak["baseline_share"] == pytest.approx(51 / 354, abs=0.005)
    # The first windows have no trailing history: they are compared with the ones after, so an
    # early burst is found too.
    early = trends.burst_scores(_cells({"a": [300, 100, 100, 98, 102, 100],
                                        "b": [100, 100, 101, 99, 100, 100]}))
    assert [(r["topic"], r["window_start"]) for r in early if r["flagged"]] == [("a", 0)]


def test_a_topic_is_not_hot_merely_because_other_topics_stopped_bursting():
    # Two topics burst (4x) for 8 windows, then everything is calm again: the calm topics' share
    # of the total rises from 1/12 to 1/6 when the bursts end, but they are no hotter.
    calm = [100, 98, 103, 101, 99, 102, 100, 97, 101, 100] * 2
    hot = calm[:4] + [400, 395, 405, 398, 402, 401, 399, 404] + calm[12:]
    rows = trends.burst_scores(_cells({"a": calm, "b": calm, "c": calm, "d": calm,
                                       "e": hot, "f": hot}))
    assert not [r for r in rows if r["flagged"] and r["topic"] not in "ef"]
    # and a burst as long as the baseline stays flagged to its end: it never becomes its own
    # baseline.
    assert sorted({r["window_start"] // HOUR for r in rows if r["flagged"]}) == list(range(4, 12))


def test_too_small_a_volume_is_never_a_burst():
    rows = trends.burst_scores(_cells({"a": [1, 1, 1, 1, 6, 1], "b": [20] * 6}), min_volume=10)
    assert not any(r["flagged"] for r in rows)


def test_consecutive_windows_merge_and_planted_bursts_are_scored():
    rows = [{"window_start": w * HOUR, "topic": t, "flagged": f, "z": z, "impressions": 10,
             "share": 0.5, "baseline_share": 0.2}
            for w, t, f, z in [(1, "a", True, 5.0), (2, "a", True, 9.0), (4, "a", True, 6.0),
                               (2, "b", True, 7.0), (3, "b", False, 0.0)]]
    bursts = trends.merge_bursts(rows, HOUR)
    assert [(b["topic"], b["start"] // HOUR, b["end"] // HOUR, b["peak_z"]) for b in bursts] == [
        ("a", 1, 3, 9.0), ("b", 2, 3, 7.0), ("a", 4, 5, 6.0)]
    rows[1]["share"] = 0.7  # the peak window's share is the burst's
    assert trends.merge_bursts(rows, HOUR)[0]["share"] == 0.7
    planted = {"a": [[int(1.5 * HOUR), 3 * HOUR]], "b": [[10 * HOUR, 11 * HOUR]],
               "c": [[0, HOUR]]}
    score = trends.score_against_planted(rows, planted, HOUR)
    # a's burst is found (windows 1 and 2 overlap it), b's and c's are not; of the 4 flagged
    # windows a@1 and a@2 are right.
    assert score == {"planted": 3, "found": 1, "recall": 1 / 3, "flagged_windows": 4,
                     "precision": 0.5}


@pytest.fixture(scope="module")
def news_workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("trends")
    assert cli.main(["sample-data", "--workspace", str(ws), "--reviews", "120", "--users", "20",
                     "--items", "8", "--news", "120", "--impressions", "3000",
                     "--seed", "5"]) == 0
    assert cli.main(["ingest", "--workspace", str(ws)]) == 0
    return ws


def test_the_planted_bursts_of_sample_data_are_found(news_workspace):
    ws = news_workspace
    assert cli.main(["trends", "--workspace", str(ws), "--window", "3h"]) == 0
    out = ws / "trends"
    report = json.loads((out / "bursts.json").read_text())
    planted = report["summary"]["against_planted"]
    assert planted["planted"] >= 6 and planted["recall"] == 1.0, planted
    assert planted["precision"] >= 0.8, planted
    truth = json.loads((ws / "raw" / "truth.json").read_text())
    assert {b["topic"] for b in report["bursts"]} == set(truth["topics"])
    for burst in report["bursts"]:  # each explained by the articles clicked most in it
        assert burst["articles"] and all(a["title"] and a["clicks"] > 0
                                         for a in burst["articles"])
        assert len({a["title"] for a in burst["articles"]}) == len(burst["articles"])
    rows = [json.loads(line) for line in (out / "windows.jsonl").read_text().splitlines()]
    # 6 days of 3-hour windows; every impression of a known article counted once, history
    # clicks not at all.
    assert len({r["window_start"] for r in rows}) == 48
    docs = pd.concat(map(pd.read_parquet, (ws / "ingest" / "docs").glob("*.parquet")))
    shown = pd.concat(map(pd.read_parquet, (ws / "ingest" / "interactions").glob("*.parquet")))
    shown = shown[~shown["history"] & shown["item"].isin(docs.loc[docs["kind"] == "news", "item"])]
    assert sum(r["impressions"] for r in rows) == len(shown) > 10_000
    assert sum(r["clicks"] for r in rows) == int(shown["clicked"].sum())
    assert report["summary"]["impressions_of_unknown_news"] == 0
    assert (out / "volume.png").stat().st_size > 10_000


def test_many_topics_are_drawn_as_a_heat_map_with_the_bursts_boxed(tmp_path):
    volumes = {f"topic{k}": [100] * 12 for k in range(12)}
    volumes["topic3"][6] = 400
    rows = trends.burst_scores(_cells(volumes))
    assert [(r["topic"], r["window_start"] // HOUR) for r in rows if r["flagged"]] == [
        ("topic3", 6)]
    png = trends.plot_volume(rows, tmp_path / "volume.png", HOUR)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_workspace_without_impression_logs_gets_a_clear_error(tmp_path):
    import gzip

    reviews = tmp_path / "reviews.json.gz"
    reviews.write_bytes(gzip.compress("".join(json.dumps(
        {"reviewerID": f"U{i}", "asin": f"B{i % 2}", "overall": 5.0, "reviewText": f"Great {i}.",
         "unixReviewTime": 1_500_000_000 + i}) + "\n" for i in range(4)).encode()))
    ws = tmp_path / "ws"
    assert cli.main(["ingest", "--workspace", str(ws), "--input", str(reviews)]) == 0
    with pytest.raises(SystemExit, match="no impression logs .* ingest MIND behaviors.tsv"):
        cli.main(["trends", "--workspace", str(ws)])
    # `opinionrec run` passes --optional: a corpus without news goes on to the next stage.
    assert cli.main(["trends", "--workspace", str(ws), "--optional"]) == 0
    assert not (ws / "trends" / "bursts.json").exists()
