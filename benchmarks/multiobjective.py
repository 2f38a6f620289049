"""Multi-objective search on NAS-Bench-201 CIFAR-10: hypervolume of the Pareto strategy against random search and
against the exact front of the whole table.

Usage: python benchmarks/multiobjective.py [--table ../shared/data/nb201-cifar10.csv] [--seeds 30] [--budgets 100,500]
       [--strategies nsga2,nsga2-worst,rs] [--costs params,flops]
Prints one line per figure:
- the seconds to count parameters and FLOPs of all 15,625 networks (NAS-Bench-201's network, C=16, N=5, CIFAR-10
  input), cold (an empty cache directory) and warm (read from the cache);
- per cost (params, flops), strategy and budget: the hypervolume of the searches' evaluations as a fraction of the
  exact front's (the table's non-dominated networks: the physical limit), over the seeds: mean, quartiles, worst,
  and how many seeds reach 99%.
The objectives are the search's reward (validation accuracy after 200 epochs) and the cost; the hypervolume is
taken on each objective scaled between the whole table's worst and best value, from a reference point 10% of
the range beyond the worst (``nasforge.hypervolume``). ``--tight`` also reports it from a reference at the
table's median accuracy, which only counts the accurate half of the front.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import nasforge as nf
from nasforge.factory import create_strategy, objective_settings
from nasforge.hypervolume import hypervolume_of
from nasforge.objectives import objective_matrix, pareto_indices, parse_objectives
from nasforge.run.loop import run_search

HERE = Path(__file__).resolve().parent
VARIANTS = {"nsga2": ("nsga2", {}), "nsga2-worst": ("nsga2", {"removal": "worst"}), "rs": ("rs", {}),
            "re": ("re", {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", default=str(HERE.parents[1] / "shared" / "data" / "nb201-cifar10.csv"))
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--budgets", default="100,500")
    p.add_argument("--strategies", default="nsga2,rs")
    p.add_argument("--costs", default="params,flops")
    p.add_argument("--tight", action="store_true")
    args = p.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    cache = os.environ.get("NASFORGE_CACHE") or tempfile.mkdtemp(prefix="nasforge-mo-")

    base = nf.RunConfig(space="nb201", strategy="rs", evaluator="tabular", benchmark=args.table, cache_dir=cache,
                        objectives=["accuracy", "-params", "-flops"])
    # cold: a fresh cache directory, so that the counting itself is timed
    with tempfile.TemporaryDirectory() as cold:
        parts = nf.build_components(nf.config.replace(base, cache_dir=cold))
        start = time.perf_counter()
        parts.evaluator.costs(parts.space.sample(np.random.default_rng(0)))
        print(f"params+flops of {len(parts.evaluator.table.archs)} networks, cold: {time.perf_counter() - start:.1f} s "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    parts = nf.build_components(base)
    parts.evaluator.costs(parts.space.sample(np.random.default_rng(0)))  # fills the cache in `cache`
    parts = nf.build_components(base)
    start = time.perf_counter()
    parts.evaluator.costs(parts.space.sample(np.random.default_rng(0)))
    print(f"params+flops of {len(parts.evaluator.table.archs)} networks, warm (cached): "
          f"{time.perf_counter() - start:.2f} s", flush=True)
    evaluator, space = parts.evaluator, parts.space
    table = evaluator.table

    for cost in args.costs.split(","):
        objectives = parse_objectives(["accuracy", f"-{cost}"])
        whole = objective_matrix([evaluator.evaluate(a) for a in table.archs], objectives)
        lo, hi = whole.min(axis=0), whole.max(axis=0)
        refs = {"nadir": lo}
        if args.tight:
            refs["median-accuracy"] = np.array([np.median(whole[:, 0]), lo[1]])
        front = whole[pareto_indices(whole)]
        exact = {name: float(hypervolume_of(front, ref, hi, at=[len(front)])[0]) for name, ref in refs.items()}
        print(f"{cost}: exact front {len(np.unique(front, axis=0))} networks, hypervolume {exact['nadir']:.4f} "
              f"(of {(1.1) ** 2:.2f})", flush=True)
        for label in args.strategies.split(","):
            name, extra = VARIANTS[label]
            config = nf.config.replace(base, strategy=name, objectives=[str(o) for o in objectives],
                                       strategy_args=dict(extra), budget=max(budgets))
            ratios: dict[str, list[list[float]]] = {r: [] for r in refs}
            start = time.perf_counter()
            for seed in range(args.seeds):
                strategy = create_strategy(name, space, seed, **objective_settings(config, strict=False).strategy_args)
                record = run_search(space, strategy, evaluator, max(budgets), seed=seed)
                mat = objective_matrix([t.result for t in record.trials], objectives)
                for r, ref in refs.items():
                    ratios[r].append(list(hypervolume_of(mat, ref, hi, at=budgets) / exact[r]))
            wall = time.perf_counter() - start
            for r in refs:
                arr = np.array(ratios[r])
                for j, b in enumerate(budgets):
                    x = arr[:, j]
                    print(f"{cost} {label} {b} evals ({r} ref): hypervolume / exact {x.mean():.4f} "
                          f"[q25 {np.quantile(x, 0.25):.4f}, median {np.median(x):.4f}, q75 {np.quantile(x, 0.75):.4f}, "
                          f"worst {x.min():.4f}]; {int(np.sum(x >= 0.99))}/{len(x)} seeds >= 99%", flush=True)
            print(f"{cost} {label}: {args.seeds} searches in {wall:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
