"""A latency-constrained search with real training (digits, NAS-Bench-201 cells) and its found network's latency.

Usage: python benchmarks/latency_constrained.py [--budget 20] [--quantile 0.5] [--strategy re] [--out DIR]
Prints one line per figure: the latency of 30 sampled networks on this machine (batch 1, median of repeats), the
constraint (their ``--quantile``), the search's counts (trained, skipped as infeasible, and whether any infeasible
one was trained), and the found network's latency measured during the search and measured again afterwards,
next to the constraint. Latencies move with the machine's load, which is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

import nasforge as nf
from nasforge.evaluators.costs import CostModel


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--quantile", type=float, default=0.5)
    p.add_argument("--strategy", default="re")
    p.add_argument("--out", default=None)
    p.add_argument("--clock", default="wall", help="wall, or cpu: the process's CPU time (a shared machine)")
    args = p.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="nasforge-latency-")
    base = nf.RunConfig(space="nb201", strategy=args.strategy, evaluator="train", dataset="digits",
                        budget=args.budget, seed=0, device="cpu",
                        strategy_args={"population": 10, "sample_size": 3} if args.strategy in ("re", "nsga2") else {},
                        evaluator_args={"epochs": 3, "model_args": {"C": 8, "N": 2}},
                        measure={"metrics": ["latency_ms"], "repeats": 20, "warmup": 5, "clock": args.clock})
    parts = nf.build_components(base)
    cost_model: CostModel = parts.evaluator.cost_model()
    rng = np.random.default_rng(1)
    sample = [parts.space.sample(rng) for _ in range(30)]
    lat = np.array([cost_model.latency(a)["latency_ms"] for a in sample])
    bound = float(np.quantile(lat, args.quantile))
    print(f"latency ({args.clock} clock) of 30 sampled networks (batch 1, CPU, 1 thread): median {np.median(lat):.3f} ms, "
          f"range {lat.min():.3f}-{lat.max():.3f} ms (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"constraint: latency_ms<={bound:.3f} (the {args.quantile:.0%} quantile)", flush=True)
    config = nf.config.replace(base, constraints=[f"latency_ms<={bound:.4f}"])
    start = time.perf_counter()
    record, result = nf.search(config, out=out)
    wall = time.perf_counter() - start
    infeasible = [t for t in record.trials if t.outcome.metrics.get("infeasible")]
    trained_infeasible = [t for t in infeasible if "train_time_s" in t.outcome.metrics]
    print(f"search ({args.strategy}, budget {args.budget}, 3 epochs each): {len(record.trials) - len(infeasible)} trained, "
          f"{len(infeasible)} skipped as infeasible (result.json n_infeasible {result.get('n_infeasible')}), "
          f"{len(trained_infeasible)} infeasible ones trained; {wall:.0f} s (load {os.getloadavg()[0]:.1f})", flush=True)
    best = result["best"]
    if best is None:
        print("no feasible network found")
        return
    arch = parts.space.parse(best["arch"])
    again = [CostModel(parts.space, parts.evaluator._build, parts.evaluator.splits.shape, parts.evaluator.measure,
                       "cpu").latency(arch)["latency_ms"] for _ in range(5)]  # a new model each: no cache
    print(f"found: {best['arch']} validation {best['reward']:.2f}% test {best['test_accuracy']:.2f}%; "
          f"latency {best['metrics']['latency_ms']:.3f} ms in the search, measured again 5 times: median "
          f"{np.median(again):.3f} ms (range {min(again):.3f}-{max(again):.3f}), constraint {bound:.3f} ms "
          f"(load {os.getloadavg()[0]:.1f})", flush=True)
    print(json.dumps({"out": out}))


if __name__ == "__main__":
    main()
