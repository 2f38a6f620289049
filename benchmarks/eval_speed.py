"""Scoring speed (images per second) of ``nasforge.train.loop.accuracy`` by batch size, one line per setting.

Usage: python benchmarks/eval_speed.py [--threads 1] [--images 2048]
The NB201 network (C=16, N=5) of the best NB201 cell, trained channels-last as ``Stepper`` leaves it, scoring
random uint8 images; the accuracy printed must be the same for every batch size (running batch-norm statistics).
"""

from __future__ import annotations

import argparse
import time

import torch

from nasforge.factory import create_space
from nasforge.train.loop import accuracy, build_model
from nasforge.train.splits import TensorSet

NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--images", type=int, default=2048)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    space = create_space("nb201")
    model = build_model(space, space.parse(NB201_BEST), num_classes=10, in_channels=3, seed=0)
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    gen = torch.Generator().manual_seed(0)
    data = TensorSet(torch.randint(0, 256, (a.images, 3, 32, 32), dtype=torch.uint8, generator=gen),
                     torch.randint(0, 10, (a.images,), generator=gen))
    for batch in (512, 256, 128, 64, None):
        start = time.perf_counter()
        acc = accuracy(model, data, lambda t: t.float() / 255, batch_size=batch)
        label = "default" if batch is None else str(batch)
        print(f"batch {label:8s} {a.images / (time.perf_counter() - start):7.1f} images/s  accuracy {acc:.4f}",
              flush=True)


if __name__ == "__main__":
    main()
