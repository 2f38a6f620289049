"""How close DARTS' finite-difference Hessian-vector product is to the exact one (double backpropagation).

Usage: python benchmarks/darts_hvp.py [--sizes 4:4 8:8] [--radii 0.1 0.01 0.001 0.0001]

For a small ``nb201`` super-network on digits (C:resolution pairs, one cell per stage, two weight steps taken so
that the optimiser has momentum), the second-order term of DARTS' architecture gradient, the rate times
``d/d alpha grad_w L_train(w, alpha) . v`` with ``v`` the validation gradient after the virtual step, computed
exactly by autograd and by central differences at ``r / |v|`` (DARTS: r = 0.01). Prints, per size and ``r``, the
cosine between the two and the relative error. ``SupernetEvaluator.second_order_gradient`` uses r = 0.01.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import nasforge as nf
from nasforge.testing.unrolled import UnrolledReference


def term_pair(C: int, resolution: int, radii: list[float]) -> list[tuple[float, float, float]]:
    cfg = nf.RunConfig(space="nb201", evaluator="supernet", strategy="darts", budget=8, seed=0, dataset="digits",
                       evaluator_args={"model_args": {"C": C, "N": 1}, "lr": 0.05, "resolution": resolution})
    parts = nf.build_components(cfg)
    ev = parts.evaluator
    rng = np.random.default_rng(0)
    for _ in range(2):
        ev.train_step(parts.space.sample(rng))
    relaxed = parts.strategy.relaxed(0.5)
    ref = UnrolledReference(ev, relaxed, ev._batch(ev.splits.val, 32), ev._batch(ev.splits.train, 32))
    _, v, _ = ref.validation_gradients()
    exact = ref.exact(v)
    out = []
    for r in radii:
        fd = ref.finite_difference(v, r)
        cos = float(torch.nn.functional.cosine_similarity(fd.flatten(), exact.flatten(), dim=0))
        out.append((r, cos, float((fd - exact).norm() / exact.norm())))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["4:4", "8:8"], help="C:resolution pairs")
    p.add_argument("--radii", nargs="+", type=float, default=[0.1, 0.01, 0.001, 0.0001])
    a = p.parse_args()
    for size in a.sizes:
        C, res = (int(t) for t in size.split(":"))
        for r, cos, rel in term_pair(C, res, a.radii):
            print(f"C={C} {res}x{res}  r={r:g}  cosine {cos:+.3f}  relative error {rel:.2f}", flush=True)


if __name__ == "__main__":
    main()
