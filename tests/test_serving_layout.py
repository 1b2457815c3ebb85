"""The TF Serving model folder: versions, models.config, batching.config, warm-up, load checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving import layout
from serving.check import SavedModelCheckError, check_saved_model
from serving.testing import save_jit_model, save_toy_model

WARMUP = {"serving_default": {"text": ["great battery"]}, "scaled": {"k": 2},
          "words": {"text": ["a b"]}}


@pytest.fixture(scope="module")
def toy_models(tmp_path_factory) -> dict[float, Path]:
    """Toy SavedModels whose outputs differ by `scale` (so their content differs)."""
    root = tmp_path_factory.mktemp("toy_sources")
    return {scale: save_toy_model(root / f"scale_{scale}", scale=scale)
            for scale in (1.0, 2.0, 3.0)}


def test_versions_increment_only_when_content_changes(tmp_path, toy_models):
    root = tmp_path / "models"
    assert layout.export_model(toy_models[1.0], root, "toy", warmup_inputs=WARMUP) == 1
    assert layout.export_model(toy_models[1.0], root, "toy", warmup_inputs=WARMUP) == 1
    assert layout.export_model(toy_models[2.0], root, "toy", warmup_inputs=WARMUP) == 2
    assert layout.export_model(toy_models[2.0], root, "toy", warmup_inputs=WARMUP) == 2
    # Same model, other warm-up requests: the version folder's content differs.
    assert layout.export_model(toy_models[2.0], root, "toy") == 3
    assert layout.model_versions(root / "toy") == [2, 3]  # keep=2 pruned version 1
    assert layout.export_model(toy_models[3.0], root, "toy", keep=1) == 4
    assert layout.model_versions(root / "toy") == [4]
    assert sorted(p.name for p in (root / "toy").iterdir()) == ["4"]  # no staging left behind
    version_dir = root / "toy" / "4"
    assert (version_dir / "saved_model.pb").exists()
    assert (version_dir / "variables").is_dir()
    assert (version_dir / layout.WARMUP_FILE).exists()


def test_export_model_rejects_what_is_not_a_saved_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        layout.export_model(tmp_path / "empty", tmp_path / "models", "x")
    with pytest.raises(ValueError, match="keep"):
        layout.export_model(tmp_path / "empty", tmp_path / "models", "x", keep=0)


def test_models_config_parses_with_the_official_proto(tmp_path, toy_models):
    root = tmp_path / "models"
    layout.export_model(toy_models[1.0], root, "toy")
    layout.export_model(toy_models[2.0], root, "other")
    (root / "not_a_model").mkdir()  # no version folder: not listed

    config = layout.read_models_config(layout.write_models_config(root))
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["other", "toy"]
    assert entries["toy"].base_path == "/models/toy"
    assert entries["toy"].model_platform == "tensorflow"
    assert entries["toy"].model_version_policy.latest.num_versions == 2

    config = layout.read_models_config(
        layout.write_models_config(root, ["toy"], absolute_paths=True, serve_versions=1))
    (entry,) = config.model_config_list.config
    assert Path(entry.base_path).is_absolute() and Path(entry.base_path, "1").is_dir()
    assert not entry.HasField("model_version_policy")  # TF Serving's default: latest 1


def test_batching_config_parses_with_tf_servings_field_numbers(tmp_path):
    from google.protobuf import text_format

    from serving.batching_proto import batching_parameters_class

    path = layout.write_batching_config(
        tmp_path, layout.BatchingOptions(max_batch_size=16, num_batch_threads=3))
    params = text_format.Parse(path.read_text(), batching_parameters_class()())
    assert params.max_batch_size.value == 16
    assert params.num_batch_threads.value == 3
    assert params.batch_timeout_micros.value == layout.BatchingOptions().batch_timeout_micros
    assert params.max_enqueued_batches.value > 0
    descriptor = params.DESCRIPTOR
    assert descriptor.full_name == "tensorflow.serving.BatchingParameters"
    assert [descriptor.fields_by_name[n].number for n in
            ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
             "num_batch_threads")] == [1, 2, 3, 4]


def test_warmup_file_holds_prediction_logs_of_predict_requests(tmp_path, toy_models):
    import tensorflow as tf

    root = tmp_path / "models"
    version = layout.export_model(toy_models[1.0], root, "toy", warmup_inputs=WARMUP)
    logs = layout.read_warmup_requests(root / "toy" / str(version) / layout.WARMUP_FILE)
    requests = {log.predict_log.request.model_spec.signature_name: log.predict_log.request
                for log in logs}
    assert sorted(requests) == ["scaled", "serving_default", "words"]
    text = requests["serving_default"].inputs["text"]
    assert text.dtype == tf.string.as_datatype_enum
    assert list(text.string_val) == [b"great battery"]
    scaled = requests["scaled"]
    assert tf.make_ndarray(scaled.inputs["k"]).tolist() == 2
    x = tf.make_ndarray(scaled.inputs["x"])  # not given: defaulted from the signature's shape
    assert x.shape == (1, 3) and x.dtype == "float32"
    assert all(log.predict_log.request.model_spec.name == "toy" for log in logs)


def test_warmup_inputs_must_name_real_signatures_and_inputs(tmp_path, toy_models):
    with pytest.raises(ValueError, match="signature 'nope'"):
        layout.export_model(toy_models[1.0], tmp_path, "toy", warmup_inputs={"nope": {}})
    with pytest.raises(ValueError, match="'texts'"):
        layout.export_model(toy_models[1.0], tmp_path, "toy",
                            warmup_inputs={"serving_default": {"texts": ["a"]}})
    with pytest.raises(ValueError, match=r"'k' has shape \[1\], but the signature expects \[\]"):
        layout.export_model(toy_models[1.0], tmp_path, "toy", warmup_inputs={"scaled": {"k": [2]}})
    assert layout.model_versions(tmp_path / "toy") == []


def test_check_saved_model_passes_on_a_clean_model(tmp_path, toy_models):
    root = tmp_path / "models"
    version = layout.export_model(toy_models[1.0], root, "toy", warmup_inputs=WARMUP)
    report = check_saved_model(root / "toy" / str(version))
    assert report["xla"] == [] and report["foreign_modules"] == []
    outputs = report["signatures"]["serving_default"]["outputs"]
    assert outputs["scores"] == {"dtype": "float32", "shape": [1, 3]}
    assert outputs["tokens"] == {"dtype": "string", "shape": [1, 2]}
    assert report["signatures"]["scaled"]["outputs"]["total"]["shape"] == []
    # `words` runs a TF Text op: the fresh process has TF Text's kernels, as TF Serving does.
    assert report["signatures"]["words"]["outputs"]["words"]["shape"] == [1, 4]


def test_check_saved_model_fails_on_a_jit_compiled_function(tmp_path):
    path = save_jit_model(tmp_path / "jit")
    with pytest.raises(SavedModelCheckError, match="_XlaMustCompile"):
        check_saved_model(path)


def test_check_saved_model_reports_a_model_that_fails_to_answer(tmp_path, toy_models):
    with pytest.raises(SavedModelCheckError, match="no signature 'nope'"):
        check_saved_model(toy_models[1.0], {"nope": {}})


def test_serving_commands_name_the_config_files(tmp_path):
    command = layout.docker_command(tmp_path)
    assert f"-v {tmp_path.resolve()}:/models" in command
    assert "--model_config_file=/models/models.config" in command
    assert "--batching_parameters_file=/models/batching.config" in command
    assert "--enable_batching" not in layout.docker_command(tmp_path, batching=False)
    assert f"--model_config_file={tmp_path.resolve()}/models.config" in layout.binary_command(
        tmp_path)


def test_export_command_writes_the_layout_and_a_stage_record(tmp_path, toy_models, capsys):
    import json

    from pipelines import cli, export

    workspace = tmp_path / "ws"
    argv = ["export", "--workspace", str(workspace), "--model", f"toy={toy_models[1.0]}",
            "--no-check"]
    assert cli.main(argv) == 0
    models_root = workspace / "export" / "models"
    assert layout.model_versions(models_root / "toy") == [1]
    assert (models_root / "models.config").exists() and (models_root / "batching.config").exists()
    record = json.loads((workspace / "export" / "_stage.json").read_text())
    assert record["summary"]["toy"]["version"] == 1
    printed = capsys.readouterr().out
    assert "docker run" in printed and "tensorflow/serving" in printed
    docker_line = next(line for line in printed.splitlines() if "docker run" in line)
    assert "--enable_batching" not in docker_line  # the toy model's `scaled` takes a scalar `k`

    # Warm-up inputs come from the signatures' input names.
    warmup = export.warmup_inputs(toy_models[1.0])
    assert warmup["serving_default"] == {"text": export.WARMUP_SAMPLES["text"]}
    assert warmup["scaled"] == {}

    assert cli.main(argv + ["--if-stale"]) == 0  # unchanged inputs: skipped
    with pytest.raises(SystemExit, match="NAME=PATH"):
        cli.main(["export", "--workspace", str(workspace), "--model", "toy"])
    with pytest.raises(SystemExit, match="nothing to export"):
        cli.main(["export", "--workspace", str(tmp_path / "empty")])


def test_export_command_refuses_a_model_tf_serving_cannot_run(tmp_path):
    from pipelines import cli

    jit = save_jit_model(tmp_path / "jit")
    with pytest.raises(SystemExit, match="jit cannot be served: .*_XlaMustCompile"):
        cli.main(["export", "--workspace", str(tmp_path / "ws"), "--model", f"jit={jit}"])
    assert not (tmp_path / "ws" / "export" / "models" / "jit").exists()


def test_export_help_is_fast_and_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from pipelines import cli\n"
            "try: cli.main(['export', '--help'])\n"
            "except SystemExit: pass\n"
            "assert 'tensorflow' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert "--model NAME=PATH" in result.stdout
