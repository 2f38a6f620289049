"""The architecture a differentiable one-shot search's weights derive, from its last checkpoint, without scoring.

Usage: python benchmarks/oneshot_weights.py RUN_DIR [RUN_DIR ...] [--table ../shared/data/nb201-cifar10.csv]

For each `nasforge search --strategy darts|gdas --evaluator supernet` directory (finished or still running) prints
the checkpoint's step, the most likely architecture of its architecture weights (DARTS' derivation: per edge the
strongest operation), the range over the edges of each edge's largest operation probability, and, for `nb201`
runs with a table, that cell's `test_acc_200`. Costs nothing but reading the checkpoint, so it can judge a search that has not finished (the full derivation, `nasforge derive RUN`, also scores candidates).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nasforge as nf
from nasforge.evaluators.tabular import Table
from nasforge.registry import STRATEGIES
from nasforge.run.rundir import open_store, read_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--table", default="../shared/data/nb201-cifar10.csv")
    args = p.parse_args()
    for run in args.runs:
        config = read_config(run)
        if not STRATEGIES.get(config.strategy).capabilities.get("differentiable"):
            # a sampling strategy's ask() draws from its policy: what it returns is not the most likely cell
            print(f"{run}: {config.strategy} is not a differentiable strategy "
                  f"({', '.join(STRATEGIES.names(differentiable=True))}); its derivation is in result.json")
            continue
        space = nf.create_space(config.space, **config.space_args)
        strategy = nf.create_strategy(config.strategy, space, config.seed, **config.strategy_args)
        with open_store(run, readonly=True) as store:
            saved = store.load_checkpoint()
        if saved is None:
            print(f"{run}: no checkpoint yet")
            continue
        n, state = saved
        strategy.load_state_dict(state["strategy"])
        arch = strategy.ask(1)[0]
        governed = getattr(strategy.policy, "governed", {})  # structure decisions: their rows follow the edges'
        edges = [d for d, spec in enumerate(space.decisions) if d not in governed and spec.n_choices > 1]
        probabilities = strategy.policy.probabilities()
        top = [max(probabilities[d]) for d in edges]
        line = f"{run}: checkpoint after {n} of {config.budget} steps, most likely {arch}, " \
               f"largest operation probability per edge {min(top):.3f}-{max(top):.3f} " \
               f"(uniform {1 / space.decisions[edges[0]].n_choices:.3f})"
        if config.space == "nb201" and Path(args.table).exists():
            table = Table(args.table, space)
            line += f", test_acc_200 {table.value(arch, 'test_acc_200'):.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
