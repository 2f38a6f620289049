"""``--nproc N``: run a command as N data-parallel replicas on this machine, as ``torchrun`` would.

The launcher starts ``python -m nasforge <the same arguments>`` N times with torchrun's environment variables
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``...) and waits for them; each replica then joins the
process group (:func:`nasforge.train.distributed.init_from_env`). ``torchrun --nproc-per-node N -m nasforge ...``
gives the same processes, and runs across machines with its rendezvous. Unless ``--threads`` says otherwise,
each replica gets an equal part of the free cores, so that N replicas never oversubscribe the machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger("nasforge.launch")


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
    command = [sys.executable, "-m", "nasforge", *without_nproc(argv)]
    procs = []
    for rank in range(nproc):
        env = {**os.environ, **replica_env(rank, nproc, port), "OMP_NUM_THREADS": str(per)}
        procs.append(subprocess.Popen(command, env=env))
    try:
        return _wait(procs)
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise


def _wait(procs: list[subprocess.Popen]) -> int:
    while True:
        codes = [p.poll() for p in procs]
        failed = [c for c in codes if c not in (None, 0)]
        if failed:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
            return failed[0]
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)
