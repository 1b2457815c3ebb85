"""Runner-agnostic jobs: the package ships to workers with --setup_file, and the same job gives the
same result on another runner configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from pipelines import cli
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_setup_file_builds_a_worker_installable_package(tmp_path):
    """What `--setup_file ./setup.py` does on Dataflow/Flink/Spark: Beam's stager builds an sdist,
    and each worker installs it."""
    from apache_beam.runners.portability.stager import Stager

    sdist = Stager._build_setup_package(str(REPO_ROOT / "setup.py"), str(tmp_path))
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    for module in ("pipelines/ingest/formats/amazon.py", "pipelines/features.py",
                   "albert_tf/pretraining.py", "recommender/model.py", "serving/server.py"):
        assert any(name.endswith(module) for name in names), module
    assert not any("/tests/" in name or "/.venv/" in name for name in names)

    # A worker installs the sdist (dependencies are already on its image) and imports the jobs.
    target = tmp_path / "worker"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), sdist], check=True)
    env = {**os.environ, "PYTHONPATH": str(target)}
    probe = ("import pipelines.ingest, pipelines.features, pipelines.ingest.formats as f; "
             "print(pipelines.ingest.__file__, len(f.REGISTRY))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(str(target))


@pytest.mark.slow
def test_ingest_gives_the_same_result_with_two_worker_processes(tmp_path):
    assert cli.main(["sample-data", "--output", str(tmp_path / "raw"), "--reviews", "300",
                     "--news", "24", "--impressions", "24"]) == 0
    stats = {}
    for name, beam_args in (
        ("in_memory", []),
        ("multi_processing", ["--direct_running_mode", "multi_processing",
                              "--direct_num_workers", "2"]),
    ):
        ws = tmp_path / name
        assert cli.main(["ingest", "--workspace", str(ws), "--input", str(tmp_path / "raw"),
                         *beam_args]) == 0
        stats[name] = json.loads((ws / "ingest" / "stats.json").read_text())
    for key in ("read", "written", "rejected", "deduplicated", "rejected_by_reason", "by_output"):
        assert stats["in_memory"][key] == stats["multi_processing"][key], key
    assert stats["multi_processing"]["runner"] == "DirectRunner"


def test_unknown_runner_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["sample-data", "--output", str(tmp_path / "raw"), "--reviews", "60",
                     "--news", "12", "--impressions", "12"]) == 0
    with pytest.raises(Exception, match="NoSuchRunner"):
        cli.main(["ingest", "--workspace", str(tmp_path / "ws"), "--input",
                  str(tmp_path / "raw"), "--runner", "NoSuchRunner"])
