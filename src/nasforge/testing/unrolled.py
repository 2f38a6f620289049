"""DARTS' second-order architecture gradient (eqs. 6-8) written out with functional calls.

An independent reference for :meth:`~nasforge.evaluators.supernet.SupernetEvaluator.second_order_gradient`, used by
its tests and by ``benchmarks/darts_hvp.py``: the same quantities computed without touching the super-network's
weights, plus the exact Hessian-vector product (double backpropagation) that the finite difference approximates.
"""

from __future__ import annotations

from typing import Any

import torch

from ..supernet import Relaxed

Batch = tuple[torch.Tensor, torch.Tensor]


def _filled(grads: tuple[torch.Tensor | None, ...], like: list[torch.Tensor]) -> list[torch.Tensor]:
    return [g if g is not None else torch.zeros_like(w) for g, w in zip(grads, like)]


class UnrolledReference:
    """The unrolled DARTS gradient of ``relaxed`` for a super-network ``evaluator`` mid-search.

    ``val`` and ``train`` are the validation and training batches of one architecture step. The virtual weight
    step uses the evaluator's optimiser (its rate, weight decay, momentum and momentum buffers), as DARTS' does.
    """

    def __init__(self, evaluator: Any, relaxed: Relaxed, val: Batch, train: Batch) -> None:
        self.net = evaluator.supernet
        self.named = [(n, p) for n, p in self.net.named_parameters() if p.requires_grad]
        self.weights = [p.detach() for _, p in self.named]
        optimizer = evaluator.stepper.optimizer
        self.group = optimizer.param_groups[0]
        self.buffers = [optimizer.state[p].get("momentum_buffer", torch.zeros_like(p)) for _, p in self.named]
        self.leaf = relaxed.weights.detach().requires_grad_()
        self.arch = Relaxed(self.leaf, relaxed.index)
        self.val, self.train = val, train

    def loss_at(self, weights: list[torch.Tensor], data: Batch) -> torch.Tensor:
        """Cross-entropy of the relaxed network with ``weights`` in place of its own."""
        params = {n: w for (n, _), w in zip(self.named, weights)}
        out = torch.func.functional_call(self.net, params, (data[0], self.arch))
        return torch.nn.functional.cross_entropy(out[0] if isinstance(out, tuple) else out, data[1])

    def virtual_weights(self) -> list[torch.Tensor]:
        """w' = w - lr (grad_w L_train + weight decay w + momentum buffer), eq. 6 with the optimiser's step."""
        ws = [w.clone().requires_grad_() for w in self.weights]
        grads = _filled(torch.autograd.grad(self.loss_at(ws, self.train), ws, allow_unused=True), ws)
        lr, decay, momentum = self.group["lr"], self.group["weight_decay"], self.group["momentum"]
        return [(w - lr * (g + decay * w + momentum * b)).requires_grad_()
                for w, g, b in zip(self.weights, grads, self.buffers)]

    def validation_gradients(self) -> tuple[torch.Tensor, list[torch.Tensor], float]:
        """At w': the direct gradient d L_val / d alpha, the weight gradient v, and the validation loss."""
        virtual = self.virtual_weights()
        loss = self.loss_at(virtual, self.val)
        direct, *v = torch.autograd.grad(loss, [self.leaf, *virtual], allow_unused=True)
        if direct is None:
            direct = torch.zeros_like(self.leaf)
        return direct, _filled(tuple(v), self.weights), float(loss.detach())

    def finite_difference(self, v: list[torch.Tensor], r: float = 0.01) -> torch.Tensor:
        """d/d alpha (grad_w L_train . v) by central differences at w +- (r / |v|) v, eq. 8."""
        eps = r / float(torch.sqrt(torch.stack([(g * g).sum() for g in v]).sum()))
        plus, minus = ([w + sign * eps * g for w, g in zip(self.weights, v)] for sign in (1.0, -1.0))
        return (self._alpha_grad(plus) - self._alpha_grad(minus)) / (2 * eps)

    def exact(self, v: list[torch.Tensor]) -> torch.Tensor:
        """The same mixed second derivative by double backpropagation."""
        ws = [w.clone().requires_grad_() for w in self.weights]
        grads = torch.autograd.grad(self.loss_at(ws, self.train), ws, create_graph=True, allow_unused=True)
        dot = torch.stack([(g * u).sum() for g, u in zip(grads, v) if g is not None]).sum()
        (out,) = torch.autograd.grad(dot, [self.leaf])
        return out

    def _alpha_grad(self, weights: list[torch.Tensor]) -> torch.Tensor:
        (out,) = torch.autograd.grad(self.loss_at(weights, self.train), [self.leaf])
        return out
