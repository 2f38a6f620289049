"""``nasforge derive RUN_DIR``: derive a finished one-shot search's architecture again, with other settings, and
optionally retrain its best-scored candidates briefly to pick among them (``--retrain-top K``); with ``--nproc N``
as N data-parallel replicas (the candidates, the perturbation's scorings and fine-tuning and each retraining split
between them; rank 0 writes and reports)."""

from __future__ import annotations

import argparse

from ._common import add_threads_flag, console_for
from ._examples import with_examples
from ._launch import add_nproc_flag


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..run.rundir import read_config
    from ..train.distributed import init_from_env, shutdown
    from ..train.loop import resolve_device

    if args.retrain_only and not args.retrain_top:
        raise ConfigError("--retrain-only: say how many candidates to retrain with --retrain-top K")
    replicas = init_from_env(resolve_device(read_config(args.run_dir).device))
    if replicas is not None and not replicas.main:  # derives alike; rank 0 writes and reports
        args.quiet = True
    try:
        return _derive(args)
    finally:
        shutdown()


def _derive(args: argparse.Namespace) -> int:
    from .. import api
    from .search import print_derived

    console = console_for(args)
    write = not args.no_write
    fresh = None
    if not args.retrain_only:
        derived = fresh = api.derive(args.run_dir, args.samples, args.seed, args.overrides, write=write)
        where = (f"written to {args.run_dir}/result.json (earlier derivations under derived_history)" if write
                 else "not written (--no-write)")
        console.print(f"derived from the checkpoint after {derived['checkpoint']} evaluations; {where}",
                      highlight=False)
    if args.retrain_top:
        console.print(f"training the {args.retrain_top} best-scored candidates from scratch for "
                      f"{args.retrain_epochs} epochs each at the search's proxy", highlight=False)
        derived = api.retrain_ranked(args.run_dir, args.retrain_top, args.retrain_epochs, write=write,
                                     derived=None if write else fresh)
    print_derived(console, derived)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("derive", help="derive a one-shot search's architecture again from its last checkpoint", **with_examples("derive"))
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a weight-sharing (supernet) search")
    p.add_argument("--samples", type=int, default=100, help="architectures sampled from the policy (default 100)")
    p.add_argument("--seed", type=int, help="seed of the sampling (default: the run's seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="evaluator.KEY=VALUE",
                   help="derivation setting, e.g. evaluator.derive_batch=5000 (validation images per candidate)")
    p.add_argument("--retrain-top", type=int, default=0, metavar="K",
                   help="then train the K best-scored candidates from scratch at the search's proxy and pick the "
                        "best on validation (image spaces; default 0: the shared weights pick)")
    p.add_argument("--retrain-epochs", type=int, default=5, metavar="E",
                   help="epochs of each retraining (default 5)")
    p.add_argument("--retrain-only", action="store_true",
                   help="retrain the current derivation's candidates without deriving again")
    p.add_argument("--no-write", action="store_true",
                   help="print the derivation and write nothing: takes no lock, so it reads a search still running "
                        "(its latest checkpoint) or a read-only copy")
    add_threads_flag(p)
    add_nproc_flag(p)
    p.set_defaults(func=run)
