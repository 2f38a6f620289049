"""Cumulative cost at which each strategy's mean incumbent test accuracy first reaches a target, from a bench.

    python benchmarks/cost_to_target.py BENCH_DIR [--target 94.0] [--reference re]

Reads ``BENCH_DIR/runs/<strategy>/seed_*.json`` (written by ``nasforge bench``) and prints one line per
strategy: the cost (the evaluator's unit, epochs for NAS-Bench-201) at which the mean over all seeds of
the incumbent test accuracy first reaches the target, the mean incumbent test accuracy at a few costs, and
the cost's ratio to the reference strategy's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nasforge.bench import _band, cost_to_reach, incumbent_at_cost


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bench")
    p.add_argument("--target", type=float, default=94.0)
    p.add_argument("--reference", default="re")
    p.add_argument("--at", default="2000,5000,10000,20000", help="costs at which to show the mean incumbent")
    args = p.parse_args()
    spec = json.loads((Path(args.bench) / "bench.json").read_text())
    at = np.array([float(x) for x in args.at.split(",")])
    runs = {s: [json.loads((Path(args.bench) / "runs" / s / f"seed_{k}.json").read_text()) for k in spec["seeds"]]
            for s in spec["strategies"]}
    reached = {s: cost_to_reach(r, args.target) for s, r in runs.items()}
    ref = reached.get(args.reference)
    for s, r in runs.items():
        means, q25, q75 = _band(incumbent_at_cost(r, at))
        cost = reached[s]
        ratio = "" if cost is None or not ref else f" ({cost / ref:.2f}x {args.reference}'s)"
        shown = ", ".join(f"@{c:g}: {m:.2f} [{a:.2f}, {b:.2f}]" for c, m, a, b in zip(at, means, q25, q75))
        print(f"{s}: {len(r)} seeds, mean incumbent test reaches {args.target} at "
              f"{'never' if cost is None else f'{cost:,.0f}'}{ratio}; {shown}")


if __name__ == "__main__":
    main()
