"""``nasforge derive RUN_DIR``: derive a finished one-shot search's architecture again, with other settings."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .. import api
    from .search import print_derived

    derived = api.derive(args.run_dir, args.samples, args.seed, args.overrides)
    console = Console(stderr=True)
    console.print(f"derived from the checkpoint after {derived['checkpoint']} evaluations; "
                  f"written to {args.run_dir}/result.json (earlier derivations under derived_history)",
                  highlight=False)
    print_derived(console, derived)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("derive", help="derive a one-shot search's architecture again from its last checkpoint")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a weight-sharing (supernet) search")
    p.add_argument("--samples", type=int, default=100, help="architectures sampled from the policy (default 100)")
    p.add_argument("--seed", type=int, help="seed of the sampling (default: the run's seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="evaluator.KEY=VALUE",
                   help="derivation setting, e.g. evaluator.derive_batch=5000 (validation images per candidate)")
    p.set_defaults(func=run)
