"""Wall-clock speed-up of a `train`-evaluator search on digits with 2 workers against 1.

Usage: python benchmarks/executor_speedup.py [--budget 48] [--executors process,ray]
Prints one line per executor: seconds with 1 worker, seconds with 2 workers, and the speed-up. Each worker
trains with one thread (cpus_per_trial=1), so two workers use the two cores; start-up (spawning workers,
loading data, starting Ray) is inside the measured time, as a user would see it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray stays on loopback

import nasforge as nf


def timed_search(executor: str, workers: int, budget: int, out: Path) -> float:
    cfg = nf.RunConfig(space="nb201", evaluator="train", dataset="digits", strategy="rs", budget=budget, seed=0,
                       executor=executor, workers=workers, cpus_per_trial=1.0,
                       evaluator_args={"epochs": 4, "model_args": {"C": 16, "N": 2}})
    start = time.perf_counter()
    nf.search(cfg, out)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--budget", type=int, default=48)
    p.add_argument("--executors", default="process,ray")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for executor in args.executors.split(","):
            one = timed_search(executor, 1, args.budget, Path(tmp) / f"{executor}1")
            two = timed_search(executor, 2, args.budget, Path(tmp) / f"{executor}2")
            print(f"executor={executor} budget={args.budget} train evaluator on digits (nb201 C=16 N=2, 4 epochs): "
                  f"1 worker {one:.1f} s, 2 workers {two:.1f} s, speed-up {one / two:.2f}x")


if __name__ == "__main__":
    main()
