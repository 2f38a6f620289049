"""Pieces shared by the ``search`` and ``bench`` commands: run-config flags and the progress display."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import RunConfig, load_yaml, make_run_config
from ..errors import ConfigError
from ..registry import EVALUATORS

#: flags that map one to one onto RunConfig fields
RUN_FLAGS = ("space", "strategy", "evaluator", "benchmark", "fidelity", "budget", "epochs", "seed", "executor", "workers",
             "trial_timeout", "max_retries", "ray_address", "cpus_per_trial", "gpus_per_trial",
             "dataset", "data", "device", "cache_dir")


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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. strategy.population=50 or evaluator.epochs=3 (repeatable)")


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
    if data.get("epochs") is not None and getattr(args, "budget", None) is not None:
        raise ConfigError("--epochs and --budget: give the length of a one-shot search one way, not both")
    space = data.get("space", RunConfig.space)
    if getattr(args, "evaluator", None) is None and "evaluator" not in data:
        guess = default_evaluator(space, data.get("benchmark"))
        if guess:
            data["evaluator"] = guess
    return make_run_config(data, args.overrides, source=getattr(args, "config", None) or "")


def progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )
