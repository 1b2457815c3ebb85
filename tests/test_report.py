"""`opinionrec report`: the page and its JSON on a workspace with reviews and news.

The workspace is sample-data's (reviews with planted aspect quality, news with planted topic
bursts) after the review chain and `trends`; the page is checked as a file (valid JSON against
the documented schema, the plots real PNGs inline) and, where Debian's Chromium is installed, as
a person sees it: rendered headless, its screenshot not blank.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from pipelines import cli, report

CHAIN = [
    ["sample-data", "--reviews", "500", "--users", "50", "--items", "12", "--news", "120",
     "--impressions", "3000", "--seed", "3"],
    ["ingest"],
    ["vocab", "--vocabulary-size", "400", "--min-aspect-count", "3"],
    ["pretraining-data", "--sequence-length", "48"],
    ["pretrain", "--config", "nano", "--sequence-length", "48", "--batch-size", "16",
     "--steps", "20", "--checkpoint-every", "20"],
    ["finetune", "--sequence-length", "48", "--epochs", "2"],
    ["features"],
    ["describe"],
    ["trends", "--window", "3h"],
    ["track"],
    ["report"],
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("report")
    for stage in CHAIN:
        assert cli.main([stage[0], "--workspace", str(ws), *stage[1:]]) == 0, stage[0]
    return ws


def test_choose_window_keeps_the_plot_readable():
    day = 86400
    assert report.choose_window(0, 10 * day) == day
    assert report.choose_window(0, 200 * day) == 7 * day
    assert report.choose_window(0, 3 * 365 * day) == 30 * day
    assert report.choose_window(0, 40 * 365 * day) == 365 * day


def test_a_rise_in_negative_reviews_is_flagged_as_a_shift():
    import pandas as pd

    week = 7 * 86400
    rng = np.random.default_rng(0)
    rows = []
    for w in range(12):
        negative = 0.6 if w == 9 else 0.1
        for k in range(40):
            neg = rng.random() < negative
            rows.append({"timestamp": w * week + k, "rating": 1.0 if neg else 5.0,
                         "sentiment": [0.8, 0.1, 0.1] if neg else [0.1, 0.1, 0.8]})
    windows = report.sentiment_over_time(pd.DataFrame(rows), week)
    assert [w["start_seconds"] // week for w in windows if w["shift"]] == [9]
    assert windows[9]["share_negative"] > 0.4 and windows[9]["baseline_negative"] < 0.2
    assert all(w["reviews"] == 40 for w in windows)
    # A product line without negative reviews: its first one or two are not a shift.
    calm = [{"timestamp": w * week + k, "rating": 5.0,
             "sentiment": [0.8, 0.1, 0.1] if (w, k) in {(6, 0), (9, 0), (9, 1)} else
             [0.1, 0.1, 0.8]} for w in range(12) for k in range(40)]
    assert not any(w["shift"] for w in report.sentiment_over_time(pd.DataFrame(calm), week))


@pytest.mark.slow
def test_report_json_follows_its_schema_and_finds_what_was_planted(workspace):
    import jsonschema

    data = json.loads((workspace / "report" / "report.json").read_text())
    jsonschema.validate(data, json.loads(report.SCHEMA.read_text()))
    assert data["corpus"]["reviews"] >= 400 and data["corpus"]["products"] == 12
    assert data["sentiment"]["windows"] and data["aspects_over_time"]
    # The planted topic bursts are in the report, each with its headlines.
    truth = json.loads((workspace / "raw" / "truth.json").read_text())
    assert {b["topic"] for b in data["topics"]["bursts"]} == set(truth["topics"])
    assert all(b["articles"] for b in data["topics"]["bursts"])
    # Products with pros and cons, quoting their own reviews.
    described = json.loads((workspace / "describe" / "items.json").read_text())["items"]
    assert [p["item"] for p in data["products"]] == [d["item"] for d in described[:10]]
    assert any(p["pros"] or p["cons"] for p in data["products"])
    assert any(line.startswith("Emerging: ") for line in data["summary"])
    assert set(data["plots"]) == {"sentiment", "products", "aspects", "topics", "review_topics"}
    assert [p["reviews"] for p in data["product_sentiment"]] == sorted(
        (p["reviews"] for p in data["product_sentiment"]), reverse=True)
    assert sum(p["reviews"] for p in data["product_sentiment"]) == data["corpus"]["reviews"]
    # Review topics tracked over time: every review with a time is in one topic or novel.
    tracked = data["review_topics"]
    assert len(tracked["topics"]) >= 2 and all(t["name"] for t in tracked["topics"])
    assert sum(t["docs"] for t in tracked["topics"]) + tracked["novel_docs"] == tracked["docs"]
    # Copies once, as the corpus counts them (a text of stop words only has no topic).
    assert 0.99 * data["corpus"]["reviews"] <= tracked["docs"] <= data["corpus"]["reviews"]
    assert any(" review topics; the largest: " in line for line in data["summary"])


@pytest.mark.slow
def test_report_page_is_self_contained_with_real_plots(workspace):
    import matplotlib.image as mpimg

    page = (workspace / "report" / "report.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched at view time
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5
    for data in images:
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(data)))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 600
        assert pixels[..., :3].std() > 0.05  # drawn on, not a blank canvas
    data = json.loads((workspace / "report" / "report.json").read_text())
    for product in data["products"]:
        for point in product["pros"] + product["cons"]:
            assert html_escaped(point["quote"]) in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (`make browser` "
                    "installs it); the page is checked as a file only")
def test_report_renders_in_headless_chromium(workspace, tmp_path):
    import matplotlib.image as mpimg

    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]

    def coloured_share(page_path) -> float:
        """The share of a 1100 x 2600 screenshot of the page that is coloured (not white, grey
        or black text)."""
        shot = tmp_path / (page_path.stem + ".png")
        subprocess.run([CHROMIUM, *flags, "--window-size=1100,2600", f"--screenshot={shot}",
                        page_path.as_uri()], check=True, timeout=120, capture_output=True)
        pixels = mpimg.imread(shot)[..., :3]
        assert pixels.shape[:2] == (2600, 1100)
        return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 0.15).mean())

    page_file = workspace / "report" / "report.html"
    # The same page with its images taken out: what the browser draws of the plots is the
    # difference.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img [^>]+>", "", page_file.read_text()))
    with_plots, without = coloured_share(page_file), coloured_share(bare)
    assert with_plots > 0.005 and with_plots > 4 * without, (with_plots, without)
    page = page_file.as_uri()
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    assert dom.count("data:image/png;base64,") == 5 and "Opinion report" in dom


def test_page_escapes_what_reviews_and_headlines_say(tmp_path):
    """Quotes and headlines are text, never markup, and a news-only report reads sensibly."""
    import jsonschema

    png = report.plot_sentiment([{"start_seconds": 0, "reviews": 3, "mean_sentiment": 0.5,
                                  "share_negative": 0.1, "shift": False}], 86400,
                                tmp_path / "topics.png")
    burst = {"topic": "tech", "start": "2019-11-12 06:00", "end": "2019-11-12 12:00",
             "peak_z": 9.5, "impressions": 40, "windows": 1, "share": 0.4,
             "baseline_share": 0.002, "articles": [
                 {"article": "N1", "title": "<script>alert(1)</script> & co", "clicks": 3,
                  "impressions": 40}]}
    data = {"schema_version": 1, "workspace": "ws", "generated_at": "now",
            "corpus": {"reviews": 0, "products": 0, "first_review": None, "last_review": None},
            "summary": [], "sentiment": None, "product_sentiment": [], "aspects_over_time": [],
            "topics": {
                "window": "6h", "windows": 4, "topics": 3, "impressions": 100,
                "bursts": [burst]},
            "review_topics": {"window": "1w", "docs": 9, "novel_docs": 5, "topics": [],
                              "new_topics": [{"name": "recall <i>", "terms": ["recall"],
                                              "docs": 5, "first_window": "2019-11-11",
                                              "share_negative": 0.8,
                                              "examples": ["A <b>recall</b> notice"]}]},
            "products": [{"item": "B1", "title": "Kit <b>", "reviews": 2, "listings": [],
                          "summary": "Praised for fit.", "cons": [], "pros": [
                              {"aspect": "fit", "mentions": 2, "praised": 2, "criticised": 0,
                               "quote": 'It fits "like <a glove>" & more.'}]}],
            "plots": {"topics": "topics.png"}, "warnings": []}
    data["summary"] = report.summarise(data)
    jsonschema.validate(data, json.loads(report.SCHEMA.read_text()))
    assert data["summary"][0] == ("100 news impressions in 4 windows of 6h over 3 topics; "
                                  "1 burst(s).")
    assert data["summary"][1].startswith("Emerging: tech from 2019-11-12 06:00 (40% of "
                                         "impressions, usually <1%)")
    page = report.render_html(data, {"topics": png})
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "Kit &lt;b&gt;" in page and "&quot;like &lt;a glove&gt;&quot; &amp; more." in page
    assert "recall &lt;i&gt;" in page and "A &lt;b&gt;recall&lt;/b&gt; notice" in page
    assert "New topic: recall <i> from 2019-11-11 (5 documents" in " ".join(data["summary"])
    assert page.count("<img ") == 1 and "Review sentiment" not in page


def test_a_text_model_below_its_baseline_is_said_first(tmp_path):
    from pipelines.workspace import Workspace

    ws = Workspace(tmp_path)
    assert report.model_warnings(ws) == []
    (tmp_path / "finetune").mkdir()
    (tmp_path / "finetune" / "metrics.json").write_text(json.dumps({
        "sentiment": {"albert": {"accuracy": 0.976}, "tfidf_lr": {"accuracy": 0.985},
                      "below_baseline": True},
        "topic": {"albert": {"accuracy": 0.99}, "tfidf_lr": {"accuracy": 0.95},
                  "below_baseline": False}}))
    warnings = report.model_warnings(ws)
    assert len(warnings) == 1 and "sentiment model is below" in warnings[0]
    assert "0.976 against 0.985" in warnings[0]
    data = {"warnings": warnings, "corpus": {"reviews": 0}}
    assert report.summarise(data)[0] == "Warning: " + warnings[0]


def test_sentiment_per_product_of_an_untimed_chinese_corpus(tmp_path):
    """Reviews without times (Chinese sets read with `--kind review`) still get the overall and
    per-product sentiment, their plot draws Chinese names where a CJK font is installed, and the
    page and JSON say there are no times instead of drawing empty plots."""
    import warnings

    import jsonschema
    import pandas as pd

    from pipelines.plotting import cjk_fonts

    negative, positive = [0.8, 0.1, 0.1], [0.1, 0.1, 0.8]
    docs = pd.DataFrame(
        [{"item": "平板", "rating": None, "sentiment": negative} for _ in range(12)]
        + [{"item": "平板", "rating": None, "sentiment": positive} for _ in range(4)]
        + [{"item": "书籍", "rating": None, "sentiment": positive} for _ in range(10)]
        + [{"item": "水果", "rating": None, "sentiment": negative} for _ in range(2)])
    rows = report.sentiment_by_product(docs, owner={}, titles={})
    assert [(r["item"], r["reviews"], r["share_negative"]) for r in rows] == [
        ("平板", 16, 0.75), ("书籍", 10, 0.0), ("水果", 2, 1.0)]
    assert rows[1]["share_positive"] == 1.0 and rows[0]["mean_rating"] is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = report.plot_product_sentiment(rows, tmp_path / "products.png")
    if cjk_fonts():
        assert not [w for w in caught if "missing from font" in str(w.message)]
    data = {"schema_version": 1, "workspace": "ws", "generated_at": "now",
            "corpus": {"reviews": 28, "products": 3, "first_review": None, "last_review": None},
            "summary": [], "sentiment": {"window": None, "windows": [], "overall": {
                "share_positive": 0.5, "share_negative": 0.5, "mean_rating": None}},
            "product_sentiment": rows, "aspects_over_time": [], "topics": None,
            "review_topics": None, "products": [], "plots": {"products": png.name},
            "warnings": []}
    data["summary"] = report.summarise(data)
    jsonschema.validate(data, json.loads(report.SCHEMA.read_text()))
    assert data["summary"][0] == "28 reviews of 3 products, without review times."
    # 水果 has 2 reviews: too few to be called the most negative.
    assert data["summary"][2].startswith("Most negative: 平板 (75% of 16 reviews); most "
                                         "positive: 书籍 (100% of 10)")
    assert not any("window" in line for line in data["summary"])
    # A model that reads every review positive names no "most negative" product (seen on a
    # collapsed Chinese encoder: "Most negative: 书籍 (0% of 1,000 reviews)").
    alike = [{**r, "share_negative": 0.0, "share_positive": 1.0} for r in rows]
    assert not any(line.startswith("Most negative")
                   for line in report.summarise({**data, "product_sentiment": alike}))
    page = report.render_html(data, {"products": png})
    assert "Review sentiment per product" in page and "Review sentiment over time" not in page
