"""``--nproc N``: run a command as N data-parallel replicas on this machine, as ``torchrun`` would.

The launcher runs ``nasforge <the same arguments>`` N times with torchrun's environment variables (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``...) and waits for them; each replica then joins the process
group (:func:`nasforge.train.distributed.init_from_env`). On Linux the replicas are forks of the launcher, which
has imported torch and nasforge already (seconds that a new ``python -m nasforge`` would spend again before any
replica starts working); elsewhere, or once CUDA is initialised, new processes. ``torchrun --nproc-per-node N -m
nasforge ...`` gives the same replicas, and runs across machines with its rendezvous. Unless ``--threads`` says
otherwise, each replica gets an equal part of the free cores, so that N replicas never oversubscribe the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("nasforge.launch")

#: environment variable naming the file where a replica started by ``--nproc`` writes why it ended (an error, an
#: interruption); the launcher then says each distinct reason once instead of once per replica
REPORT_FILE = "NASFORGE_REPORT_FILE"

#: seconds a replica has to end after the launcher's SIGINT or SIGTERM before it is killed (torchrun waits as long):
#: code waiting in C++ (a collective whose peer hangs) never runs Python's handlers
STOP_GRACE_S = 30.0


def add_nproc_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="train data-parallel in N processes on this machine (torch.distributed: gloo on the CPU, "
                        "NCCL on CUDA); torchrun --nproc-per-node N -m nasforge ... does the same and spans machines")


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def replica_threads(nproc: int, threads: int | None) -> int:
    """Threads per replica: ``--threads`` if given, else an equal part of the cores the load leaves free."""
    if threads:
        return threads
    from ..threads import free_cores

    return max(1, free_cores() // nproc)


def launch(argv: Sequence[str], nproc: int, threads: int | None = None) -> int:
    """Run ``nasforge argv`` as ``nproc`` replicas; the exit code is the first non-zero one, else 0.

    A replica that fails stops the others (they would wait for it forever in the next all-reduce)."""
    from ..errors import ConfigError
    from ..train.distributed import free_port, replica_env

    if nproc < 1:
        raise ConfigError(f"--nproc: must be at least 1, got {nproc}")
    port, per = free_port(), replica_threads(nproc, threads)
    log.info("starting %d data-parallel replicas, %d CPU thread%s each", nproc, per, "" if per == 1 else "s")
    args = without_nproc(argv)
    procs: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="nasforge-launch-") as tmp:
        reports = [Path(tmp) / f"rank{rank}.txt" for rank in range(nproc)]
        for rank in range(nproc):
            env = {**replica_env(rank, nproc, port), "OMP_NUM_THREADS": str(per), REPORT_FILE: str(reports[rank])}
            if _can_fork():
                procs.append(_fork(args, env))
            else:
                procs.append(subprocess.Popen([sys.executable, "-m", "nasforge", *args], env={**os.environ, **env},
                                              preexec_fn=_die_with_parent if sys.platform == "linux" else None))
        try:
            code = _wait(procs)
        except KeyboardInterrupt:
            _stop(procs, signal.SIGINT)
            raise  # the launcher says it was interrupted, and how to resume
        _relay(reports)
    return code


def _relay(reports: list[Path]) -> None:
    """Say on stderr why the replicas ended, each distinct reason once (with its rank when they differ)."""
    lines = {rank: path.read_text(encoding="utf-8").splitlines() for rank, path in enumerate(reports) if path.exists()}
    distinct = {line for found in lines.values() for line in found}
    said: set[str] = set()
    for rank, found in lines.items():
        for line in found:
            if line not in said:
                said.add(line)
                print(line if len(distinct) == 1 else f"{line} (replica {rank})", file=sys.stderr)


def _can_fork() -> bool:
    """Whether replicas may be forks of this process: Linux (fork is the platform's way; macOS' system libraries
    are not fork-safe), and no CUDA context to inherit."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    torch = sys.modules.get("torch")
    return torch is None or not torch.cuda.is_initialized()


class _Forked:
    """A forked replica, with the part of :class:`subprocess.Popen` the launcher uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:  # reaped already
                self.returncode = 1
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)


def _die_with(launcher: int) -> None:
    """Linux: end this replica when the launcher dies (even by SIGKILL, which gives it no chance to stop them).
    Otherwise the replicas would search on unseen to the end of the budget, or, one of them gone, wait in a
    collective until gloo's timeout, deaf to SIGTERM inside the C call."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux' libc: the replicas end as before
        return
    if os.getppid() != launcher:  # it died before the request took effect
        os._exit(1)


def _die_with_parent() -> None:
    _die_with(os.getppid())


def _fork(args: list[str], env: dict[str, str]) -> _Forked:
    """Run ``nasforge args`` in a fork of this process with ``env`` added to its environment."""
    sys.stdout.flush()
    sys.stderr.flush()
    launcher = os.getpid()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:  # the replica: never return into the launcher's code
        _die_with(launcher)
        os.environ.update(env)
        sys.argv = [sys.argv[0], *args]
        from . import main

        code = main(args)
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _stop(procs: list[Any], sig: int, grace: float = STOP_GRACE_S) -> None:
    """Send ``sig`` to the replicas still running, and SIGKILL those still running ``grace`` seconds later."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            log.warning("replica (pid %d) still running %g s after the signal: killed", p.pid, grace)
            p.send_signal(signal.SIGKILL)
        p.wait()


def _wait(procs: list[Any]) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            _stop(procs, signal.SIGTERM)
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)
