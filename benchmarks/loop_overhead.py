"""The whole ``nasforge train`` loop against its bare training step: training images per second of both.

    taskset -c 0 python benchmarks/loop_overhead.py --data ../shared/data/cifar10-jpeg.tar.gz --out /tmp/loop

``nasforge train`` (a subprocess, CIFAR-10 with ``data.fraction``, crop and flip, the default TrainConfig) reports
``train_images_per_s`` in result.json: every epoch after the first, data indexing, normalisation, augmentation,
accuracy bookkeeping and logging included. The bare step is :class:`nasforge.train.loop.Stepper` on one fixed
batch of the same size and network, measured in this process before and after the command (the mean of both).
One line per figure; the goal is a ratio of at least 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

import nasforge as nf
from nasforge.train.loop import Stepper, TrainConfig

NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def bare_step(args: argparse.Namespace) -> float:
    space = nf.create_space("nb201")
    torch.manual_seed(0)
    model = space.build(space.parse(NB201_BEST), num_classes=10, in_channels=3, C=args.C, N=args.N)
    stepper = Stepper(model, TrainConfig(batch_size=args.batch), steps_per_epoch=10_000, device=torch.device("cpu"))
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 10, (args.batch,))
    for _ in range(3):
        stepper.step(x, y)
    start = time.perf_counter()
    for _ in range(args.steps):
        stepper.step(x, y)
    return args.steps * args.batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="CIFAR-10 (.tar.gz or folder)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3, help="the first is not timed by nasforge train")
    p.add_argument("--fraction", type=float, default=0.1, help="part of the training images")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--N", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="steps of each bare-step measurement")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} thread(s), load average {os.getloadavg()[0]:.2f}", flush=True)
    before = bare_step(args)
    command = [sys.executable, "-m", "nasforge", "-q", "train", "--space", "nb201", "--arch", NB201_BEST,
               "--dataset", "cifar10", "--data", args.data, "--epochs", str(args.epochs), "--threads",
               str(args.threads), "--set", f"model.C={args.C}", "--set", f"model.N={args.N}", "--set",
               f"data.fraction={args.fraction}", "--set", f"train.batch_size={args.batch}", "--out", str(args.out)]
    subprocess.run(command, check=True)
    loop = json.loads((args.out / "result.json").read_text())["train_images_per_s"]
    after = bare_step(args)
    bare = (before + after) / 2
    print(f"bare step (Stepper, NB201 best C={args.C} N={args.N}, batch {args.batch}): {bare:.1f} images/s "
          f"(before {before:.1f}, after {after:.1f})")
    print(f"nasforge train loop (CIFAR-10, fraction {args.fraction}, {args.epochs} epochs): {loop:.1f} images/s")
    print(f"loop / bare step: {loop / bare:.2f}x (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
