"""Data-parallel speed-up on this machine: ``nasforge train`` and a one-shot NB201 search, 1 process against
``--nproc 2``, one line per measurement.

    python benchmarks/data_parallel.py --data ../shared/data/cifar10-jpeg.tar.gz --out /tmp/dp
    python benchmarks/data_parallel.py --data ../shared/data/cifar10-jpeg.tar.gz --out /tmp/dp201 --only oneshot \
        --cells 5 --resolution 32 --steps 50 --derive-batch 1024      # NAS-Bench-201's own search network
    python benchmarks/data_parallel.py --data ../shared/data/cifar10-jpeg.tar.gz --out /tmp/dp5 --only train --cells 5
    python benchmarks/data_parallel.py --data ../shared/data/cifar10-jpeg.tar.gz --out /tmp/dpd --only oneshot \
        --strategy darts                                 # a differentiable search: every step runs the mixture

Each configuration runs as a subprocess (``python -m nasforge ...``) and is timed from outside; the training
reports its own images per second after the first epoch (``train_images_per_s`` in result.json). A single process
runs with 1 and with 2 torch threads (``--threads``), the two replicas with 1 thread each, so that all three use
at most the machine's two cores. The decoded images are cached before the first measurement (a first decode of
CIFAR-10's JPEGs takes ~20 s, which would otherwise fall into whichever configuration runs first). Besides the wall
time each line gives where it went: for the training the seconds outside the training epochs (start-up, data,
test pass), for the one-shot search those of its child steps (``steps``, from the run's store) and of what
follows them (``derivation``: the candidates' scoring, result files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def run(args: list[str]) -> tuple[float, float]:
    """Wall time of ``nasforge args`` and the clock (time.time) at its end."""
    start = time.perf_counter()
    # --threads says how many threads; an OMP_NUM_THREADS of the calling shell would only add libgomp's warnings
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run([sys.executable, "-m", "nasforge", "-q", *args], check=True, env={**env, "PYTHONUNBUFFERED": "1"})
    return time.perf_counter() - start, time.time()


def phases(name: str, where: Path, wall: float, end: float, result: dict) -> str:
    """Where the wall time went: outside the training epochs (train); child steps and what follows (one-shot)."""
    if name == "train":
        return f"  outside training {wall - result['train_time_s']:5.1f} s"
    with sqlite3.connect(where / "run.db") as db:
        first, last = db.execute("SELECT MIN(asked_at), MAX(finished_at) FROM trials").fetchone()
    return f"  steps {last - first:5.1f} s  derivation {end - last:5.1f} s"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True, help="CIFAR-10 (.tar.gz or folder)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--fraction", type=float, default=0.1, help="part of the training images (train)")
    p.add_argument("--steps", type=int, default=200, help="child steps of the one-shot search")
    p.add_argument("--derive-batch", type=int, default=4096,
                   help="validation images that score each candidate of the one-shot derivation")
    p.add_argument("--derive-chunk", type=int, default=1024,
                   help="largest chunk of the derivation's images in one forward pass (evaluator.derive_chunk)")
    p.add_argument("--cells", type=int, default=1,
                   help="cells per stage of the trained network and of the super-network (N; NAS-Bench-201: 5)")
    p.add_argument("--resolution", type=int, default=16, help="image size of the one-shot search (NAS-Bench-201: 32)")
    p.add_argument("--only", choices=("train", "oneshot"), help="measure one of the two jobs")
    p.add_argument("--strategy", default="enas", help="strategy of the one-shot search (enas, ednas, darts, gdas...)")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    from nasforge.train import default_cache_dir, load_dataset

    load_dataset("cifar10", a.data, default_cache_dir())
    print(f"# data cached in {default_cache_dir()} ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"# load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    train = ["train", "--space", "nb201", "--arch", ARCH, "--dataset", "cifar10", "--data", a.data,
             "--epochs", str(a.epochs), "--set", "model.C=16", "--set", f"model.N={a.cells}", "--set",
             f"data.fraction={a.fraction}"]
    oneshot = ["search", "--space", "nb201", "--evaluator", "supernet", "--strategy", a.strategy, "--dataset", "cifar10",
               "--data", a.data, "--budget", str(a.steps), "--set", f"evaluator.model_args={{C: 16, N: {a.cells}}}",
               "--set", f"evaluator.resolution={a.resolution}", "--set", f"evaluator.derive_batch={a.derive_batch}",
               "--set", f"evaluator.derive_chunk={a.derive_chunk}"]
    base: dict[str, float] = {}
    for name, command in (("train", train), ("oneshot", oneshot)):
        if a.only not in (None, name):
            continue
        for label, extra in (("1 process, 1 thread", ["--threads", "1"]), ("1 process, 2 threads", ["--threads", "2"]),
                             ("2 processes, 1 thread each", ["--nproc", "2", "--threads", "1"])):
            where = out / f"{name}-{label.replace(' ', '').replace(',', '-')}"
            shutil.rmtree(where, ignore_errors=True)  # an earlier measurement's: the commands refuse to overwrite
            wall, end = run([*command, *extra, "--out", str(where)])
            result = json.loads((where / "result.json").read_text())
            ips = result.get("train_images_per_s")
            base.setdefault(name, wall)
            line = f"{name:8s} {label:28s} wall {wall:7.1f} s  speed-up {base[name] / wall:4.2f}x"
            if ips:
                line += f"  {ips:7.1f} training images/s"
            print(line + phases(name, where, wall, end, result), flush=True)


if __name__ == "__main__":
    main()
