"""A workspace on a Beam filesystem URL: `ingest` writes and reconciles there, no local paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.fspath import RemotePath, as_path, remove_tree
from pipelines.records import DOC_SCHEMA, read_table
from tests.diskfs import DiskFileSystem

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"


@pytest.fixture
def diskfs(tmp_path: Path):
    DiskFileSystem.root = str(tmp_path / "store")
    return tmp_path / "store"


def test_remote_path_basics(diskfs: Path):
    folder = as_path("diskfs://bucket/ws")
    assert isinstance(folder, RemotePath) and not folder.exists()
    (folder / "a" / "x.json").write_text('{"k": 1}')
    (folder / "a" / "y.txt").write_text("y")
    assert (diskfs / "bucket" / "ws" / "a" / "x.json").read_text() == '{"k": 1}'
    assert folder.exists() and folder.is_dir() and (folder / "a" / "x.json").is_file()
    assert [p.name for p in (folder / "a").glob("*.json")] == ["x.json"]
    assert json.loads((folder / "a" / "x.json").read_text()) == {"k": 1}
    assert (folder / "a" / "x.json").stat().st_size == 8
    remove_tree(folder / "a")
    assert not (folder / "a" / "y.txt").exists()
    assert as_path("relative/dir") == Path("relative/dir")


def test_ingest_into_a_remote_workspace(diskfs: Path):
    url = "diskfs://bucket/ws"
    args = ["ingest", "--workspace", url, "--input", str(FIXTURES / "mixed_reviews.jsonl"),
            "--input", str(FIXTURES / "news.tsv"), "--max-text-chars=300"]
    assert cli.main(args) == 0
    local = diskfs / "bucket" / "ws" / "ingest"
    stats = json.loads((local / "stats.json").read_text())
    assert stats["read"] == stats["written"] + stats["rejected"] + stats["deduplicated"]
    assert stats["rejected"] > 0
    docs = read_table(local / "docs", DOC_SCHEMA)
    assert docs.num_rows == stats["by_output"]["docs"] > 0
    assert sorted(p.suffix for p in (local / "docs").iterdir()) == [".parquet", ".tfrecord"]
    record = json.loads((local / "_stage.json").read_text())
    # --if-stale reads the stage record back through the filesystem and skips.
    assert cli.main([*args, "--if-stale"]) == 0
    assert json.loads((local / "_stage.json").read_text())["run_id"] == record["run_id"]


def test_pretraining_data_from_and_into_a_remote_workspace(diskfs: Path, spm_model: Path):
    from albert_tf.instances import load_instances

    url = "diskfs://bucket/ws"
    assert cli.main(["ingest", "--workspace", url, "--input",
                     str(FIXTURES / "mixed_reviews.jsonl"), "--input", str(FIXTURES / "news.tsv"),
                     "--max-text-chars=300"]) == 0
    args = ["pretraining-data", "--workspace", url, "--spm-model", str(spm_model),
            "--sequence-length", "32", "--min-tokens", "2", "--validation-fraction", "0"]
    assert cli.main(args) == 0
    local = diskfs / "bucket" / "ws" / "pretraining_data"
    stats = json.loads((local / "stats.json").read_text())
    assert stats["documents_read"] == stats["documents_used"] + stats["documents_skipped"] > 0
    schema = json.loads((local / "schema.json").read_text())
    assert schema["splits"]["train"]["files"] == ["train/instances-00000-of-00001.tfrecord"]
    # The files are ordinary TFRecords: the pretraining reader takes them from the local copy.
    instances = load_instances(local, "train")
    assert len(instances) == stats["instances"]["train"] > 0


def test_fingerprints_of_remote_inputs_follow_their_files(diskfs: Path):
    from pipelines.workspace import fingerprint_path

    folder = as_path("diskfs://bucket/inputs")
    assert fingerprint_path(folder) == "missing"
    (folder / "a.json").write_text("one")
    first = fingerprint_path(folder)
    assert first != "missing" and fingerprint_path(folder / "a.json") != "missing"
    (folder / "b.json").write_text("two")
    assert fingerprint_path(folder) != first


def test_local_fingerprints_follow_content_not_file_times(tmp_path: Path):
    """A `touch` or a copy with new times keeps a workspace up to date (shared data refreshed
    between sessions re-ran every stage, a 7.5-minute distill included); an edit that keeps the
    size, or a new file, makes it stale."""
    import os

    from pipelines.workspace import fingerprint_path

    data = tmp_path / "reviews"
    data.mkdir()
    (data / "a.json").write_text('{"rating": 4}\n')
    first = fingerprint_path(data)
    os.utime(data / "a.json", ns=(1, 1))  # the same bytes, another time
    assert fingerprint_path(data) == first
    (data / "a.json").write_text('{"rating": 5}\n')  # same size, other content
    assert fingerprint_path(data) != first
    edited = fingerprint_path(data)
    (data / "b.json").write_text("{}\n")
    assert fingerprint_path(data) != edited
    assert fingerprint_path(tmp_path / "nothing") == "missing"
