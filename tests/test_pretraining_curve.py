"""The pretraining-curve benchmark's arithmetic: options, interpolation, verdicts."""

import pytest

from benchmarks.pretraining_curve import at_minutes, curve_report, markdown, merged_options


def test_overrides_replace_the_recipe_options_and_flags_are_kept():
    recipe = ["--config", "tiny", "--mask-rate", "0.3", "--steps", "2200"]
    assert merged_options(recipe, ["--mask-rate", "0.15", "--static-sop"]) == [
        "--config", "tiny", "--steps", "2200", "--mask-rate", "0.15", "--static-sop"]


def test_values_between_checkpoints_are_linear_in_wall_time():
    history = [{"wall_s": 240, "val_mlm_accuracy": 0.04}, {"wall_s": 360, "val_mlm_accuracy": 0.07}]
    assert at_minutes(history, "val_mlm_accuracy", 5) == pytest.approx(0.055)
    assert at_minutes(history, "val_mlm_accuracy", 4) == pytest.approx(0.04)
    assert at_minutes(history, "val_mlm_accuracy", 7) is None  # past the last checkpoint
    assert at_minutes(history, "val_mlm_accuracy", 3) is None


def test_the_report_beats_the_reference_only_at_every_point():
    def run(mlm, sop):
        return [{"wall_s": 60 * m, "step": 100 * m, "val_mlm_accuracy": mlm(m),
                 "val_sop_accuracy": sop(m), "tokens_per_second": 2000.0} for m in range(1, 62)]

    strong = curve_report(run(lambda m: 0.4 * m / 60 + 0.02, lambda m: 0.9))
    assert strong["beats_reference"] == {"mlm_accuracy": True, "sop_accuracy": True}
    assert strong["meets_60_minute_targets"] == {"mlm_accuracy": True, "sop_accuracy": True}
    # Above the reference at 5-15 minutes but not at 22: no.
    weak = curve_report(run(lambda m: 0.11 if m < 20 else 0.115, lambda m: 0.5))
    assert weak["beats_reference"] == {"mlm_accuracy": False, "sop_accuracy": False}
    assert weak["meets_60_minute_targets"] == {"mlm_accuracy": False, "sop_accuracy": False}
    assert weak["median_tokens_per_s"] == 2000.0
    assert [r["minutes"] for r in weak["curve"]] == [5, 10, 15, 22, 30, 45, 60]
    # A run that reaches a goal before its schedule ends early (48 minutes) meets it; a goal
    # reached only after 60 minutes does not count.
    early = curve_report(run(lambda m: 0.3, lambda m: 0.5)[:48])
    assert early["meets_60_minute_targets"] == {"mlm_accuracy": True, "sop_accuracy": False}
    late = curve_report(run(lambda m: 0.3 if m > 61 else 0.2, lambda m: 0.9 if m > 61 else 0.5)
                        + [{"wall_s": 62 * 60, "step": 6200, "val_mlm_accuracy": 0.3,
                            "val_sop_accuracy": 0.9}])
    assert late["meets_60_minute_targets"] == {"mlm_accuracy": False, "sop_accuracy": False}


def test_a_bert_report_puts_albert_of_the_same_recipe_beside_each_point():
    def run(mlm):
        return [{"wall_s": 60 * m, "step": 100 * m, "val_mlm_accuracy": mlm(m),
                 "val_sop_accuracy": 0.5, "tokens_per_second": 2000.0} for m in range(1, 62)]

    bert = {"architecture": "bert", **curve_report(run(lambda m: 0.002 * m))}
    bert["albert"] = {"commit": "abc1234", **curve_report(run(lambda m: 0.003 * m))}
    text = markdown(bert, "opinionrec pretrain --architecture bert")
    header = next(line for line in text.splitlines() if line.startswith("| minutes"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "minutes", "BERT MLM", "ALBERT MLM", "reference MLM", "BERT SOP", "ALBERT SOP",
        "reference SOP"]
    row_30 = next(line for line in text.splitlines() if line.startswith("| 30 "))
    assert [c.strip() for c in row_30.strip("|").split("|")] == [
        "30", "6.0%", "9.0%", "", "50.0%", "50.0%", ""]
    assert "ALBERT's run (commit abc1234)" in text
