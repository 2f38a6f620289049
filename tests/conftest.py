"""Shared fixtures: the real data in ../shared/data when present, fake tables otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Ray in tests: a single-machine cluster stays on the loopback interface (read when ray is imported).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

torch.set_num_threads(1)  # tests run on 2 cores; many small models are fastest single-threaded
os.environ.setdefault("OMP_NUM_THREADS", "1")  # and so do the commands tests run (nasforge.threads honours it)

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
