"""Ctrl-C and SIGTERM wait for the end of a commit and its bookkeeping (nasforge.interrupts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import nasforge as nf
from nasforge.interrupts import deferred_interrupts, workers_ignore_ctrl_c
from nasforge.result import Result
from nasforge.run import RunStore
from nasforge.run import store as store_module


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


def test_the_block_sees_the_signals_it_holds() -> None:
    """A long block (a bench waiting for its jobs) looks at them to stop early."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with deferred_interrupts() as held:
            assert held == []
            os.kill(os.getpid(), signal.SIGTERM)
            assert held == [signal.SIGTERM] and seen == []
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


needs_sigmask = pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")


@needs_sigmask
def test_a_ctrl_c_while_workers_start_is_raised_after_not_lost() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with pytest.raises(KeyboardInterrupt):
        with workers_ignore_ctrl_c():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # would have raised here, were it not held
        time.sleep(1)  # pragma: no cover - raised when the block ends
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


#: a fresh interpreter (no resource tracker running yet, whose start unblocks SIGINT) spawns a worker
_SPAWN_A_WORKER = textwrap.dedent("""
    import multiprocessing as mp, os, signal, sys
    from nasforge.interrupts import ignore_ctrl_c, workers_ignore_ctrl_c

    def worker(conn):
        blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        ignore_ctrl_c()
        os.kill(os.getpid(), signal.SIGINT)  # ignored: no KeyboardInterrupt
        conn.send((blocked, signal.getsignal(signal.SIGINT) == signal.SIG_IGN,
                   signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])))

    if __name__ == "__main__":
        ctx = mp.get_context("spawn")
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(theirs,))
        with workers_ignore_ctrl_c():
            proc.start()
        print(mine.recv() if mine.poll(120) else "no answer", signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
        proc.join(30)
        sys.exit(proc.exitcode)
""")


@needs_sigmask
def test_a_worker_starts_deaf_to_ctrl_c_and_then_ignores_it(tmp_path: Path) -> None:
    """Blocked from its very start (a Ctrl-C while it imports would end it with a traceback), ignored once its
    own code runs; the parent's mask is as before."""
    script = tmp_path / "spawn_a_worker.py"
    script.write_text(_SPAWN_A_WORKER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(True,", "True,", "False)", "False"], done.stdout + done.stderr
