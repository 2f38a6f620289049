"""Ctrl-C and SIGTERM wait for the end of a commit and its bookkeeping (nasforge.run.interrupts)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import nasforge as nf
from nasforge.result import Result
from nasforge.run import RunStore
from nasforge.run import store as store_module
from nasforge.run.interrupts import deferred_interrupts


def test_ctrl_c_inside_the_block_is_raised_when_it_ends() -> None:
    before = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # many bytecodes: a handler would have run here
                reached.append(1)
        reached.append("after")  # pragma: no cover - the interrupt comes first
    assert reached == [1] * 1000
    assert signal.getsignal(signal.SIGINT) is before


def test_a_held_sigterm_reaches_its_own_handler_once() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_outside_the_main_thread_the_block_runs_as_it_is() -> None:
    result: list[object] = []

    def work() -> None:
        with deferred_interrupts():
            result.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert result == [before]


def test_an_interrupt_right_after_commit_does_not_write_the_trials_twice(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The window of the bug: COMMIT done, the queue not yet emptied. Before, the next flush inserted the same
    rows again and failed with a UNIQUE constraint error, which replaced the interrupt (exit code 1, not 130)."""
    space = nf.create_space("nb201")
    store = RunStore(tmp_path / "run.db")
    original_exit = store_module._Txn.__exit__

    def exit_then_interrupt(self, exc_type, exc, tb) -> None:
        original_exit(self, exc_type, exc, tb)
        if exc_type is None:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(store_module._Txn, "__exit__", exit_then_interrupt)
    arch = space.sample(np.random.default_rng(0))
    with pytest.raises(KeyboardInterrupt):
        store.add_trials([arch])  # written at once (no grouped commits)
    monkeypatch.setattr(store_module._Txn, "__exit__", original_exit)
    (trial,) = store.load(space.from_dict)  # committed once, and no longer queued
    store.record_result(trial, Result(0.5), 1.0)
    store.flush()
    (done,) = store.load(space.from_dict)
    assert done.arch == arch and done.result is not None and done.result.reward == 0.5
    store.close()
