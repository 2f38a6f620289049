"""``nasforge search``: run, or with ``--resume`` continue, one search into a run directory."""

from __future__ import annotations

import argparse
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ._common import (
    RUN_FLAGS,
    ProgressDisplay,
    add_run_flags,
    apply_config_threads,
    config_from_args,
    console_for,
    thread_tuner,
)


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


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..run.rundir import check_out, resume_config

    console = console_for(args)
    if args.resume:
        given = [f"--{n.replace('_', '-')}" for n in RUN_FLAGS
                 if n not in ("budget", "threads") and getattr(args, n, None) is not None]
        if given or args.config or args.overrides or args.out:
            raise ConfigError(f"--resume takes the run directory's own config (only --budget may change); "
                              f"drop {', '.join(given) or '--set/--config/--out'}")
        out = Path(args.resume)
        config, done = resume_config(out, args.budget)
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
        config = config_from_args(args)
        out = Path(args.out)
        check_out(out)

    apply_config_threads(args, config)
    parts = api.build_components(config)
    config = parts.config  # resolved: a length in --epochs is a budget of child steps now
    with ProgressDisplay(console, f"{config.strategy} on {config.space}", config.budget,
                         quiet=getattr(args, "quiet", False), tick=thread_tuner(args)) as bar:

        def show(trial, record) -> None:
            bar.update(completed=record.n_evaluations, status=_status(trial, record, parts.strategy))

        record, result = api.search(config, out, callbacks=[show], components=parts)
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="run a search (or continue one with --resume DIR)")
    add_run_flags(p)
    p.add_argument("--out", metavar="DIR", help="run directory (config, record, result.json)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run recorded in DIR (with --budget N: extend it to N evaluations)")
    p.set_defaults(func=run)


def print_derived(console: Any, derived: dict[str, Any]) -> None:
    """The architectures a one-shot search derived from its policy, and the command that trains the pick."""
    retrained = derived.get("retrained", {})
    for key, label in (("sampled_best", f"best of {derived['n_samples']} sampled from the policy"),
                       ("most_likely", "the policy's most likely"),
                       ("retrained_best", f"best of {len(retrained.get('candidates', []))} candidates trained for "
                                          f"{retrained.get('epochs')} epochs")):
        if key in derived:
            console.print(f"{label}: {derived[key]['arch']}  (validation score {_fmt(derived[key]['score'])})",
                          soft_wrap=True, highlight=False)
    if "train_command" in derived:
        console.print(f"train it from scratch: {derived['train_command']}", soft_wrap=True, highlight=False)
