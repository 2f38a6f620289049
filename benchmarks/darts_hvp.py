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
from nasforge.supernet import Relaxed


def term_pair(C: int, resolution: int, radii: list[float]) -> list[tuple[float, float, float]]:
    cfg = nf.RunConfig(space="nb201", evaluator="supernet", strategy="darts", budget=8, seed=0, dataset="digits",
                       evaluator_args={"model_args": {"C": C, "N": 1}, "lr": 0.05, "resolution": resolution})
    parts = nf.build_components(cfg)
    ev = parts.evaluator
    rng = np.random.default_rng(0)
    for _ in range(2):
        ev.train_step(parts.space.sample(rng))
    relaxed = parts.strategy.relaxed(0.5)
    x, y = ev._batch(ev.splits.val, 32)
    xt, yt = ev._batch(ev.splits.train, 32)
    named = [(n, p) for n, p in ev.supernet.named_parameters() if p.requires_grad]
    weights = [p.detach() for _, p in named]
    group = ev.stepper.optimizer.param_groups[0]
    leaf = relaxed.weights.detach().requires_grad_()
    arch = Relaxed(leaf, relaxed.index)

    def loss_at(ws: list[torch.Tensor], data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out = torch.func.functional_call(ev.supernet, {n: w for (n, _), w in zip(named, ws)}, (data[0], arch))
        return torch.nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, data[1])

    ws = [w.clone().requires_grad_() for w in weights]
    gw = torch.autograd.grad(loss_at(ws, (xt, yt)), ws, create_graph=True, allow_unused=True)
    gw = [g if g is not None else torch.zeros_like(w) for g, w in zip(gw, ws)]
    buffers = [ev.stepper.optimizer.state[p].get("momentum_buffer", torch.zeros_like(p)) for _, p in named]
    virtual = [(w - group["lr"] * (g.detach() + group["weight_decay"] * w + group["momentum"] * b)).requires_grad_()
               for w, g, b in zip(weights, gw, buffers)]
    v = torch.autograd.grad(loss_at(virtual, (x, y)), virtual, allow_unused=True)
    v = [g if g is not None else torch.zeros_like(w) for g, w in zip(v, weights)]
    # exact: d/d alpha of grad_w L_train . v, with the training gradient taken through alpha
    wa = [w.clone().requires_grad_() for w in weights]
    ga = torch.autograd.grad(loss_at(wa, (xt, yt)), wa, create_graph=True, allow_unused=True)
    dot = sum((g * u).sum() for g, u in zip(ga, v) if g is not None)
    (exact,) = torch.autograd.grad(dot, [leaf])
    norm = float(torch.sqrt(sum((g * g).sum() for g in v)))
    out = []
    for r in radii:
        eps = r / norm
        plus, minus = ([w + sign * eps * g for w, g in zip(weights, v)] for sign in (1.0, -1.0))
        fd = (torch.autograd.grad(loss_at(plus, (xt, yt)), [leaf])[0]
              - torch.autograd.grad(loss_at(minus, (xt, yt)), [leaf])[0]) / (2 * eps)
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
