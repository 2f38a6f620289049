"""Keep Ctrl-C and SIGTERM out of the few steps that must happen together (a commit and its bookkeeping), and
out of worker processes, which their parent stops."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

__all__ = ["deferred_interrupts", "ignore_ctrl_c", "workers_ignore_ctrl_c"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are held back and delivered again when it ends.

    A KeyboardInterrupt raised between a database COMMIT and the bookkeeping that follows it would leave the
    store believing committed writes were still queued (and write them twice), or a transaction open. The block
    gets the list of the signals held so far, so that a long one can see it was asked to stop and end early.
    Signals run their Python handlers in the main thread only, so elsewhere (and where handlers cannot be
    changed) the block runs as it is, and the list stays empty."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    try:
        for s in _SIGNALS:
            signal.signal(s, hold)
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for signum in dict.fromkeys(caught):  # the handlers (or the default action) see it as if it came now
            signal.raise_signal(signum)


@contextlib.contextmanager
def workers_ignore_ctrl_c() -> Iterator[None]:
    """Processes started (spawned) within the block begin with SIGINT blocked, until :func:`ignore_ctrl_c`.

    Ctrl-C at a terminal reaches the whole process group. A worker that reacted to it died with a traceback (while
    it imported or loaded its evaluator) or dropped what it was doing, racing the parent that stops its workers
    anyway; so the parent alone reacts. A blocked signal, unlike a Python handler, stays so across the spawn's exec,
    which covers the worker's start-up before its own code runs. In the parent only this thread blocks it: a
    Ctrl-C meanwhile goes to another thread's handler, or waits for the end of the block, and is never lost."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no process groups to share a Ctrl-C with
        yield
        return
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()  # spawning starts it once, and starting it unblocks SIGINT in this thread
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_ctrl_c() -> None:
    """In a worker process: ignore SIGINT from now on, and let go of the block it started with (if any)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # first: a Ctrl-C pending since the start is discarded, not raised
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
