"""Local parallel evaluation in worker processes that survive hangs and crashes.

Each worker process builds its own evaluator from the run config once (a table is parsed, a data set
loaded, once per worker, not per evaluation) and then evaluates the jobs it is sent. A worker that
exceeds the trial timeout is killed and replaced; one that dies is replaced; either way the job comes
back as a failed :class:`Done` with ``error_kind`` "timeout" or "lost", which the loop may retry.

Workers ignore Ctrl-C (:func:`become_worker`): the parent alone reacts to it, records what it has and stops
them (:meth:`ProcessExecutor.close`); on Linux they also end with the parent, should it be killed outright.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Iterable

from ..errors import ConfigError
from ..interrupts import deferred_interrupts, ignore_ctrl_c, workers_ignore_ctrl_c
from ..result import Result
from ..threads import worker_threads
from .executors import EXECUTORS, Done, Executor, Job, evaluate_safely

log = logging.getLogger(__name__)

#: how long a worker may take to start (import torch, load a table or data set)
STARTUP_GRACE_S = 600.0
#: workers in a row that died or timed out while starting, after which the executor gives up
MAX_START_FAILURES = 3
#: how long stopped workers have to end before they are killed
STOP_GRACE_S = 5.0


def become_worker() -> None:
    """First thing in a worker process: ignore Ctrl-C (the parent stops its workers), and on Linux end with the
    parent even if it is killed outright (SIGKILL), instead of evaluating on, unseen, to the end of its job."""
    ignore_ctrl_c()
    parent = mp.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:  # the parent is the thread that started the worker: the main one, or the one that runs the search
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent.pid:  # it died before the request took effect
        os._exit(1)


def end_processes(procs: Iterable[BaseProcess], grace_s: float = STOP_GRACE_S) -> None:
    """Wait up to ``grace_s`` in all for processes told (or made) to end, then kill those still running.

    It waits for their sentinels, not with ``join``: a process pool's own thread may reap them meanwhile, and a
    ``join`` that loses that race returns at once, the process looking alive."""
    running: dict[Any, BaseProcess] = {}
    for p in procs:
        try:
            running[p.sentinel] = p
        except ValueError:  # never started, or closed
            continue
    deadline = time.monotonic() + grace_s
    while running and time.monotonic() < deadline:
        for sentinel in wait(list(running), max(deadline - time.monotonic(), 0.0)):
            running.pop(sentinel).join(grace_s)  # it has ended: this reaps it, unless another thread did
    for p in running.values():  # its sentinel not ready: it has not exited, so its pid is still its own
        log.warning("%s did not end within %g s; killing it", p.name, grace_s)
        p.kill()
        p.join(grace_s)


def _worker_main(conn: Connection, config: Any) -> None:
    become_worker()
    import torch

    from ..factory import create_evaluator, create_space

    torch.set_num_threads(worker_threads(config))
    space = create_space(config.space, **config.space_args)
    evaluator = create_evaluator(config, space)
    try:
        conn.send("ready")
        while True:
            job = conn.recv()
            if job is None:
                break
            conn.send(evaluate_safely(evaluator, job))
    except (EOFError, OSError):  # the parent is gone without a word: no one to report to
        return
    evaluator.close()


class _Worker:
    def __init__(self, ctx: Any, config: Any, name: str) -> None:
        self.name = name
        self.conn: Connection
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, config), name=name, daemon=True)
        with workers_ignore_ctrl_c():
            self.proc.start()
        child.close()
        self.ready = False
        self.job: Job | None = None
        self.started = time.monotonic()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()


@EXECUTORS.register("process", in_process=False, parallel=True, distributed=False)
class ProcessExecutor(Executor):
    """Evaluations in ``workers`` local processes (spawned), with timeouts and crash recovery."""

    def __init__(self, evaluator: Any, config: Any) -> None:
        self.config = config
        self.n_workers = config.workers
        self.timeout = config.trial_timeout
        self.ctx = mp.get_context("spawn")
        self.queue: deque[Job] = deque()
        self.workers: list[_Worker] = []
        self._spawned = 0
        self._start_failures = 0  # in a row: a worker that becomes ready resets it

    def _spawn(self) -> _Worker:
        self._spawned += 1
        return _Worker(self.ctx, self.config, f"nasforge-worker-{self._spawned}")

    def submit(self, job: Job) -> None:
        while len(self.workers) < self.n_workers:
            self.workers.append(self._spawn())
        self.queue.append(job)
        self._dispatch()

    def _dispatch(self) -> None:
        for w in self.workers:
            if w.ready and w.job is None and self.queue:
                w.job = self.queue.popleft()
                w.started = time.monotonic()
                w.conn.send(w.job)

    def pending(self) -> int:
        return len(self.queue) + sum(w.job is not None for w in self.workers)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        self.workers[self.workers.index(w)] = self._spawn()

    def _lost(self, w: _Worker, kind: str, message: str) -> Done | None:
        if not w.ready:  # a worker that cannot start would otherwise be replaced forever
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                w.kill()
                raise ConfigError(
                    f"executor: the worker processes could not start ({self._start_failures} attempts in a row; "
                    f"the last: {message}); run with --executor sequential to see the evaluator's error"
                )
            log.warning("%s could not start (%s); starting another", w.name, message)
        job = w.job
        self._replace(w)
        if job is None:
            return None
        return Done(job.trial_id, Result.failure(message), time.monotonic() - w.started, kind, w.name)

    def _deadline(self, w: _Worker) -> float:
        if not w.ready:
            return w.started + STARTUP_GRACE_S
        return w.started + self.timeout if (self.timeout and w.job is not None) else float("inf")

    def wait(self) -> list[Done]:
        if not self.pending():
            raise RuntimeError("wait() with nothing submitted")
        out: list[Done] = []
        while not out:
            waits: dict[Any, _Worker] = {w.conn: w for w in self.workers}
            waits.update({w.proc.sentinel: w for w in self.workers})
            deadline = min(self._deadline(w) for w in self.workers)
            timeout = None if deadline == float("inf") else max(deadline - time.monotonic(), 0.0)
            for obj in wait(list(waits), timeout):
                w = waits[obj]
                if w not in self.workers:
                    continue  # already replaced in this round
                if obj is w.conn and w.conn.poll():
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                    if msg == "ready":
                        w.ready = True
                        self._start_failures = 0
                        continue
                    if isinstance(msg, Done):
                        out.append(Done(msg.trial_id, msg.result, msg.time_s, msg.error_kind, w.name))
                        w.job = None
                        continue
                if not w.proc.is_alive():
                    done = self._lost(w, "lost", f"worker {w.name} died (exit code {w.proc.exitcode})")
                    if done:
                        out.append(done)
            now = time.monotonic()
            for w in list(self.workers):
                if now >= self._deadline(w):
                    what = f"evaluation exceeded the trial timeout of {self.timeout:g} s" if w.ready else "worker start-up timed out"
                    done = self._lost(w, "timeout", what)
                    if done:
                        out.append(done)
            self._dispatch()
        return out

    def close(self) -> None:
        """Stop the workers: an idle one is told to end; one still starting or evaluating is killed at once. Its
        evaluation would be thrown away: the search, stopped (Ctrl-C) or failed, evaluates that trial again when
        it resumes (one that ended normally has none in flight)."""
        with deferred_interrupts():  # a second Ctrl-C (a terminal's, then timeout's own) must not leave workers
            for w in self.workers:
                try:
                    if w.ready and w.job is None and w.proc.is_alive():
                        w.conn.send(None)
                        continue
                except OSError:
                    pass
                if w.proc.is_alive():
                    w.proc.kill()
            end_processes([w.proc for w in self.workers])
            for w in self.workers:
                w.conn.close()
            self.workers = []
