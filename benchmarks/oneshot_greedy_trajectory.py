"""How the policy's most likely genotype wanders during a DARTS-space one-shot search (NAS-Bench-301 surrogate).

Usage: python benchmarks/oneshot_greedy_trajectory.py RUN_DIR [RUN_DIR ...] [--benchmark ../shared/data/nb301-surrogate]
       [--tails 0.1,0.25,0.5]

A policy search (`enas`, `ednas`, ...) records a snapshot of its policy every few evaluations (the distribution of
each decision; for an autoregressive controller along its most likely path), so each snapshot's per-decision argmax
is the most likely genotype at that moment. For each run this prints, as one JSON line, the surrogate's predicted
accuracy (percent) of that genotype at the end and at each quarter of the search, and over the last ``tail`` share of
the snapshots: the mean and standard deviation of the prediction, the number of distinct genotypes, and the
prediction for the genotype of the averaged distributions (per decision, the argmax of the mean probabilities).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from oneshot_darts import surrogate  # this script's folder

from nasforge.evaluators.surrogate import VAL_ACCURACY
from nasforge.run.rundir import open_store, read_config


def trajectory(run: Path, benchmark: str, tails: list[float]) -> dict[str, Any]:
    config = read_config(run)
    space, judge = surrogate(config.space_args, benchmark)
    with open_store(run, readonly=True) as store:
        snapshots = store.snapshots()
    if not snapshots:
        raise SystemExit(f"{run}: no policy snapshots")
    names = [d.name for d in space.decisions]
    steps = np.array([n for n, _ in snapshots])
    probs = [[np.asarray({**s["structure"], **s["operation"]}[name]) for name in names] for _, s in snapshots]
    genotypes = [space.make([int(np.argmax(p)) for p in per]) for per in probs]
    scores = 100.0 * judge.predict(genotypes)[:, VAL_ACCURACY]
    out: dict[str, Any] = {"run": str(run), "strategy": config.strategy, "seed": config.seed, "steps": int(steps[-1]),
                           "final": round(float(scores[-1]), 2)}
    for q in (0.25, 0.5, 0.75):
        i = int(np.argmin(np.abs(steps - q * steps[-1])))
        out[f"at_{int(steps[i])}"] = round(float(scores[i]), 2)
    for tail in tails:
        idx = np.flatnonzero(steps >= (1.0 - tail) * steps[-1])
        mean = [np.mean([probs[i][d] for i in idx], axis=0) for d in range(len(names))]
        averaged = space.make([int(np.argmax(p)) for p in mean])
        out[f"last_{tail:g}"] = {"mean": round(float(scores[idx].mean()), 2), "sd": round(float(scores[idx].std()), 2),
                                 "distinct": len({str(genotypes[i]) for i in idx}),
                                 "averaged": round(100.0 * float(judge.predict([averaged])[0, VAL_ACCURACY]), 2)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--benchmark", default="../shared/data/nb301-surrogate")
    p.add_argument("--tails", default="0.1,0.25,0.5", help="shares of the search, counted from its end")
    args = p.parse_args()
    tails = [float(t) for t in args.tails.split(",")]
    for run in args.runs:
        print(json.dumps(trajectory(run, args.benchmark, tails)), flush=True)


if __name__ == "__main__":
    main()
