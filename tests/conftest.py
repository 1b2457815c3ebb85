"""Shared fixtures: the real datasets in ../shared/data, quiet TensorFlow, one Keras per package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(
    os.environ.get("OPINIONREC_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")
).resolve()


def shared_file(relative: str) -> Path:
    """A file or folder under ../shared/data, or skip the test saying what is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"{path} not found: the real datasets live in ../shared/data "
                    "(or set OPINIONREC_SHARED_DATA)")
    return path


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} not found (set OPINIONREC_SHARED_DATA)")
    return SHARED_DATA
