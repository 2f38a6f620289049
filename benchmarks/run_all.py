"""Run the measurements of docs/benchmarks.md that need only this checkout and ../shared/data.

Usage: python benchmarks/run_all.py [--shared ../shared/data] [--out runs/benchmarks]
Each step prints its own lines; a step whose data is absent says so and is skipped. The CIFAR-10 training
comparison (benchmarks/nb201_cifar_ordering.sh, about 30 minutes), the super-network step timing
(benchmarks/supernet_step.py) and the weight-sharing searches (benchmarks/oneshot_nb201.sh, about 45 minutes;
oneshot_darts.py after a DARTS-space search; oneshot_ptb.sh, about 45 minutes) run by their own commands.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd: list[str]) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shared", default="../shared/data")
    p.add_argument("--out", default="runs/benchmarks")
    args = p.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    py, nasforge = sys.executable, [sys.executable, "-m", "nasforge"]
    table, surrogate = shared / "nb201-cifar10.csv", shared / "nb301-surrogate"
    strategies = "rs,re,reinforce,ednas,nases,lanas,bo"
    if table.exists():
        run([*nasforge, "bench", "--space", "nb201", "--benchmark", str(table), "--strategies", strategies,
             "--budget", "500", "--seeds", "100", "--jobs", "2", "--out", str(out / "bench-nb201")])
    else:
        print(f"skipped the NAS-Bench-201 bench: {table} is absent")
    if surrogate.exists():
        run([*nasforge, "bench", "--space", "darts", "--benchmark", str(surrogate), "--strategies", strategies,
             "--budget", "100", "--seeds", "20", "--jobs", "2", "--out", str(out / "bench-darts")])
    else:
        print(f"skipped the NAS-Bench-301 bench: {surrogate} is absent")
    run([py, str(HERE / "train_throughput.py"), "--threads", "2"])
    run([py, str(HERE / "train_throughput.py"), "--threads", "1"])
    run([py, str(HERE / "executor_speedup.py")])
    overhead = [py, str(HERE / "executor_overhead.py")]
    run(overhead + (["--table", str(table)] if table.exists() else []))


if __name__ == "__main__":
    main()
