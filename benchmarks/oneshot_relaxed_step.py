"""Cost of a DARTS mixed-operation step (and of GDAS' hard-sampled one) against one child's step.

Usage: python benchmarks/oneshot_relaxed_step.py [--sizes nb201-proxy darts-proxy nasnet-proxy nb201] [--steps 5]
       [--threads 1]

For each size it times, on a batch of 64 random images, a training step (forward, backward, SGD update) of

- ``child``: the fixed network of one sampled architecture (``space.build``);
- ``darts-weights``: the super-network's weight step with every operation of every edge weighted by the
  softmax of the architecture weights (DARTS' relaxation: the mixed-operation step);
- ``darts``: one evaluation of a ``darts`` search, i.e. the architecture step (forward and backward through
  the mixed network on another batch, Adam on the architecture weights) plus the weight step;
- ``gdas``: the same for ``gdas`` (one Gumbel-sampled operation per edge, straight-through).

Peak memory is the growth of the process's peak resident set (``ru_maxrss``) over a warm-up step and the
timed steps, each kind in a fresh process; times are medians over ``--steps`` rounds in which the kinds
alternate in one process, so that other processes' load affects them alike. Prints one line per kind and size.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from supernet_step import in_fresh_process, peak_mib, timed

#: space, space arguments, model arguments, image side
SIZES = {
    "nb201-proxy": ("nb201", {}, {"C": 16, "N": 1}, 16),  # the NB201 weight-sharing protocol's proxy
    "darts-proxy": ("darts", {}, {"C": 8, "layers": 5}, 16),  # the NB301-surrogate protocol's proxy
    # ENAS' micro space (5 blocks, 5 operations) at the DARTS proxy's size
    "nasnet-proxy": ("nasnet", {"ops": "enas"}, {"C": 8, "layers": 5}, 16),
    "nb201": ("nb201", {}, {"C": 16, "N": 5}, 32),  # NB201's own search network
}
KINDS = ("child", "darts-weights", "darts", "gdas")
BATCH, CLASSES = 64, 10


def make_step(size: str, kind: str, seed: int = 0) -> Callable[[], None]:
    import nasforge as nf
    from nasforge.strategies.darts import Darts
    from nasforge.strategies.gdas import Gdas
    from nasforge.supernet import build_supernet

    torch.manual_seed(seed)
    name, space_args, model_args, side = SIZES[size]
    space = nf.create_space(name, **space_args)
    x, y = torch.randn(BATCH, 3, side, side), torch.randint(0, CLASSES, (BATCH,))
    xv, yv = torch.randn(BATCH, 3, side, side), torch.randint(0, CLASSES, (BATCH,))
    if kind == "child":
        model = space.build(space.sample(np.random.default_rng(seed)), num_classes=CLASSES, **model_args)
        forward = lambda: model(x)  # noqa: E731
    else:
        model = build_supernet(space, num_classes=CLASSES, **model_args)
        strategy = (Gdas if kind == "gdas" else Darts)(space, seed=seed)

        def forward() -> torch.Tensor:
            if kind != "darts-weights":  # the architecture step first, as a search does
                relaxed = strategy.relaxed(0.5)
                leaf = relaxed.weights.detach().requires_grad_()
                out = model(xv, replace(relaxed, weights=leaf))
                loss = nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, yv)
                strategy.learn(relaxed, torch.autograd.grad(loss, [leaf])[0], float(loss.detach()))
            with torch.no_grad():
                relaxed = strategy.relaxed(0.5).detach()
            return model(x, relaxed)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()

    def step() -> None:
        opt.zero_grad()
        out = forward()
        nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, y).backward()
        opt.step()

    return step


def peak_run(size: str, kind: str, steps: int, threads: int, out: object) -> None:
    torch.set_num_threads(threads)
    step = make_step(size, kind)
    base = peak_mib()
    step()
    timed([step], steps)
    out.put(peak_mib() - base)  # type: ignore[attr-defined]


def paired_run(size: str, steps: int, threads: int, out: object) -> None:
    torch.set_num_threads(threads)
    fns = [make_step(size, kind) for kind in KINDS]
    for fn in fns:
        fn()  # warm-up
    out.put(timed(fns, steps))  # type: ignore[attr-defined]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["nb201-proxy", "darts-proxy"], choices=list(SIZES))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    for size in args.sizes:
        name, space_args, model_args, side = SIZES[size]
        where = f"{size} ({name} {space_args} {model_args} {side}x{side}, batch {BATCH}, threads {args.threads})"
        seconds = in_fresh_process(paired_run, size, args.steps, args.threads)
        for kind, sec in zip(KINDS, seconds):
            mib = in_fresh_process(peak_run, size, kind, args.steps, args.threads)
            print(f"{where} {kind:>13}: {sec:.3f} s/step ({sec / seconds[0]:.2f}x child), peak +{mib:.0f} MiB",
                  flush=True)


if __name__ == "__main__":
    main()
