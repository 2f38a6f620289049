"""CPU threads: which count a process chooses, how it changes while a command runs, and where it is recorded."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nasforge.cli import main
from nasforge.config import RunConfig
from nasforge.errors import ConfigError
from nasforge.testing.tables import write_nb201_table
from nasforge.threads import ThreadTuner, choose_threads, free_cores, worker_threads


@pytest.fixture(autouse=True)
def _one_thread_after() -> None:
    yield
    torch.set_num_threads(1)  # what conftest set: the commands these tests run change it


def test_explicit_count_wins_then_the_environment_then_the_worker_rule() -> None:
    env = {"OMP_NUM_THREADS": "3"}
    assert choose_threads(2, environ=env, worker_threads=1, available=8, free=8).threads == 2
    assert choose_threads(None, environ=env, worker_threads=1, available=8, free=8).threads == 3
    worker = choose_threads(None, environ={}, worker_threads=2.0, available=8, free=0)
    assert worker.threads == 2 and not worker.automatic
    with pytest.raises(ValueError):
        choose_threads(0)


@pytest.mark.parametrize("value", ["zero", "0", "-2", " "])
def test_a_bad_omp_num_threads_is_ignored(value: str, caplog: pytest.LogCaptureFixture) -> None:
    choice = choose_threads(environ={"OMP_NUM_THREADS": value}, available=2, free=2)
    assert choice.threads == 2 and choice.automatic
    assert value.strip() == "" or "ignored" in caplog.text


@pytest.mark.parametrize("available, free, threads", [(2, 2, 2), (2, 1, 1), (2, 0, 1), (1, 2, 1), (8, 3, 3)])
def test_automatic_count_is_the_available_cores_other_work_leaves_free(available: int, free: int, threads: int) -> None:
    choice = choose_threads(environ={}, available=available, free=free)
    assert choice.threads == threads and choice.automatic


@pytest.mark.parametrize("load, free", [(0.0, 2), (0.2, 2), (0.3, 1), (1.0, 1), (1.5, 0), (5.8, 0)])
def test_a_core_is_free_only_while_the_load_leaves_most_of_it(load: float, free: int) -> None:
    # two threads beside a partly busy core are far slower than one thread: a core counts as busy early
    assert free_cores(load, cores=2) == free


class _Machine:
    """Fake clock and CPU counters: ``run(seconds, others=cores busy elsewhere, own=cores we used)``."""

    def __init__(self) -> None:
        self.now, self.busy, self.own = 0.0, 0.0, 0.0

    def run(self, seconds: float, others: float, own: float) -> None:
        self.now += seconds
        self.busy += seconds * (others + own)
        self.own += seconds * own

    def counters(self) -> tuple[float, float]:
        return self.busy, self.own


def test_tuner_follows_other_processes_that_start_and_stop() -> None:
    machine, applied = _Machine(), []
    tuner = ThreadTuner(2, available=2, cores=2, every_s=10, clock=lambda: machine.now,
                        counters=machine.counters, apply=applied.append)
    machine.run(5, others=1.0, own=1.0)
    assert tuner.check() == 2 and applied == []  # not yet time to look
    machine.run(6, others=1.0, own=1.0)
    assert tuner.check() == 1 and applied == [1]  # another process took a core
    machine.run(11, others=0.0, own=1.0)  # our own use does not count against us
    assert tuner.check() == 2 and applied == [1, 2]
    machine.run(11, others=0.1, own=2.0)
    assert tuner.check() == 2 and applied == [1, 2]


def test_tuner_without_counters_keeps_the_count() -> None:
    now = [0.0]
    tuner = ThreadTuner(2, available=2, cores=2, every_s=1, clock=lambda: now[0], counters=lambda: None,
                        apply=lambda n: pytest.fail("nothing to go by"))
    now[0] = 5
    assert tuner.check() == 2


def test_worker_threads_come_from_the_run_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert worker_threads(RunConfig(cpus_per_trial=2.0)) == 2
    assert worker_threads(RunConfig(cpus_per_trial=0.5)) == 1
    assert worker_threads(RunConfig(threads=3)) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert worker_threads(RunConfig(cpus_per_trial=2.0)) == 4


def test_run_config_rejects_fewer_than_one_thread() -> None:
    with pytest.raises(ConfigError, match="threads: must be at least 1"):
        RunConfig(threads=0)


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("table") / "fake-nb201.csv")


def _search(table: Path, out: Path, *extra: str) -> list[str]:
    return ["search", "--space", "nb201", "--benchmark", str(table), "--strategy", "rs", "--budget", "5",
            "--out", str(out), *extra]


def test_threads_flag_is_applied_logged_and_recorded(table: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nasforge.threads")
    assert main(_search(table, tmp_path / "run", "--threads", "2")) == 0
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["threads"] == 2
    assert torch.get_num_threads() == 2
    assert "torch uses 2 CPU threads: asked for (--threads)" in caplog.text
    assert "threads: 2" in (tmp_path / "run" / "config.yaml").read_text()


def test_resume_may_use_other_threads(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nasforge.run.rundir import prepare_run_dir

    out = tmp_path / "run"
    assert main(_search(table, out, "--threads", "2")) == 0
    assert main(["search", "--resume", str(out), "--threads", "1"]) == 0, capsys.readouterr().err
    assert torch.get_num_threads() == 1
    config = RunConfig(space="nb201", strategy="rs", benchmark=str(table), budget=5)
    prepare_run_dir(tmp_path / "other", config).close()
    prepare_run_dir(tmp_path / "other", replace(config, threads=3)).close()  # the same run, run otherwise


def test_bad_thread_counts_are_one_line_and_exit_2(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(_search(table, tmp_path / "a", "--threads", "0")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads: must be at least 1" in err[0]
    config = tmp_path / "c.yaml"
    config.write_text("threads: 0\n")
    assert main(_search(table, tmp_path / "b", "--config", str(config))) == 2
    assert "threads: must be at least 1" in capsys.readouterr().err


def test_a_parallel_executor_gives_each_worker_its_cpus_per_trial(table: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert main(_search(table, tmp_path / "run", "--executor", "process", "--workers", "2")) == 0
    assert json.loads((tmp_path / "run" / "meta.json").read_text())["threads"] == 1
