"""`opinionrec compare` end to end on a tiny workspace, and its measurements on their own."""

import json

import pytest

from albert_tf.comparison import encoder_flops
from albert_tf.configs import get_config
from pipelines import cli
from pipelines.compare import CompareOptions, assemble_result, write_reports
from pipelines.pretraining_data import InstanceOptions, build_schema, run_pretraining_data_bare
from tests.conftest import make_review_corpus

SEQUENCE_LENGTH = 32  # room for segment pairs (SOP)


@pytest.fixture(scope="module")
def workspace(spm_model, tmp_path_factory):
    """A workspace holding only `pretraining_data/` (instances + schema.json), without Beam."""
    ws = tmp_path_factory.mktemp("compare_ws")
    out = ws / "pretraining_data"
    docs = [{"id": f"doc{i:05d}", "kind": "review", "text": " ".join(s), "sentences": s}
            for i, s in enumerate(make_review_corpus(300, seed=1))]
    options = InstanceOptions(sequence_length=SEQUENCE_LENGTH, validation_fraction=0.2)
    result = run_pretraining_data_bare(docs, spm_model, sequence_length=SEQUENCE_LENGTH,
                                       validation_fraction=0.2, out_dir=out)
    schema = build_schema(spm_model, options, result.stats, out)
    (out / "schema.json").write_text(json.dumps(schema))
    return ws


def test_encoder_flops_count_shared_layers_every_time_they_run():
    config = get_config("nano")
    albert = encoder_flops(config, 2, 16, "albert")
    bert = encoder_flops(config, 2, 16, "bert")
    projection = 2 * 16 * 2 * config.embedding_dim * config.hidden_dim
    assert albert == bert + projection  # sharing saves weights, not FLOPs
    repeated = encoder_flops(config.replace(num_inner_repetitions=2), 2, 16, "albert")
    assert repeated - projection == 2 * (albert - projection) - 2 * 2 * config.hidden_dim ** 2


def _fake_speed(params: int, fast: float, jit_modes=("graph", "xla")) -> dict:
    timing = {"tokens_per_s": 1000 * fast, "median_s": 0.5 / fast, "first_call_s": 2.0,
              "compile_s": 1.5}
    step = {"tokens_per_s": 300 * fast, "median_step_s": 1.0, "compile_s": 9.0, "steps": 2}
    return {"params": params, "checkpoint_mb": params * 4 / 2**20, "peak_rss_mb": 900.0,
            "inference": {m: timing for m in jit_modes}, "training": {m: step for m in jit_modes}}


def _fake_race(params: int, mlm: float, sop: float | None) -> dict:
    return {"mlm_accuracy": mlm, "sop_accuracy": sop, "peak_rss_mb": 800.0, "steps": 40,
            "tokens_per_s": 2000.0, "compile_seconds": 3.0, "params": params,
            "curve": [[0.0, 0, 0.01, sop], [30.0, 20, mlm / 2, sop], [60.0, 40, mlm, sop]]}


def test_reports_assemble_the_measurements_side_by_side(tmp_path):
    """The result and its three reports from canned measurements (no model runs)."""
    options = CompareOptions(pretraining_data=str(tmp_path), config="nano", speed_config="nano",
                             param_config="base", minutes=1.0, batch_size=8)
    speed_config = get_config("nano", vocabulary_size=300)
    result = assemble_result(
        options, 32, 300, speed_config, {"flops": 5e10, "method": "canned"},
        {"albert": _fake_speed(1, 2.0), "bert": _fake_speed(2, 1.0),
         "bf16": _fake_speed(1, 3.0, ("graph",))},
        {"albert": _fake_race(1, 0.3, 0.7), "bert": _fake_race(2, 0.35, 0.6),
         "bf16": _fake_race(1, 0.28, None)},
    )
    assert result["params"]["config"] == "base" and 8 < result["params"]["ratio"] < 10
    assert result["xla_speedup"] == {"inference": 1.0, "training": 1.0, "bert_inference": 1.0,
                                     "bert_training": 1.0}
    flops = encoder_flops(speed_config, 8, 32, "albert")
    assert result["xla_peak_fraction"] == pytest.approx(flops / 0.25 / 5e10)
    assert result["bf16"]["speedup_vs_fp32_xla"] == pytest.approx(1.5)
    assert result["bf16"]["sop_accuracy"] is None
    paths = write_reports(result, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["albert"]["curve"][-1] == [60.0, 40, 0.3, 0.7]
    markdown = paths["md"].read_text()
    assert "| ALBERT | BERT | ALBERT bf16 |" in markdown and "| base@30000 | 30,000 |" in markdown
    assert paths["html"].read_text().count("<img") == 2


@pytest.mark.slow
def test_compare_reports_albert_bert_and_bf16_side_by_side(workspace, tmp_path, capsys):
    out = tmp_path / "compare"
    assert cli.main([
        "compare", "--workspace", str(workspace), "--config", "nano", "--speed-config", "nano",
        "--param-config", "nano", "--minutes", "0.04", "--batch-size", "8", "--eval-every", "1",
        "--eval-instances", "64", "--warmup-steps", "5", "--repeats", "2", "--train-steps", "2",
        "--peak-size", "256", "--batching", "padded", "--no-race-xla", "--out", str(out),
    ]) == 0
    result = json.loads((out / "compare.json").read_text())

    # nano factorizes its embeddings (E=16 < H=32): BERT is larger.
    assert result["params"]["albert"]["total"] < result["params"]["bert"]["total"]
    assert result["params"]["ratio"] > 1 and result["params"]["vocabulary_size"] == 30000
    assert {"nano", "tiny", "base", "nano@30000"} <= set(result["params_by_config"])
    assert result["params_by_config"]["base"]["ratio"] > 5
    assert result["matmul_peak_gflops"] > 0
    assert 0 < result["xla_peak_fraction"] < 1.5
    assert set(result["xla_speedup"]) >= {"inference", "training"}
    assert all(v > 0 for v in result["xla_speedup"].values())
    for key in ("albert", "bert"):
        section = result[key]
        for field in ("train_tokens_per_s", "infer_tokens_per_s_xla", "infer_tokens_per_s_graph",
                      "checkpoint_mb", "peak_rss_mb"):
            assert section[field] > 0, (key, field)
        assert section["compile_s"] >= 0
        assert 0 <= section["mlm_accuracy"] <= 1 and 0 <= section["sop_accuracy"] <= 1
        assert len(section["curve"]) >= 2 and section["curve"][0][:2] == [0.0, 0]
        assert section["curve"][-1][1] == section["race_steps"] > 0
        built = section["params_speed_config"]
        assert built == result["params_by_config"]["nano"][key]["total"]
    assert result["bert"]["checkpoint_mb"] > result["albert"]["checkpoint_mb"]
    bf16 = result["bf16"]
    for field in ("infer_tokens_per_s", "train_tokens_per_s", "speedup_vs_fp32_xla"):
        assert bf16[field] > 0
    assert 0 <= bf16["mlm_accuracy"] <= 1 and 0 <= bf16["sop_accuracy"] <= 1

    markdown = (out / "compare.md").read_text()
    assert "| ALBERT | BERT | ALBERT bf16 |" in markdown and "held-out MLM accuracy" in markdown
    page = (out / "compare.html").read_text()
    assert page.count("<img") == 2 and "data:image/png;base64," in page
    assert "held-out MLM accuracy" in capsys.readouterr().out


def test_a_mask_rate_outside_0_1_is_refused_before_anything_runs(workspace, tmp_path):
    out = tmp_path / "compare"
    with pytest.raises(SystemExit, match="--mask-rate must be in"):
        cli.main(["compare", "--workspace", str(workspace), "--mask-rate", "1.5",
                  "--out", str(out)])
    assert not out.exists()


def test_compare_encoders_needs_a_distilled_student(workspace):
    with pytest.raises(SystemExit, match="opinionrec distill"):
        cli.main(["compare", "--workspace", str(workspace), "--encoders"])
