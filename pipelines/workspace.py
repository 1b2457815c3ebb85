"""The workspace folder: where each stage writes, and whether a stage's outputs are up to date.

Every stage writes into `<workspace>/<stage>/` and, when it finishes, a `_stage.json` record with the
parameters it ran with, a fingerprint of each input, a fresh run id and its wall time. A stage is up to
date when its record exists and its parameters and input fingerprints are unchanged; a downstream
stage fingerprints an upstream stage by that stage's run id, so re-running a stage invalidates
everything after it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipelines.fspath import RemotePath, as_path

STAGE_RECORD = "_stage.json"
DEFAULT_WORKSPACE = "workspace"

log = logging.getLogger("opinionrec")


@dataclass(frozen=True)
class Workspace:
    """Paths of every artifact in a workspace folder (see DESIGN.md "Layout").

    The root is a local `Path`, or a `RemotePath` for a URL (gs://, s3://, hdfs://): the Beam
    stages (`ingest`) write there through Beam's filesystems, so their workers need no shared disk.
    """

    root: Path

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage.replace("-", "_")

    # sample-data
    @property
    def raw(self) -> Path:
        return self.root / "raw"

    # ingest
    @property
    def ingest(self) -> Path:
        return self.stage_dir("ingest")

    @property
    def docs(self) -> Path:
        """Canonical documents: `docs/*.parquet` and `docs/*.tfrecord`."""
        return self.ingest / "docs"

    @property
    def interactions(self) -> Path:
        """Click logs (MIND behaviours): `interactions/*.parquet`."""
        return self.ingest / "interactions"

    @property
    def items(self) -> Path:
        """Item metadata (Amazon meta files): `items/*.parquet`."""
        return self.ingest / "items"

    @property
    def rejected(self) -> Path:
        return self.ingest / "rejected"

    @property
    def ingest_stats(self) -> Path:
        return self.ingest / "stats.json"

    # vocab
    @property
    def spm_model(self) -> Path:
        return self.stage_dir("vocab") / "spm.model"

    @property
    def aspect_lexicon(self) -> Path:
        return self.stage_dir("vocab") / "aspects.json"

    # pretraining-data
    @property
    def pretraining_data(self) -> Path:
        """SOP/MLM instances: `train/*.tfrecord`, `validation/*.tfrecord`, `schema.json`."""
        return self.stage_dir("pretraining-data")

    # pretrain / finetune
    @property
    def pretrained_preset(self) -> Path:
        return self.stage_dir("pretrain") / "preset"

    @property
    def student_preset(self) -> Path:
        """The ALBERT student of `distill` (keras-hub preset, the teacher's WordPiece vocabulary)."""
        return self.stage_dir("distill") / "preset"

    @property
    def text_features_model(self) -> Path:
        """The raw-text SavedModel that `features` runs and `export` versions."""
        return self.stage_dir("finetune") / "text_features"

    # train-qa
    @property
    def review_qa_model(self) -> Path:
        """The `review_qa` SavedModel (question + review -> answer span) that `ask` runs and
        `export` versions."""
        return self.stage_dir("train-qa") / "review_qa"

    # features
    @property
    def features(self) -> Path:
        return self.stage_dir("features")

    # train-recommender
    @property
    def recommender_model(self) -> Path:
        return self.stage_dir("train-recommender") / "recommender"

    # export
    @property
    def export(self) -> Path:
        return self.stage_dir("export")

    @property
    def models_root(self) -> Path:
        """TF Serving's model base: `<name>/<version>/` folders and `models.config`."""
        return self.export / "models"


def add_workspace_argument(parser: argparse.ArgumentParser, stage: bool = True) -> None:
    """`--workspace`, and for a stage that writes outputs, `--if-stale`."""
    parser.add_argument(
        "--workspace",
        default=os.environ.get("OPINIONREC_WORKSPACE", DEFAULT_WORKSPACE),
        help="workspace folder every stage reads and writes (default: %(default)s)",
    )
    if not stage:
        return
    parser.add_argument(
        "--if-stale",
        action="store_true",
        help="do nothing when this stage's outputs are up to date with its inputs and options",
    )


def workspace_from_args(args: argparse.Namespace) -> Workspace:
    return Workspace(as_path(args.workspace))


@functools.lru_cache(maxsize=4096)
def _content_digest(file: str, size: int, mtime_ns: int) -> str:
    """SHA-1 of a local file's bytes, cached per (path, size, mtime) within the process: `run`
    checks each stage's inputs several times."""
    with open(file, "rb") as handle:
        return hashlib.file_digest(handle, "sha1").hexdigest()


def fingerprint_path(path: Path) -> str:
    """A content fingerprint: relative name, size and content hash of every local file under
    `path` (a copy or a `touch` of unchanged data keeps a workspace up to date; an edit that keeps
    the size does not), or name, size and time of every remote object (one listing)."""
    digest = hashlib.sha1()
    path = as_path(path)
    if isinstance(path, RemotePath):  # one listing carries every file's size and time
        entries = path.listing()
        if not entries:  # an object store has no empty folders
            return "missing"
        for file, stat in entries:
            rel = file.name if file == path else str(file.relative_to(path))
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()
    if not path.exists():
        return "missing"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        stat = file.stat()
        rel = file.name if file == path else str(file.relative_to(path))
        content = _content_digest(str(file), stat.st_size, stat.st_mtime_ns)
        digest.update(f"{rel}\0{stat.st_size}\0{content}\n".encode())
    return digest.hexdigest()


def read_stage_record(workspace: Workspace, stage: str) -> dict[str, Any] | None:
    record_path = workspace.stage_dir(stage) / STAGE_RECORD
    if not record_path.exists():
        return None
    try:
        return json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None


def input_fingerprints(
    workspace: Workspace, inputs: Mapping[str, str | Path]
) -> dict[str, str]:
    """Fingerprint each input: `stage:NAME` by that stage's run id, anything else by its files."""
    prints = {}
    for key, value in inputs.items():
        value = str(value)
        if value.startswith("stage:"):
            record = read_stage_record(workspace, value.removeprefix("stage:"))
            prints[key] = record["run_id"] if record else "missing"
        else:
            prints[key] = fingerprint_path(as_path(value))
    return prints


def jsonable(params: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(params), sort_keys=True, default=str))


def is_up_to_date(
    workspace: Workspace,
    stage: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | Path],
) -> bool:
    record = read_stage_record(workspace, stage)
    if record is None:
        return False
    return record.get("params") == jsonable(params) and record.get(
        "inputs"
    ) == input_fingerprints(workspace, inputs)


@contextlib.contextmanager
def stage_run(
    workspace: Workspace,
    stage: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | Path],
) -> Iterator[dict[str, Any]]:
    """Run a stage body and, only if it succeeds, write its `_stage.json` record.

    The yielded dict is the record; the body may add a `summary` (counts, metrics) to it.
    """
    stage_dir = workspace.stage_dir(stage)
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / STAGE_RECORD).unlink(missing_ok=True)
    record: dict[str, Any] = {
        "stage": stage,
        "params": jsonable(params),
        "inputs": input_fingerprints(workspace, inputs),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    start = time.perf_counter()
    log.info("%s: started", stage)
    yield record
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["run_id"] = uuid.uuid4().hex
    (stage_dir / STAGE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log.info("%s: done in %.1f s", stage, record["wall_s"])


def skip_if_fresh(
    args: argparse.Namespace,
    workspace: Workspace,
    stage: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str | Path],
) -> bool:
    """True (and a log line) when `--if-stale` was given and the stage is up to date."""
    if getattr(args, "if_stale", False) and is_up_to_date(workspace, stage, params, inputs):
        log.info("%s: up to date, skipped", stage)
        return True
    return False
