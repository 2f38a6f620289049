"""``nasforge search``: run, or with ``--resume`` continue, one search into a run directory."""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._common import (
    RUN_FLAGS,
    ProgressDisplay,
    add_run_flags,
    apply_config_threads,
    check_output_dir,
    config_from_args,
    console_for,
    thread_tuner,
)
from ._examples import with_examples
from ._launch import add_nproc_flag

log = logging.getLogger(__name__)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _status(trial, record, strategy) -> str:
    """Progress line: the best so far; with a training evaluator (one-shot) also this step's loss and reward,
    and the strategy's own numbers (a policy's baseline and entropy)."""
    best = record.best
    parts = [] if best is None else [f"best reward {_fmt(best.reward)}  test {_fmt(best.result.test_accuracy)}"]
    metrics = trial.result.metrics if trial.result is not None else {}
    if "train_loss" in metrics:
        parts.append(f"loss {_fmt(metrics['train_loss'])}  reward {_fmt(trial.reward)}")
    parts += [f"{name} {_fmt(value)}" for name, value in strategy.status().items()]
    return "  ".join(parts)


def replica_copy(run_dir: Path, dest: Path) -> Path:
    """A private copy of a run directory for a data-parallel replica other than rank 0 to resume from (the
    SQLite store through its backup API, so that a consistent state is copied)."""
    import sqlite3

    from ..run.rundir import DB_FILE, LOCK_FILE

    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns(f"{DB_FILE}*", LOCK_FILE))
    if not (run_dir / DB_FILE).exists():  # created, then stopped before its first record
        return dest
    source = sqlite3.connect(f"file:{run_dir / DB_FILE}?mode=ro", uri=True)
    target = sqlite3.connect(dest / DB_FILE)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dest


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..run.rundir import CONFIG_FILE, check_out, resume_config
    from ..train.distributed import barrier, env_rank, init_from_env, shutdown
    from ..train.loop import resolve_device

    console = console_for(args)
    if args.resume:
        given = [f"--{n.replace('_', '-')}" for n in RUN_FLAGS
                 if n not in ("budget", "threads") and getattr(args, n, None) is not None]
        if given or args.config or args.overrides or args.out:
            raise ConfigError(f"--resume takes the run directory's own config (only --budget may change); "
                              f"drop {', '.join(given) or '--set/--config/--out'}")
        out = Path(args.resume)
        config, done = resume_config(out, args.budget, writer=env_rank() == 0)
        if args.threads is not None:  # how this machine runs it, not what the run is
            config = replace(config, threads=args.threads)
        if done >= config.budget:
            console.print(f"{out}: finished ({done} of {config.budget} evaluations), nothing to do; results in "
                          f"{out / 'result.json'} (continue it with --resume {out} --budget N)",
                          highlight=False, soft_wrap=True)
            return 0
        console.print(f"resuming {out}: {done} of {config.budget} evaluations done", highlight=False, soft_wrap=True)
    else:
        if not args.out:
            raise ConfigError("--out: a run directory is required (or --resume DIR)")
        check_output_dir(args.out)
        config = config_from_args(args)
        out = Path(args.out)
        check_out(out, writer=env_rank() == 0)

    apply_config_threads(args, config)
    replicas = init_from_env(resolve_device(config.device))
    scratch = None
    if replicas is not None:
        if not replicas.main:  # searches alike in a copy; rank 0 keeps the run directory and reports
            scratch = Path(tempfile.mkdtemp(prefix="nasforge-replica-"))
            # a run already there (resumed, or continued by the same command) is copied: the replicas then
            # continue it alike, or refuse it alike when its configuration differs
            out = replica_copy(out, scratch / "run") if (out / CONFIG_FILE).exists() else scratch / "run"
            args.quiet = True
            console = console_for(args)
        barrier()  # the copies are taken before rank 0 writes anything
    try:
        return _search(args, api, config, out, console, Path(args.resume or args.out))
    finally:
        shutdown()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _finished(out: Path) -> int:
    """Evaluations already finished in the run directory ``out`` (0 for a new one)."""
    from ..run.rundir import DB_FILE, open_store

    if not (out / DB_FILE).exists():
        return 0
    with open_store(out, readonly=True) as store:
        return store.count_finished()


def _search(args: argparse.Namespace, api: Any, config: Any, out: Path, console: Any, target: Path) -> int:
    """Search into ``out``: ``target``, the run directory, or a replica's private copy of it."""
    from ..run.rundir import check_same_config

    parts = api.build_components(config)
    config = parts.config  # resolved: a length in --epochs is a budget of child steps now
    if out != target:  # a replica's private copy: refuse what rank 0 refuses, under the run directory's name
        check_same_config(target, config)
    with ProgressDisplay(console, f"{config.strategy} on {config.space}", config.budget,
                         quiet=getattr(args, "quiet", False), tick=thread_tuner(args)) as bar:
        if done := _finished(out):  # a run continued: its bar starts where it stopped
            bar.update(completed=done)

        def show(trial, record) -> None:
            bar.update(completed=record.n_evaluations, status=_status(trial, record, parts.strategy))

        watchers = _watchers(args, out)
        try:
            record, result = api.search(config, out, callbacks=[show, *watchers], components=parts)
        finally:
            _close_watchers(watchers)
    best = result["best"]
    console.print(f"[bold]{result['n_evaluations']} evaluations[/bold] ({result['n_cached']} repeats, "
                  f"{result['n_failed']} failed), results in {out / 'result.json'}")
    if best:
        console.print(f"best: {best['arch']}", soft_wrap=True, highlight=False)
        console.print(f"  reward {_fmt(best['reward'])}  test accuracy {_fmt(best['test_accuracy'])}")
    if result.get("constraints"):
        console.print(f"{result['n_infeasible']} infeasible under {', '.join(result['constraints'])} (never evaluated)")
    if result.get("pareto_front"):
        console.print(f"Pareto front ({','.join(result['objectives'])}): {len(result['pareto_front'])} architectures "
                      "in result.json's pareto_front")
    if result.get("derived"):
        print_derived(console, result["derived"])
    if "optimum" in result:
        opt = result["optimum"]
        console.print(f"optimum of the benchmark: reward {_fmt(opt['reward'])}  test accuracy {_fmt(opt['test_accuracy'])}")
    if not best and record.trials:  # nothing usable: a failure, not a result
        first = next((t.result.error for t in record.trials if t.result is not None and t.result.failed), None)
        console.print(f"nasforge: error: every evaluation failed; the first: {first}", highlight=False, soft_wrap=True)
        return 1
    return 0


def _watchers(args: argparse.Namespace, out: Path) -> list[Any]:
    """Callbacks that show the search elsewhere: a live HTML report (``--report``), TensorBoard scalars."""
    watchers: list[Any] = []
    if getattr(args, "report", False):
        from ..report.live import LiveReport

        watchers.append(LiveReport(out, every_s=args.report_every))
        log.info("report: %s (reloads every %g s while the search runs)", watchers[-1].path, args.report_every)
    if getattr(args, "tensorboard", False):
        from ..report.live import tensorboard_scalars

        tb = tensorboard_scalars(out)
        if tb is not None:
            watchers.append(tb)
    return watchers


def _close_watchers(watchers: list[Any]) -> None:
    for w in watchers:
        if hasattr(w, "write"):
            w.write(final=True)  # the finished page, which no longer reloads
        if hasattr(w, "close"):
            w.close()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run a search (or continue one with --resume DIR)", **with_examples("search"))
    add_run_flags(p)
    add_nproc_flag(p)
    p.add_argument("--report", action="store_true",
                   help="keep DIR/report.html up to date while the search runs (it reloads itself; open it in a browser)")
    p.add_argument("--report-every", type=float, default=10.0, metavar="SECONDS",
                   help="how often the --report page is rewritten and reloads (default 10)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard scalars to DIR/tensorboard (pip install 'nasforge[tensorboard]')")
    p.add_argument("--out", metavar="DIR", help="run directory (config, record, result.json)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run recorded in DIR (with --budget N: extend it to N evaluations)")
    p.set_defaults(func=run)


def print_derived(console: Any, derived: dict[str, Any]) -> None:
    """The architectures a one-shot search derived from its policy, and the command that trains the pick."""
    retrained = derived.get("retrained", {})
    tuned = derived.get("perturbed", {}).get("tune_steps", 0)
    for key, label in (("sampled_best", f"best of {derived['n_samples']} sampled from the policy"),
                       ("most_likely", "the policy's most likely"),
                       ("perturbed", "perturbation-based selection (the pick"
                                     + (f"; fine-tuned {tuned} steps a decision)" if tuned else ")")),
                       ("retrained_best", f"best of {len(retrained.get('candidates', []))} candidates trained for "
                                          f"{retrained.get('epochs')} epochs")):
        if key in derived:
            console.print(f"{label}: {derived[key]['arch']}  (validation score {_fmt(derived[key]['score'])})",
                          soft_wrap=True, highlight=False)
    if "train_command" in derived:
        console.print(f"train it from scratch: {derived['train_command']}", soft_wrap=True, highlight=False)
