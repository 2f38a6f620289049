"""The one progress display: epochs of the evaluation in progress, plain lines off a terminal, silence with -q."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console

from nasforge.cli._common import TRAIN_LOGGER, ProgressDisplay
from nasforge.train.loop import Progress


def _epoch(epoch: int, epochs: int, loss: float) -> None:
    logging.getLogger(TRAIN_LOGGER).info("epoch %d/%d", epoch, epochs,
                                         extra={"train_progress": Progress(epoch, epochs, 5, 5, loss, 0.5, 0.1, True)})


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fit_reports_each_epoch_to_the_log_with_its_numbers(caplog: pytest.LogCaptureFixture) -> None:
    from nasforge.train import Normalise, TensorSet
    from nasforge.train.loop import TrainConfig, fit

    caplog.set_level(logging.INFO, logger=TRAIN_LOGGER)
    g = torch.Generator().manual_seed(0)
    data = TensorSet(torch.randn(16, 1, 4, 4, generator=g), torch.randint(0, 2, (16,), generator=g))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    fit(model, data, Normalise(torch.zeros(1), torch.ones(1), 1.0), TrainConfig(epochs=2, batch_size=8), generator=g)
    reported = [r.train_progress for r in caplog.records if hasattr(r, "train_progress")]
    assert [(p.epoch, p.epochs, p.end_of_epoch) for p in reported] == [(1, 2, True), (2, 2, True)]


def test_off_a_terminal_the_progress_is_plain_periodic_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out, clock = io.StringIO(), _Clock()
    with ProgressDisplay(Console(file=out), "rs on nb201", 3, every_s=10, clock=clock) as bar:
        _epoch(1, 2, 2.25)  # the first line at once
        clock.now = 4
        _epoch(2, 2, 1.5)  # within 10 s: no line
        bar.update(completed=1, status="best reward 50.000")
        clock.now = 12
        _epoch(1, 2, 2.0)
        clock.now = 15
        bar.update(completed=2)
    lines = [r.getMessage() for r in caplog.records if r.name == "nasforge.progress"]
    assert lines == ["rs on nb201: 0/3, 0:00:00  trial 1: epoch 1/2 loss 2.250",
                     "rs on nb201: 1/3, 0:00:12  trial 2: epoch 1/2 loss 2.000  best reward 50.000",
                     "rs on nb201: 2/3, 0:00:15  best reward 50.000"]  # the last state, at the end
    assert not [r for r in caplog.records if r.name == TRAIN_LOGGER]  # shown by the display, not logged again
    assert out.getvalue() == ""  # no bar


def test_on_a_terminal_the_bar_shows_the_epoch_of_the_evaluation_in_progress(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # as the command line logs
    out = io.StringIO()
    ticks = []
    with ProgressDisplay(Console(file=out, force_terminal=True), "rs on nb201", 3,
                         tick=lambda: ticks.append(1)) as bar:
        assert bar.live
        bar.update(completed=1, status="best reward 50.000")
        _epoch(3, 4, 0.8125)
        assert bar.status_text() == "trial 2: epoch 3/4 loss 0.812  best reward 50.000"
        bar.update(completed=2)
        assert bar.status_text() == "best reward 50.000"
    assert "rs on nb201" in out.getvalue() and len(ticks) == 3
    assert not logging.getLogger(TRAIN_LOGGER).filters  # nothing left behind


def test_quiet_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    out = io.StringIO()
    with ProgressDisplay(Console(file=out, force_terminal=True), "x", 3, quiet=True) as bar:
        _epoch(1, 2, 1.0)
        bar.update(completed=3)
    assert out.getvalue() == "" and not caplog.records


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "nasforge", *args], env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def _train_search(out: Path) -> list[str]:
    return ["search", "--space", "nb201", "--evaluator", "train", "--dataset", "digits", "--strategy", "rs",
            "--budget", "2", "--out", str(out), "--set", "evaluator.epochs=2", "--set",
            "evaluator.model_args={C: 4, N: 1}", "--set", "evaluator.fraction=0.25"]


def test_a_training_search_in_a_log_file_shows_its_epochs_and_no_bar(tmp_path: Path) -> None:
    done = _cli(*_train_search(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert "trial 1: epoch 1/2 loss" in done.stderr
    assert "torch uses 1 CPU thread: OMP_NUM_THREADS=1" in done.stderr
    assert "━" not in done.stderr and "\x1b[" not in done.stderr  # no bar, no terminal codes
    assert "results in" in done.stderr


def test_quiet_command_is_silent(tmp_path: Path) -> None:
    done = _cli("-q", *_train_search(tmp_path / "run"))
    assert done.returncode == 0 and done.stderr == "" and done.stdout == ""
    assert (tmp_path / "run" / "result.json").exists()


def test_a_resumed_search_counts_on_from_what_it_had_done(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _cli("search", "--space", "toy", "--evaluator", "toy", "--strategy", "rs", "--budget", "5", "--out", str(run))
    assert first.returncode == 0, first.stderr
    resumed = _cli("search", "--resume", str(run), "--budget", "8")
    assert resumed.returncode == 0, resumed.stderr
    lines = [line for line in resumed.stderr.splitlines() if "rs on toy:" in line]
    assert lines and "rs on toy: 5/8" in lines[0], resumed.stderr  # not 0/8 until the first new evaluation
