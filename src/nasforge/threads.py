"""How many CPU threads torch trains with in this process.

Torch's default is one intra-op thread per core. When other processes use those cores too, its OpenMP
kernels wait for each other at every operation, and training slows down by an order of magnitude or more
(``docs/benchmarks.md``, "CPU threads": a 2-epoch final training took over 30x longer with two threads than
with one while another process kept one of the two cores busy). So nasforge chooses, in this order:

1. an explicit count (``--threads N``, ``threads: N`` in a config);
2. ``OMP_NUM_THREADS`` from the environment;
3. in a worker of a parallel executor (``--executor process`` or ``ray``), ``cpus_per_trial`` (default 1);
4. otherwise the cores this process may run on (CPU affinity) that the 1-minute load average leaves free,
   at least one. The load average lags a minute behind a process that starts or stops, so a command that
   chose this way checks again while it runs (:class:`ThreadTuner`): from the CPU time other processes used
   since its last check.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

ENV_VAR = "OMP_NUM_THREADS"

#: a core counts as free while less than this much of it is in use (load average): two threads on a machine
#: with one core partly busy are far slower than one thread, one thread on an idle machine at most ~2x slower.
BUSY_SLACK = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and why it was chosen (for the log line)."""

    threads: int
    reason: str
    automatic: bool = False  # chosen from the machine's load (rule 4), so worth checking again later


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity where the platform has one, else the machine's cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return max(1, os.cpu_count() or 1)


def free_cores(load: float | None = None, cores: int | None = None) -> int:
    """Cores of the machine that the 1-minute load average ``load`` leaves free (may be 0)."""
    total = cores if cores is not None else (os.cpu_count() or 1)
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows): assume an idle machine
            load = 0.0
    return max(0, math.floor(total - load + BUSY_SLACK))


def _positive(value: str, where: str) -> int | None:
    try:
        n = int(value.strip())
    except ValueError:
        log.warning("%s=%r is not a whole number; ignored", where, value)
        return None
    if n < 1:
        log.warning("%s=%r must be at least 1; ignored", where, value)
        return None
    return n


def choose_threads(
    requested: int | None = None,
    *,
    worker_threads: float | None = None,
    environ: Mapping[str, str] | None = None,
    available: int | None = None,
    free: int | None = None,
) -> ThreadChoice:
    """The number of intra-op threads for this process (see the module docstring for the rules).

    ``worker_threads`` is set in (and for) the workers of a parallel executor: their ``cpus_per_trial``.
    ``available`` and ``free`` default to :func:`available_cores` and :func:`free_cores`.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be at least 1, got {requested}")
        return ThreadChoice(requested, "asked for (--threads)")
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR, "").strip():
        from_env = _positive(env[ENV_VAR], ENV_VAR)
        if from_env is not None:
            return ThreadChoice(from_env, f"{ENV_VAR}={from_env}")
    if worker_threads is not None:
        n = max(1, int(worker_threads))
        return ThreadChoice(n, f"one worker of several ({n} per worker, cpus_per_trial)")
    avail = available if available is not None else available_cores()
    idle = free if free is not None else free_cores()
    n = max(1, min(avail, idle))
    if n < avail:
        return ThreadChoice(n, f"{avail} cores available, {idle} not busy (1-minute load average)", True)
    return ThreadChoice(n, f"{avail} cores available and not busy", True)


def apply_threads(choice: ThreadChoice, *, interop: bool = True) -> ThreadChoice:
    """Make torch use ``choice.threads`` intra-op threads (and, once per process, as many inter-op threads).

    Inter-op threads can only be set before torch runs its first parallel work; later calls leave them.
    """
    import torch

    torch.set_num_threads(choice.threads)
    if interop:
        try:
            torch.set_num_interop_threads(choice.threads)
        except RuntimeError:  # already set, or torch already ran inter-op work: keep what it has
            pass
    log.info("torch uses %d CPU thread%s: %s", choice.threads, "" if choice.threads == 1 else "s", choice.reason)
    return choice


def configure_threads(
    requested: int | None = None, *, worker_threads: float | None = None, environ: Mapping[str, str] | None = None
) -> ThreadChoice:
    """Choose (:func:`choose_threads`) and apply (:func:`apply_threads`) the thread count."""
    return apply_threads(choose_threads(requested, worker_threads=worker_threads, environ=environ))


def cpu_counters() -> tuple[float, float] | None:
    """CPU seconds used so far by the whole machine (all cores, ``/proc/stat``) and by this process; None where
    the machine's counters cannot be read (not Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    # user nice system idle iowait irq softirq [steal]: all but idle and iowait is work
    values = [int(v) for v in fields[1:9]]
    busy = sum(values) - values[3] - values[4]
    own = os.times()
    return busy / ticks, own.user + own.system


class ThreadTuner:
    """Re-chooses an automatic thread count while a command runs: call :meth:`check` often (after each
    evaluation, each training step); at most every ``every_s`` seconds it looks at the CPU time that other
    processes used since the last look and moves torch to the cores they left free (at least 1, at most the
    cores available).

    Only for the automatic choice: an explicit count, ``OMP_NUM_THREADS`` or a worker's count is kept.
    """

    def __init__(self, threads: int, *, available: int | None = None, cores: int | None = None,
                 every_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 counters: Callable[[], tuple[float, float] | None] = cpu_counters,
                 apply: Callable[[int], None] | None = None) -> None:
        self.threads = threads
        self.available = available if available is not None else available_cores()
        self.cores = cores if cores is not None else (os.cpu_count() or 1)
        self.every_s, self.clock, self.counters = every_s, clock, counters
        self._apply = apply or _set_threads
        self._last = (clock(), counters())

    def check(self) -> int:
        """The thread count now in use (changed if other processes' use of the CPU asks for it)."""
        now = self.clock()
        if now - self._last[0] < self.every_s:
            return self.threads
        counts = self.counters()
        then, before = self._last
        self._last = (now, counts)
        if counts is None or before is None:
            return self.threads
        others = max(0.0, (counts[0] - before[0]) - (counts[1] - before[1])) / (now - then)
        wanted = max(1, min(self.available, math.floor(self.cores - others + BUSY_SLACK)))
        if wanted != self.threads:
            log.info("torch now uses %d CPU thread%s: other processes used %.1f of %d cores lately", wanted,
                     "" if wanted == 1 else "s", others, self.cores)
            self._apply(wanted)
            self.threads = wanted
        return self.threads


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def worker_threads(config: object) -> int:
    """Threads for a worker of a parallel executor (or of ``nasforge bench``) running ``config``: its ``threads``,
    else ``OMP_NUM_THREADS``, else its ``cpus_per_trial`` (at least 1). Chooses only; the worker applies it."""
    choice = choose_threads(getattr(config, "threads", None),
                            worker_threads=float(getattr(config, "cpus_per_trial", 1.0) or 1.0))
    log.debug("worker: %d CPU threads (%s)", choice.threads, choice.reason)
    return choice.threads
