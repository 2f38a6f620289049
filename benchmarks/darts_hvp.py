"""How close DARTS' finite-difference Hessian-vector product is to the exact one (double backpropagation).

Usage: python benchmarks/darts_hvp.py [--sizes 4:4 8:8] [--radii 0.1 0.01 0.001 0.0001]
       python benchmarks/darts_hvp.py --time 16:16 [--steps 10] [--batch 64]

For a small ``nb201`` super-network on digits (C:resolution pairs, one cell per stage, two weight steps taken so
that the optimiser has momentum), the second-order term of DARTS' architecture gradient, the rate times
``d/d alpha grad_w L_train(w, alpha) . v`` with ``v`` the validation gradient after the virtual step, computed
exactly by autograd and by central differences at ``r / |v|`` (DARTS: r = 0.01). Prints, per size and ``r``, the
cosine between the two and the relative error. ``SupernetEvaluator.second_order_gradient`` uses r = 0.01.

``--time C:resolution`` instead times ``SupernetEvaluator.second_order_gradient`` itself (the whole second-order
architecture gradient, virtual step included) with either product (``strategy.hvp``: ``difference`` or
``exact``) and the first-order gradient, on batches of ``--batch`` images, alternating in one process: medians over
``--steps`` rounds, one thread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nasforge as nf
from nasforge.testing.unrolled import UnrolledReference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from supernet_step import timed  # this script's folder


def mid_search(C: int, resolution: int) -> tuple[Any, Any]:
    """A small nb201 super-network on digits after two weight steps (the optimiser has momentum), and a relaxed
    architecture of a darts search halfway."""
    cfg = nf.RunConfig(space="nb201", evaluator="supernet", strategy="darts", budget=8, seed=0, dataset="digits",
                       evaluator_args={"model_args": {"C": C, "N": 1}, "lr": 0.05, "resolution": resolution})
    parts = nf.build_components(cfg)
    ev = parts.evaluator
    rng = np.random.default_rng(0)
    for _ in range(2):
        ev.train_step(parts.space.sample(rng))
    relaxed = parts.strategy.relaxed(0.5)
    return ev, relaxed


def term_pair(C: int, resolution: int, radii: list[float]) -> list[tuple[float, float, float]]:
    ev, relaxed = mid_search(C, resolution)
    ref = UnrolledReference(ev, relaxed, ev._batch(ev.splits.val, 32), ev._batch(ev.splits.train, 32))
    _, v, _ = ref.validation_gradients()
    exact = ref.exact(v)
    out = []
    for r in radii:
        fd = ref.finite_difference(v, r)
        cos = float(torch.nn.functional.cosine_similarity(fd.flatten(), exact.flatten(), dim=0))
        out.append((r, cos, float((fd - exact).norm() / exact.norm())))
    return out


def gradient_times(C: int, resolution: int, steps: int, batch: int) -> dict[str, float]:
    """Median seconds of the first-order gradient and of the second-order one with each product."""
    ev, relaxed = mid_search(C, resolution)
    val, train = ev._batch(ev.splits.val, batch), ev._batch(ev.splits.train, batch)
    kinds = {"first order": lambda: ev.first_order_gradient(relaxed, *val),
             "second order, difference": lambda: ev.second_order_gradient(relaxed, *val, train),
             "second order, exact": lambda: ev.second_order_gradient(relaxed, *val, train, exact=True)}
    for fn in kinds.values():
        fn()  # warm-up
    return dict(zip(kinds, timed(list(kinds.values()), steps)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["4:4", "8:8"], help="C:resolution pairs")
    p.add_argument("--radii", nargs="+", type=float, default=[0.1, 0.01, 0.001, 0.0001])
    p.add_argument("--time", nargs="+", metavar="C:RES", help="time the gradients at these sizes instead")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    a = p.parse_args()
    if a.time:
        torch.set_num_threads(1)
        for size in a.time:
            C, res = (int(t) for t in size.split(":"))
            times = gradient_times(C, res, a.steps, a.batch)
            base = times["first order"]
            for kind, sec in times.items():
                print(f"C={C} {res}x{res} batch {a.batch}  {kind:>24}: {sec:.3f} s ({sec / base:.2f}x first order)",
                      flush=True)
        return
    for size in a.sizes:
        C, res = (int(t) for t in size.split(":"))
        for r, cos, rel in term_pair(C, res, a.radii):
            print(f"C={C} {res}x{res}  r={r:g}  cosine {cos:+.3f}  relative error {rel:.2f}", flush=True)


if __name__ == "__main__":
    main()
