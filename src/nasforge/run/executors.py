"""Executors run evaluations; the search loop talks to them through submit / wait only.

An executor is asynchronous by contract: ``submit`` queues an evaluation, ``wait`` returns at least
one finished evaluation (in the order they finished). The sequential executor evaluates in the
calling process; parallel and distributed executors plug in behind the same interface.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass

from ..arch import Architecture
from ..errors import ReplicaError
from ..evaluators.base import Evaluator
from ..registry import EXECUTORS
from ..result import Result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    trial_id: int
    arch: Architecture
    fidelity: float | None
    seed: int


@dataclass(frozen=True)
class Done:
    """A finished evaluation. ``error_kind`` marks infrastructure failures the loop may retry:
    ``"exception"`` (the evaluator raised), ``"timeout"`` or ``"lost"`` (the worker or its node died);
    a failed result the evaluator returned itself (a NaN loss, say) is final and has no kind."""

    trial_id: int
    result: Result
    time_s: float
    error_kind: str | None = None
    worker: str = ""


def evaluate_safely(evaluator: Evaluator, job: Job) -> Done:
    """Run one job; an exception becomes a failed result instead of ending the search."""
    start = time.perf_counter()
    try:
        result = evaluator.evaluate(job.arch, job.fidelity, job.seed)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        if _replicated():
            raise ReplicaError(f"evaluation of {job.arch} failed in a data-parallel replica ({exc}); every replica "
                               "stops, and the search resumes from its last checkpoint with --resume") from exc
        log.warning("evaluation of %s failed: %s", job.arch, exc)
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return Done(job.trial_id, Result.failure(detail), time.perf_counter() - start, "exception")
    return Done(job.trial_id, result, time.perf_counter() - start)


def _replicated() -> bool:
    """Whether this process is one of several data-parallel replicas (a process group is up). They take every
    step together, so one that retried an evaluation or recorded it as failed would wait for the others in a
    collective they never reach, or take steps they do not; and a replica that died leaves the others' next
    collective failing. Either way the evaluation's failure ends the search on every replica."""
    if "torch.distributed" not in sys.modules:  # not imported by a search that never joined a group
        return False
    from ..train.distributed import Replicas

    return Replicas.current() is not None


class Executor(ABC):
    """Runs evaluation jobs for the search loop.

    Registered factories are called as ``factory(evaluator, run_config)``: in-process executors use the
    evaluator, out-of-process ones build their own from the config once per worker.
    """

    n_workers: int = 1

    @abstractmethod
    def submit(self, job: Job) -> None:
        """Queue one evaluation."""

    @abstractmethod
    def wait(self) -> list[Done]:
        """Block until at least one queued evaluation finished; return the finished ones."""

    @abstractmethod
    def pending(self) -> int:
        """Evaluations submitted and not yet returned by :meth:`wait`."""

    def close(self) -> None:
        """Stop workers."""


@EXECUTORS.register("sequential", in_process=True, parallel=False, distributed=False)
class SequentialExecutor(Executor):
    """Evaluates each job in the calling process, one at a time."""

    def __init__(self, evaluator: Evaluator, config: object = None) -> None:
        self.evaluator = evaluator
        self.n_workers = 1
        self.queue: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def wait(self) -> list[Done]:
        if not self.queue:
            raise RuntimeError("wait() with nothing submitted")
        return [evaluate_safely(self.evaluator, self.queue.popleft())]

    def pending(self) -> int:
        return len(self.queue)
