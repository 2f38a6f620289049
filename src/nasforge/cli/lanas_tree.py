"""``nasforge lanas-tree RUN_DIR``: show the LaNAS tree a run's saved strategy state holds."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from ..errors import RunDirError
from ._common import check_output_file


def tree_description(run_dir: str) -> dict[str, Any]:
    """The plain-data tree of the LaNAS strategy of ``run_dir`` after the last recorded change (its saved
    state and the recorded asks and tells after it; the run directory is only read)."""
    from .. import api
    from ..registry import STRATEGIES
    from ..run.loop import restore_strategy
    from ..run.rundir import open_store

    config = api.read_run_config(run_dir)
    if STRATEGIES.canonical(config.strategy) != "lanas":
        raise RunDirError(f"{run_dir}: a {config.strategy!r} run; lanas-tree needs a run of strategy 'lanas'")
    space = api.create_space(config.space, **config.space_args)
    strategy = api.create_strategy(config.strategy, space, config.seed, **config.strategy_args)
    with open_store(run_dir, readonly=True) as store:
        trials = {t.id: t for t in store.load(space.from_dict)}
        if not trials:
            raise RunDirError(f"{run_dir}: the run has not asked for anything yet")
        restore_strategy(store, strategy, trials)
    tree = strategy.observe()
    assert tree is not None  # LaNAS always has a tree to show
    return tree


def run(args: argparse.Namespace) -> int:
    from ..report.lanas import plot_tree, rich_tree

    if args.png:
        check_output_file(args.png, "--png")
    description = tree_description(args.run_dir)
    Console().print(rich_tree(description))
    if args.png:
        path = plot_tree(description, args.png)
        Console(stderr=True).print(f"tree drawn to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lanas-tree", help="show the tree of a LaNAS run (count and mean reward per node)")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a search with --strategy lanas")
    p.add_argument("--png", metavar="FILE", help="also draw the tree into this image file")
    p.set_defaults(func=run)
