"""Shared fixtures: the real data in ../shared/data when present, fake tables otherwise."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

# Ray in tests: a single-machine cluster stays on the loopback interface (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

# Caches (decoded data, NASES pre-training) go to a directory of this session, never the home directory; the
# variable is inherited by the command-line processes that tests start.
_CACHE = tempfile.mkdtemp(prefix="nasforge-test-cache-")
os.environ["NASFORGE_CACHE"] = _CACHE

torch.set_num_threads(1)  # tests run on 2 cores; many small models are fastest single-threaded

SHARED = Path(os.environ.get("NASFORGE_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared_file(name: str) -> Path:
    """Path of a file in ../shared/data, or skip the test saying what is missing."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (set NASFORGE_SHARED_DATA to the folder holding {name})")
    return path


@pytest.fixture
def nb201_table() -> Path:
    return shared_file("nb201-cifar10.csv")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)
