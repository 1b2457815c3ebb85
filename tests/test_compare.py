"""`opinionrec compare` end to end on a tiny workspace, and its measurements on their own."""

import json

import pytest

from albert_tf.comparison import encoder_flops
from albert_tf.configs import get_config
from pipelines import cli
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
