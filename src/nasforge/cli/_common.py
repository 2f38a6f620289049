"""Pieces shared by the commands: run-config flags, output paths, CPU threads, and the one progress display."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import RunConfig, load_yaml, make_run_config
from ..errors import ConfigError
from ..registry import EVALUATORS

if TYPE_CHECKING:
    from ..threads import ThreadChoice

log = logging.getLogger("nasforge.progress")

#: the logger of the one training loop, whose per-epoch records carry ``train_progress``
TRAIN_LOGGER = "nasforge.train.loop"

#: flags that map one to one onto RunConfig fields
RUN_FLAGS = ("space", "strategy", "evaluator", "benchmark", "fidelity", "budget", "epochs", "seed", "executor", "workers",
             "trial_timeout", "max_retries", "ray_address", "cpus_per_trial", "gpus_per_trial",
             "dataset", "data", "device", "cache_dir", "threads", "objectives", "constraints", "prior",
             "prior_draws")


def add_run_flags(p: argparse.ArgumentParser, *, strategy: bool = True) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config file (flags and --set override it)")
    p.add_argument("--space", help="search space (nasforge list spaces)")
    if strategy:
        p.add_argument("--strategy", help="search strategy (nasforge list strategies)")
    p.add_argument("--evaluator", help="evaluator (default: the table/surrogate for --benchmark)")
    p.add_argument("--benchmark", metavar="PATH", help="tabular or surrogate benchmark, e.g. nb201-cifar10.csv")
    p.add_argument("--dataset", help="data set of a training evaluator: digits (default, shipped), cifar10, folder")
    p.add_argument("--data", metavar="PATH", help="where the data set is (CIFAR-10 folder or .tar.gz)")
    p.add_argument("--device", help="torch device for training: auto (default), cpu, cuda, cuda:1")
    p.add_argument("--cache-dir", metavar="DIR", help="decoded-data cache (default $NASFORGE_CACHE or ~/.cache/nasforge)")
    p.add_argument("--fidelity", type=int, help="training length the strategy sees (a table's epochs, e.g. 12)")
    p.add_argument("--budget", type=int, help="number of evaluations (one-shot: child training steps)")
    p.add_argument("--epochs", type=int, help="one-shot search length in passes over the training split (instead of --budget)")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--executor", help="where evaluations run (nasforge list executors)")
    p.add_argument("--workers", type=int, help="parallel evaluations")
    p.add_argument("--trial-timeout", type=float, metavar="SECONDS", help="replace a worker whose evaluation takes longer")
    p.add_argument("--max-retries", type=int, help="re-runs of an evaluation whose worker raised, timed out or was lost")
    p.add_argument("--ray-address", help="Ray cluster to join ('auto', 'HOST:6379'); default: start a local one")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs reserved per evaluation (Ray; threads per worker)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs reserved per evaluation (Ray)")
    p.add_argument("--prior", help="choose a strategy's initial samples by this evaluator's score: zerocost "
                                   "(settings: --set prior.proxy=nwot)")
    p.add_argument("--prior-draws", type=int, metavar="K", help="with --prior: each initial sample is the best of K (10)")
    add_threads_flag(p)
    p.add_argument("--objective", dest="objectives", action="append", metavar="LIST",
                   help="objectives of a multi-objective search, e.g. accuracy,-params (a leading - minimises; "
                        "with --strategy nsga2 or rs); written to result.json's pareto_front")
    p.add_argument("--constraint", dest="constraints", action="append", metavar="METRIC<=VALUE",
                   help="a bound such as params<=1.5e6 or latency_ms<=5 (repeatable); architectures outside it "
                        "are skipped before training and counted in result.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. strategy.population=50 or evaluator.epochs=3 (repeatable)")
    _show_defaults(p)


def _show_defaults(p: argparse.ArgumentParser) -> None:
    """Append RunConfig's default to the help of each run flag that has one (the flags themselves default to
    None so that a config file's values are not overridden)."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig) if f.default is not dataclasses.MISSING}
    for action in p._actions:
        value = defaults.get(action.dest)
        if action.dest in RUN_FLAGS and value is not None and action.help and "default" not in action.help:
            action.help = f"{action.help} (default {value})"


def default_evaluator(space: str, benchmark: str | None) -> str | None:
    """The evaluator a benchmark path implies for a space (a table or a surrogate that serves it)."""
    if not benchmark:
        return None
    for entry in EVALUATORS:
        if entry.capabilities.get("benchmark") and space in entry.capabilities.get("spaces", ()):
            return entry.name
    return None


def config_from_args(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> RunConfig:
    """RunConfig from an optional YAML file, then the flags given, then ``--set`` overrides."""
    data: dict[str, Any] = load_yaml(args.config) if getattr(args, "config", None) else {}
    for name in RUN_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            data[name] = value
    data.update(extra or {})
    from ..objectives import parse_constraints, parse_objectives

    if getattr(args, "objectives", None):  # checked here, so that an error names the flag
        data["objectives"] = [str(o) for o in parse_objectives(args.objectives, "--objective")]
    parse_constraints(getattr(args, "constraints", None) or (), "--constraint")
    if data.get("epochs") is not None and getattr(args, "budget", None) is not None:
        raise ConfigError("--epochs and --budget: give the length of a one-shot search one way, not both")
    space = data.get("space", RunConfig.space)
    if getattr(args, "evaluator", None) is None and "evaluator" not in data:
        guess = default_evaluator(space, data.get("benchmark"))
        if guess:
            data["evaluator"] = guess
    return make_run_config(data, args.overrides, source=getattr(args, "config", None) or "")


def check_output_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` if a command can write a file there (its directory exists, it is not a directory), else a
    :class:`ConfigError` naming ``flag``: checked before the command does its work, so that bad output paths end
    as one line, not as a traceback after minutes of work."""
    path = Path(path)
    parent = path.parent
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file name")
    if not parent.exists():
        raise ConfigError(f"{flag} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is not a directory")
    if not os.access(path if path.exists() else parent, os.W_OK):
        raise ConfigError(f"{flag} {path}: cannot write there (permission denied)")
    return path


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """``path`` if a command can create it (with its missing parents) or write into it, else a
    :class:`ConfigError` naming ``flag`` (see :func:`check_output_file`)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: exists and is not a directory; choose another {flag}")
    existing = path
    while not existing.exists() and existing != existing.parent:  # the nearest ancestor there already
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is not a directory")
    if not os.access(existing, os.W_OK):
        raise ConfigError(f"{flag} {path}: cannot write in {existing} (permission denied)")
    return path


def add_threads_flag(p: argparse.ArgumentParser) -> None:
    """``--threads N``; the command line applies the thread choice before such a command starts."""
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per training process (default: OMP_NUM_THREADS if set, else one per "
                        "worker of a parallel executor, else the cores not busy with other work)")
    p.set_defaults(choose_threads=True)


def console_for(args: argparse.Namespace) -> Console:
    """The console of a command's messages (stderr); silent with ``-q``."""
    return Console(stderr=True, quiet=bool(getattr(args, "quiet", False)))


def _parallel(executor: str | None) -> bool:
    from ..run import EXECUTORS

    return executor is not None and executor in EXECUTORS and bool(EXECUTORS.get(executor).capabilities.get("parallel"))


def _thread_request(threads: int | None, executor: str | None, cpus_per_trial: float | None) -> tuple[Any, ...]:
    return threads, (cpus_per_trial or 1.0) if _parallel(executor) else None


def apply_threads(args: argparse.Namespace) -> ThreadChoice:
    """Choose and apply torch's CPU threads from a command's flags (see :mod:`nasforge.threads`), and keep the
    choice in ``args.thread_choice`` for :func:`thread_tuner`.

    With a parallel executor this process only coordinates: it takes the workers' count (``cpus_per_trial``).
    """
    from ..errors import ConfigError
    from ..threads import configure_threads

    threads, per_worker = _thread_request(getattr(args, "threads", None), getattr(args, "executor", None),
                                          getattr(args, "cpus_per_trial", None))
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads: must be at least 1, got {threads}")
    args.thread_choice = configure_threads(threads, worker_threads=per_worker)
    return args.thread_choice


def apply_config_threads(args: argparse.Namespace, config: RunConfig) -> None:
    """Choose the threads again when the run config (a YAML file, a resumed run) asks for other ones than the
    flags that :func:`apply_threads` saw at the start."""
    from ..threads import configure_threads

    wanted = _thread_request(config.threads, config.executor, config.cpus_per_trial)
    if wanted != _thread_request(getattr(args, "threads", None), getattr(args, "executor", None),
                                 getattr(args, "cpus_per_trial", None)):
        args.thread_choice = configure_threads(wanted[0], worker_threads=wanted[1])


def thread_tuner(args: argparse.Namespace) -> Callable[[], object] | None:
    """What to call now and then while the command trains, if its thread count was chosen from the machine's
    load (:class:`~nasforge.threads.ThreadTuner`); None when the count is fixed."""
    import torch

    from ..threads import ThreadTuner

    choice = getattr(args, "thread_choice", None)
    return ThreadTuner(torch.get_num_threads()).check if choice is not None and choice.automatic else None


class ProgressDisplay:
    """The progress of a command: a live bar on a terminal, a plain log line at most every ``every_s`` seconds
    elsewhere (logs get no bar fragments), nothing at all with ``quiet``.

    While it is shown, the training loop's per-epoch records become part of its status instead of log lines:
    "trial k: epoch e/E loss x" (``trials=True``: k counts the evaluations, the one in progress being
    ``completed + 1``) or "epoch e/E loss x". ``epochs=False`` only keeps them out of the log.
    ``tick`` is called at every update and epoch (the thread tuner of :func:`thread_tuner`).
    """

    def __init__(self, console: Console, description: str, total: int | None = None, *, quiet: bool = False,
                 live: bool | None = None, every_s: float = 10.0, trials: bool = True, epochs: bool = True,
                 tick: Callable[[], object] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.console, self.description, self.total = console, description, total
        self.quiet, self.every_s, self.trials, self.epochs, self.clock = quiet, every_s, trials, epochs, clock
        self.tick = tick
        self.live = console.is_terminal if live is None else live
        self.completed, self.status, self.training = 0, "", ""
        self._bar: Progress | None = None
        self._task: Any = None
        self._start = self._last_line = 0.0
        self._unshown = False

    def __enter__(self) -> ProgressDisplay:
        self._start = self.clock()
        self._last_line = -float("inf")
        logging.getLogger(TRAIN_LOGGER).addFilter(self._take_epoch)
        if self.quiet:
            return self
        if self.live:
            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, status="")
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(TRAIN_LOGGER).removeFilter(self._take_epoch)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.stop()
        elif self._unshown:
            self._line()

    def update(self, *, completed: int | None = None, advance: int = 0, total: int | None = None,
               status: str | None = None) -> None:
        """Evaluations (or steps) done, the total if it changed, and the status text."""
        done = (self.completed if completed is None else completed) + advance
        if done != self.completed:
            self.training = ""  # that evaluation's epochs are over
        self.completed = done
        self.total = self.total if total is None else total
        self.status = self.status if status is None else status
        self._show()

    def status_text(self) -> str:
        return "  ".join(part for part in (self.training, self.status) if part)

    def _take_epoch(self, record: logging.LogRecord) -> bool:
        p = getattr(record, "train_progress", None)
        if p is None:
            return True
        if self.epochs:
            where = f"trial {self.completed + 1}: " if self.trials else ""
            self.training = f"{where}epoch {p.epoch}/{p.epochs} loss {p.loss:.3f}"
            self._show()
        return False  # shown here, not as a log line

    def _show(self) -> None:
        if self.tick is not None:
            self.tick()
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, total=self.total, status=self.status_text())
        elif self.clock() - self._last_line >= self.every_s:
            self._line()
        else:
            self._unshown = True

    def _line(self) -> None:
        self._last_line, self._unshown = self.clock(), False
        elapsed = datetime.timedelta(seconds=int(self._last_line - self._start))
        count = f"{self.completed}/{self.total}" if self.total is not None else f"{self.completed}"
        log.info("%s: %s, %s  %s", self.description, count, elapsed, self.status_text())
