"""``nasforge bench``: many strategies over many seeds on one benchmark; summary.json / .md and the figures."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from ._common import RUN_FLAGS, ProgressDisplay, add_run_flags, config_from_args, console_for
from ._examples import with_examples

if TYPE_CHECKING:
    from ..bench import BenchSpec


def _parse_seeds(text: str) -> list[int]:
    """``100`` means seeds 0..99; ``3,7,9`` or ``10-19`` name them."""
    text = text.strip()
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        if "-" in text[1:]:
            lo, hi = text.split("-", 1)
            return list(range(int(lo), int(hi) + 1))
        n = int(text)
    except ValueError:
        raise ConfigError(f"--seeds: expected a count, a list '0,1,2' or a range '0-9', got {text!r}") from None
    if n <= 0:
        raise ConfigError(f"--seeds: must be at least 1, got {n}")
    return list(range(n))


def _resumed_spec(args: argparse.Namespace) -> BenchSpec:
    """The spec a bench directory records (``--resume DIR``): no other setting may be given."""
    import json
    from pathlib import Path

    from ..bench import BenchSpec
    from ..config import make_run_config
    from ..errors import RunDirError

    given = [f"--{n.replace('_', '-')}" for n in RUN_FLAGS if getattr(args, n, None) is not None]
    given += [flag for flag, value in (("--strategies", args.strategies), ("--seeds", args.seeds), ("--out", args.out),
                                       ("--config", args.config)) if value]
    if given or args.overrides or args.strategy_overrides:
        raise ConfigError(f"--resume takes the bench directory's own settings; drop {', '.join(given) or '--set'}")
    path = Path(args.resume) / "bench.json"
    try:
        data = json.loads(path.read_text())
        return BenchSpec(make_run_config(data["base"], source=str(path)), list(data["strategies"]),
                         list(data["seeds"]), dict(data["strategy_args"]))
    except FileNotFoundError:
        raise RunDirError(f"{args.resume}: not a bench directory (no bench.json)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: unreadable ({exc})") from None


def run(args: argparse.Namespace) -> int:
    from ..bench import make_spec, report_budgets, run_bench, to_optimum_text
    from ..run.rundir import absolute_paths

    console = console_for(args)
    if args.resume:
        spec = _resumed_spec(args)
        base, args.out = spec.base, args.resume
    else:
        strategies = [s.strip() for s in (args.strategies or "").split(",") if s.strip()]
        if not strategies:
            raise ConfigError("--strategies: name at least one strategy")
        if not args.out:
            raise ConfigError("--out: a bench directory is required (or --resume DIR)")
        base = absolute_paths(config_from_args(args, {"strategy": strategies[0]}))
        spec = make_spec(base, strategies, _parse_seeds(args.seeds or "10"), args.strategy_overrides)
    total = len(spec.seeds) * len(spec.strategies)
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs: must be at least 1, got {args.jobs}")
    workers = args.jobs or min(os.cpu_count() or 1, total)
    with ProgressDisplay(console, "bench", total, quiet=getattr(args, "quiet", False)) as bar:

        def show(res: dict) -> None:
            last = res["incumbent_test_accuracy"][-1]
            bar.update(advance=1, status=f"{res['strategy']} seed {res['seed']}: {last}")

        summary = run_bench(spec, args.out, workers=workers, on_done=show)
    table = Table(title=f"{base.space}, budget {base.budget}, {len(spec.seeds)} seeds: mean incumbent test accuracy",
                  caption=f"to optimum: mean evaluations of the seeds that found it; cost in {summary['cost_unit']}")
    budgets = [str(b) for b in report_budgets(base.budget)]
    table.add_column("strategy")
    for b in budgets:
        table.add_column(f"@{b}", justify="right")
    table.add_column("to optimum", justify="right")
    table.add_column("cost/seed", justify="right")
    table.add_column("ms/query", justify="right")
    for name, entry in summary["strategies"].items():
        inc = entry["incumbent_test_accuracy"]
        cost = entry.get("cost_per_seed")
        table.add_row(name, *[f"{inc[b]['mean']:.2f}" if b in inc else "-" for b in budgets],
                      to_optimum_text(entry, len(spec.seeds)), "-" if cost is None else f"{cost:,.0f}",
                      f"{entry['overhead_ms_per_query']['median']:.2f}")
    Console(width=max(Console().width, 120)).print(table)
    figures = ", ".join(f"{args.out}/{f}" for f in ("curves.png", "curves_by_cost.png", "samples_to_optimum.png")
                        if (Path(args.out) / f).exists())
    console.print(f"written: {args.out}/summary.json, {args.out}/summary.md, {figures}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="compare strategies over many seeds", **with_examples("bench"))
    add_run_flags(p, strategy=False)
    p.add_argument("--strategies", help="comma-separated strategy names")
    p.add_argument("--seeds", help="number of seeds (0..N-1), a list, or a range a-b (default 10)")
    p.add_argument("--jobs", type=int, help="parallel processes (default: the number of cores)")
    p.add_argument("--out", metavar="DIR",
                   help="bench directory (a bench stopped early continues with the same command)")
    p.add_argument("--resume", metavar="DIR", help="continue the bench recorded in DIR (its own settings)")
    p.add_argument("--strategy-set", dest="strategy_overrides", action="append", default=[],
                   metavar="STRATEGY.KEY=VALUE", help="a hyper-parameter of one strategy, e.g. re.population=50")
    p.set_defaults(func=run)
