"""Shared fixtures: the real data in ../shared/data when present, fake tables otherwise."""

from __future__ import annotations

import os
import shutil
import signal
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

# A shell without job control starts background commands with SIGINT ignored (`make test &` in a script), and
# Python then installs no KeyboardInterrupt handler, here or in the commands tests start: the tests of Ctrl-C
# would see nothing happen. Python's own handler here also gives started commands the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

torch.set_num_threads(1)  # tests run on 2 cores; many small models are fastest single-threaded
os.environ.setdefault("OMP_NUM_THREADS", "1")  # and so do the commands tests run (nasforge.threads honours it)

# The test components (the toy space, the toy and faulty evaluators) are a plug-in, not production
# components: registered here, and through NASFORGE_PLUGINS in every process the tests start (CLI
# subprocesses, executor workers), which inherit the environment.
_plugins = [n.strip() for n in os.environ.get("NASFORGE_PLUGINS", "").split(",") if n.strip()]
os.environ["NASFORGE_PLUGINS"] = ",".join(dict.fromkeys([*_plugins, "nasforge.testing"]))
import nasforge.testing  # noqa: E402,F401

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


#: tests of more than ~5 s on 2 cores (start processes or Ray, decode CIFAR-10, kill and resume runs): marked
#: ``slow`` here in one place, so that ``pytest -m "not slow"`` is the everyday subset (``make test`` runs all)
SLOW = (
    "test_train_data.py::test_real_cifar10",
    "test_run_executors.py::",
    "test_cli.py::test_kill_9",
    "test_cli.py::test_bench_writes_summary_and_curves",
    "test_strategies_conformance.py::test_finds_toy_optimum",
    "test_conformance_components.py::test_executor_conformance",
    "test_evaluators_supernet.py::test_a_killed_one_shot_search",
    "test_supernet_nasnet.py::test_enas_micro_search_resumes",
    "test_evaluators_supernet.py::test_shared_weights_learn",
    "test_strategies_reinforce.py::test_searches_a_space_with_skip_links",
    "test_store_cost",
    "test_train_distributed.py::test_a_killed_two_process",
    "test_train_distributed.py::test_train_nproc_2",
    "test_train_distributed.py::test_two_process_differentiable",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(key in item.nodeid for key in SLOW):
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)
