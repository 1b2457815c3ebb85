"""benchmarks/quality.py's bookkeeping: the table, merging runs, the measured speed."""

from __future__ import annotations

import json

from benchmarks import quality
from pipelines.quality.datasets import Dataset, Example


def _results() -> dict:
    return {
        "sst2": {
            "albert": {"accuracy": 0.8, "macro_f1": 0.79, "metrics": ["accuracy", "macro_f1"],
                       "preset": "/p/en"},
            "tfidf": {"accuracy": 0.8406, "macro_f1": 0.8402,
                      "metrics": ["accuracy", "macro_f1"]},
            "lexicon": {"skipped": "lexicon does not do classification"},
        },
        "semeval14_laptops_aspects": {
            "lexicon": {"precision": 0.5485, "recall": 0.5703, "f1": 0.5592,
                        "metrics": ["precision", "recall", "f1"]},
            "albert": {"error": "ValueError: boom"},
        },
        "bbc_topics": {"tfidf": {"nmi": 0.898, "ari": 0.925, "metrics": ["nmi", "ari"]}},
    }


def test_markdown_shows_percentages_skips_failures_and_presets():
    text = quality.markdown(_results(), {"bert": "no preset"})
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
            if line.startswith("| ")}
    assert "80.00 / 79.00" in rows["sst2"] and "84.06 / 84.02" in rows["sst2"]
    assert "TF-IDF acc 84.06" in rows["sst2"] and "acc >= 88" in rows["sst2"]
    assert "failed" in rows["semeval14_laptops_aspects"]
    assert "54.85 / 57.03 / 55.92" in rows["semeval14_laptops_aspects"]
    assert "89.80 / 92.50" in rows["bbc_topics"]
    assert list(rows)[-1] == "bbc_topics"  # topic rows after the task rows
    assert "`bert` not run: no preset." in text
    assert "`albert` preset `/p/en`: sst2." in text


def test_earlier_results_merge_unless_fresh(tmp_path):
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({"benchmark": "quality", "commit": "abc",
                                "options": {"minutes": 3, "presets": {"albert": "/p"}},
                                **_results()}))
    kept = quality._load_results(path, fresh=False)
    assert set(kept) == {"sst2", "semeval14_laptops_aspects", "bbc_topics"}
    assert quality._load_results(path, fresh=True) == {}


def test_baseline_runs_only_where_it_applies():
    aspects = Dataset("a", "aspect_terms", "en", [], [Example("The screen.", spans=((4, 10),))],
                      [], [Example("A screen.", spans=((2, 8),))], ("precision", "recall", "f1"),
                      "fixture")
    assert "skipped" in quality.run_baseline("tfidf", aspects)
    scores = quality.run_baseline("lexicon", aspects)
    assert scores["f1"] == 1.0


def test_measured_speed_leaves_out_the_compiling_chunk(tmp_path):
    logs = tmp_path / "training" / "logs"
    logs.mkdir(parents=True)
    lines = [{"step": 100, "tokens_per_second": 500.0}, {"step": 200, "tokens_per_second": 2000.0},
             {"step": 300, "tokens_per_second": 2200.0}, {"step": 400, "tokens_per_second": 2100.0}]
    (logs / "history.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert quality.measured_speed(tmp_path) == 2100.0
    assert quality.measured_speed(tmp_path / "missing") is None


def test_the_plan_runs_tasks_first_and_topics_only_on_news_sets():
    plan = quality.build_plan(["sst2", "bbc"], ["bert", "tfidf"], {})
    assert plan == [("sst2", "task", "bert"), ("sst2", "task", "tfidf"), ("bbc", "task", "bert"),
                    ("bbc", "task", "tfidf"), ("bbc", "topics", "bert"), ("bbc", "topics", "tfidf")]
    assert quality.build_plan(["sst2", "bbc"], ["bert", "tfidf"], {"bert": "no preset"},
                              topics_only=True) == [("bbc", "topics", "tfidf")]
    plan = quality.build_plan(["bbc"], ["lexicon"], {}, topics=False)
    assert plan == [("bbc", "task", "lexicon")]


def test_earlier_albert_results_from_a_scratch_preset_become_albert_scratch(tmp_path):
    """`albert` now names the distilled student: an older entry fine-tuned from a from-scratch
    `pretrain/preset` is read back as `albert_scratch`; a student's entry stays `albert`."""
    path = tmp_path / "quality.json"
    path.write_text(json.dumps({
        "sst2": {"albert": {"accuracy": 0.65, "preset": "/tmp/x/pretrain/preset"},
                 "tfidf": {"accuracy": 0.84}},
        "bbc": {"albert": {"accuracy": 0.97, "preset": "/tmp/x/distill/preset"}},
    }))
    kept = quality._load_results(path, fresh=False)
    assert kept["sst2"] == {"albert_scratch": {"accuracy": 0.65, "preset": "/tmp/x/pretrain/preset"},
                            "tfidf": {"accuracy": 0.84}}
    assert list(kept["bbc"]) == ["albert"]


def test_the_headline_table_judges_aspects_by_f1_against_the_lexicon():
    from benchmarks import student_vs_teacher

    spans = ["precision", "recall", "f1"]
    quality_json = {
        "sst2": {"teacher": {"accuracy": 0.85, "metrics": ["accuracy", "macro_f1"]},
                 "albert": {"accuracy": 0.80, "metrics": ["accuracy", "macro_f1"]},
                 "tfidf": {"accuracy": 0.82, "metrics": ["accuracy", "macro_f1"]}},
        "laptops": {"albert": {"precision": 0.4, "f1": 0.47, "metrics": spans},
                    "tfidf": {"skipped": "no aspect terms", "metrics": spans},
                    "lexicon": {"precision": 0.5, "f1": 0.56, "metrics": spans}},
        "ag_news": {"tfidf": {"accuracy": 0.9, "metrics": ["accuracy"]}},  # no encoder: left out
    }
    rows = {row[0]: row for row in student_vs_teacher.accuracy_rows(quality_json)}
    assert set(rows) == {"sst2", "laptops"}
    assert rows["laptops"][1:] == ["f1", "—", "47.00", "—", "56.00"]
    assert rows["sst2"][1:] == ["accuracy", "85.00", "80.00", "—", "82.00"]


def test_results_record_paths_that_read_the_same_on_any_machine():
    import tempfile
    from pathlib import Path

    from benchmarks._common import REPO, portable

    record = {"preset": str(Path(tempfile.gettempdir(), "dws", "distill", "preset")),
              "data": [str(REPO.parent / "shared" / "data" / "sst2-glue")],
              "teacher": str(REPO / ".venv" / "model"), "name": "sst2", "steps": 3}
    assert portable(record) == {"preset": "<tmp>/dws/distill/preset",
                                "data": ["../shared/data/sst2-glue"],
                                "teacher": ".venv/model", "name": "sst2", "steps": 3}


def test_a_learned_model_below_its_baseline_is_named_with_the_metrics():
    rows = _results()
    assert quality.below_baseline(rows["sst2"]["albert"], rows["sst2"]) == {
        "accuracy": "tfidf", "macro_f1": "tfidf"}
    aspects = rows["semeval14_laptops_aspects"]
    ahead = {"precision": 0.6, "recall": 0.5, "f1": 0.56, "metrics": ["precision", "recall", "f1"]}
    assert quality.below_baseline(ahead, aspects) == {"recall": "lexicon"}
    assert quality.below_baseline(aspects["albert"], aspects) == {}  # a failed run has no figures
