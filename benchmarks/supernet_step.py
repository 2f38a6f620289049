"""Cost of one super-network training step against one step of the fixed child it runs.

Usage: python benchmarks/supernet_step.py [--spaces darts nb201] [--archs 3] [--steps 5] [--threads 1]

For each space and each of ``--archs`` sampled architectures it times a training step (forward,
backward, SGD update) of the super-network running that architecture and of the fixed child built by
``space.build`` with the same size, and prints one line per measurement and their ratio; a last line
per space measures the super-network with a new random architecture every step (how a one-shot search
trains it; its peak is that of the largest child it met). Sizes:
darts 8 cells, C=16 (DARTS' CIFAR-10 network at search width); nb201 C=16, N=5; enas-macro 12 layers,
C=36 (ENAS' search size); batch 64 of 3x32x32 inputs, 10 classes.

Peak memory is the growth of the process' peak resident set (``ru_maxrss``) from just after the model
is built to the end of the steps: activations, gradients and optimizer state, not the parameters
themselves (printed separately). Every measurement runs in a fresh process so that peaks do not carry
over. Times are medians over the steps, the child's and the super-network's steps alternating in
one process so that other processes' load affects both alike. ``tracemalloc`` is not
used because it does not see PyTorch's CPU allocator.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

SIZES = {
    "darts": ({}, {"C": 16, "layers": 8}),
    "nb201": ({}, {"C": 16, "N": 5}),
    "enas-macro": ({"layers": 12}, {"C": 36}),
    "nasnet": ({"ops": "enas"}, {"C": 16, "layers": 8}),
}
BATCH, SIDE, CLASSES = 64, 32, 10


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def training_step(name: str, kind: str, arch_index: int, seed: int) -> tuple[Callable[[], None], int]:
    """A training-step function of the child or super-network (``kind``) and its parameter count.

    ``kind`` is ``child`` (the fixed network of sampled architecture ``arch_index``), ``supernet`` (the
    super-network running that architecture) or ``supernet-random`` (a new random architecture each step).
    """
    import nasforge as nf
    from nasforge.supernet import build_supernet

    torch.manual_seed(seed)
    config, model_args = SIZES[name]
    space = nf.create_space(name, **config)
    rng = np.random.default_rng(seed)
    arch = [space.sample(rng) for _ in range(arch_index + 1)][-1]
    if kind == "child":
        model = space.build(arch, num_classes=CLASSES, **model_args)
        forward = lambda x: model(x)  # noqa: E731
    else:
        model = build_supernet(space, num_classes=CLASSES, **model_args)
        forward = lambda x: model(x, arch if kind == "supernet" else space.sample(rng))  # noqa: E731
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(BATCH, 3, SIDE, SIDE), torch.randint(0, CLASSES, (BATCH,))
    model.train()

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(forward(x), y).backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def peak_run(name: str, kind: str, arch_index: int, steps: int, threads: int, seed: int, out: mp.Queue) -> None:
    """Put (peak growth in MiB over a warm-up step and ``steps`` steps, parameters, median seconds)."""
    torch.set_num_threads(threads)
    step, params = training_step(name, kind, arch_index, seed)
    base = peak_mib()
    step()
    out.put((peak_mib() - base, params, timed([step], steps)[0]))


def paired_run(name: str, arch_index: int, steps: int, threads: int, seed: int, out: mp.Queue) -> None:
    """Put the median seconds per step of the child and of the super-network running it, timed in
    alternation so that the load of other processes affects both alike."""
    torch.set_num_threads(threads)
    steps_ = [training_step(name, kind, arch_index, seed)[0] for kind in ("child", "supernet")]
    for step in steps_:
        step()  # warm-up
    out.put(timed(steps_, steps))


def timed(steps: list[Callable[[], None]], n: int) -> list[float]:
    """Median seconds of each step function over ``n`` rounds in which each runs once."""
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(n):
        for step, record in zip(steps, times):
            start = time.perf_counter()
            step()
            record.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def in_fresh_process(target: Callable[..., None], *args: object) -> Any:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", nargs="+", default=["darts", "nb201"], choices=list(SIZES))
    p.add_argument("--archs", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for name in args.spaces:
        size = " ".join(f"{k}={v}" for k, v in {**SIZES[name][0], **SIZES[name][1]}.items())
        where = f"{name} {size} batch={BATCH} {SIDE}x{SIDE} threads={args.threads}"
        common = (args.steps, args.threads, args.seed)
        for i in range(args.archs):
            seconds = in_fresh_process(paired_run, name, i, *common)
            for kind, sec in zip(("child", "supernet"), seconds):
                mib, params, _ = in_fresh_process(peak_run, name, kind, i, *common)
                print(f"{where} {kind:>8} arch {i}: {sec:.3f} s/step, peak +{mib:.0f} MiB, "
                      f"{params / 1e6:.2f} M parameters", flush=True)
            print(f"{where}    ratio arch {i}: super-network step / child step = {seconds[1] / seconds[0]:.2f}",
                  flush=True)
        mib, params, sec = in_fresh_process(peak_run, name, "supernet-random", 0, *common)
        print(f"{where} supernet, new random arch each step: {sec:.3f} s/step, peak +{mib:.0f} MiB, "
              f"{params / 1e6:.2f} M parameters", flush=True)


if __name__ == "__main__":
    main()
