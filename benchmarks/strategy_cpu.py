"""CPU seconds a strategy spends (ask + tell) in one NAS-Bench-201 search, measured as process time.

Usage: python benchmarks/strategy_cpu.py [--table ../shared/data/nb201-cifar10.csv] [--strategies alphax,nao]
       [--budget 500] [--seeds 2]
Prints one line per strategy: mean CPU seconds of the strategy per search and per query. Process time counts
only this process' own work, so it is much less affected by other jobs on a shared machine than the wall-clock
overhead ``nasforge bench`` reports (run with OMP_NUM_THREADS=1).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import nasforge as nf
from nasforge.factory import create_strategy


class Timed:
    """A strategy wrapper adding up the process time of ask and tell."""

    def __init__(self, strategy: Any) -> None:
        self.strategy, self.cpu = strategy, 0.0

    def ask(self, n: int = 1) -> Any:
        start = time.process_time()
        out = self.strategy.ask(n)
        self.cpu += time.process_time() - start
        return out

    def tell(self, archs: Any, results: Any) -> None:
        start = time.process_time()
        self.strategy.tell(archs, results)
        self.cpu += time.process_time() - start

    def __getattr__(self, name: str) -> Any:
        return getattr(self.strategy, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="../shared/data/nb201-cifar10.csv")
    parser.add_argument("--strategies", default="alphax,nao")
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    parts = nf.build_components(nf.RunConfig(space="nb201", benchmark=args.table, budget=args.budget))
    for name in args.strategies.split(","):
        total = 0.0
        for seed in range(args.seeds):
            timed = Timed(create_strategy(name, parts.space, seed))
            nf.run_search(parts.space, timed, parts.evaluator, args.budget, seed=seed)  # type: ignore[arg-type]
            total += timed.cpu
        mean = total / args.seeds
        print(f"{name}: {mean:.1f} CPU s per search of {args.budget}, {1000 * mean / args.budget:.1f} ms per query "
              f"({args.seeds} seeds)")


if __name__ == "__main__":
    main()
