"""Training-free proxies of an untrained network's quality, computed on a few real minibatches.

Every proxy is a number where higher predicts a more accurate network once trained:

- ``nwot``: NASWOT (Mellor et al., ICML 2021): the log-determinant of the kernel of the binary activation
  patterns of the ReLUs over the images of a minibatch (networks that tell the images apart score higher);
- ``synflow``: SynFlow (Tanaka et al. 2020; Abdelfattah et al., ICLR 2021): with every weight made positive and
  batch normalisation left out, the sum of ``|w * dR/dw|`` for ``R`` the output summed on an all-ones input,
  in double precision; reported as its natural logarithm (the raw value spans tens of orders of magnitude);
- ``snip``: SNIP's saliency (Lee et al. 2019) summed over the weights, ``sum |w * dL/dw|`` of the
  cross-entropy ``L`` of a minibatch;
- ``grad_norm``: the Euclidean norms of ``dL/dw``, summed over the convolutions and linear layers;
- ``jacov``: Mellor et al.'s first proxy (``jacob_cov`` of Abdelfattah et al.): the correlations of the input
  Jacobians of the images of a minibatch, ``-sum(log(e + k) + 1 / (e + k))`` over the eigenvalues ``e`` of
  their correlation matrix (``k`` = 1e-5);
- ``params`` and ``flops``: the size and cost of the network (bigger is better on the benchmarks).

A network whose output does not depend on its input (a cell whose every path is cut by ``none``) has no
finite ``synflow``, ``nwot`` or ``jacov``; it gets :data:`FLOOR` instead, below any real score.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from ..ops.cell_ops import relu_per_edge

#: every proxy, in the order a full evaluation reports them
PROXIES = ("nwot", "synflow", "snip", "grad_norm", "jacov", "params", "flops")
#: proxies that need the minibatch's gradients or activations (the others need no data)
DATA_PROXIES = ("nwot", "snip", "grad_norm", "jacov")
#: the score of a network whose proxy is not finite (its output ignores its input)
FLOOR = -1e9
#: Mellor et al.'s regulariser of the Jacobian correlation eigenvalues
JACOV_K = 1e-5


def _weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights the gradient proxies sum over (of the convolutions and linear layers)."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]


def _logits(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _finite(value: float) -> float:
    return float(value) if math.isfinite(value) else FLOOR


def batch_proxies(model: nn.Module, x: torch.Tensor, y: torch.Tensor, wanted: Iterable[str]) -> dict[str, float]:
    """The data proxies of ``wanted`` (of :data:`DATA_PROXIES`) on one minibatch, in one forward pass.

    The model is put in training mode (batch statistics, as the proxies' authors compute them); its weights
    are not changed, its gradients are left set."""
    wanted = set(wanted) & set(DATA_PROXIES)
    out: dict[str, float] = {}
    if not wanted:
        return out
    model.train()
    model.zero_grad(set_to_none=True)
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)
    hooks = []
    if "nwot" in wanted:
        def pattern(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            # the activation pattern of the ReLU: which units its input switches on (an in-place ReLU's input
            # is already its output, which has the same pattern)
            # c c' + (1 - c)(1 - c') (units on in both or off in both) is (s s' + d) / 2 for s = 2c - 1: one
            # product instead of two, exact in float32 (integers far below 2^24 for a layer)
            signs = (inputs[0].detach() > 0).flatten(1).float() * 2 - 1
            kernel.add_(((signs @ signs.T + signs.shape[1]) / 2).double())

        hooks = [m.register_forward_hook(pattern) for m in model.modules() if isinstance(m, nn.ReLU)]
    need_input_grad = "jacov" in wanted
    x = x.clone().requires_grad_(need_input_grad)
    try:
        with relu_per_edge(model):  # every edge's ReLU is a module the hooks see
            logits = _logits(model(x))
    finally:
        for h in hooks:
            h.remove()
    if "nwot" in wanted:
        sign, logdet = np.linalg.slogdet(kernel.numpy())
        out["nwot"] = _finite(logdet) if sign > 0 else FLOOR
    if wanted & {"snip", "grad_norm"}:
        weights = _weights(model)
        loss = nn.functional.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, weights, retain_graph=need_input_grad, allow_unused=True)
        pairs = [(w.detach(), g) for w, g in zip(weights, grads) if g is not None]
        if "snip" in wanted:
            out["snip"] = _finite(float(sum(float((w * g).abs().sum()) for w, g in pairs)))
        if "grad_norm" in wanted:
            out["grad_norm"] = _finite(float(sum(float(g.norm()) for _, g in pairs)))
    if need_input_grad:
        (jac,) = torch.autograd.grad(logits.sum(), x)
        out["jacov"] = jacobian_score(jac.flatten(1).double().numpy())
    model.zero_grad(set_to_none=True)
    return out


def jacobian_score(jacobians: np.ndarray) -> float:
    """Mellor et al.'s score of per-image input Jacobians ``(n, d)``: high when the images' Jacobians are
    uncorrelated; :data:`FLOOR` when a Jacobian is constant (zero variance: the correlation is undefined)."""
    if len(jacobians) < 2 or np.any(jacobians.std(axis=1) == 0):
        return FLOOR
    corr = np.corrcoef(jacobians)
    eig = np.linalg.eigvalsh(corr)
    return _finite(float(-np.sum(np.log(np.abs(eig) + JACOV_K) + 1.0 / (np.abs(eig) + JACOV_K))))


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Log of SynFlow's saliency sum (see the module docstring). Changes ``model`` in place: call it last."""
    for child in list(model.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                setattr(child, attr, nn.Identity())
    model.double().eval()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    logits = _logits(model(torch.ones(1, *input_shape, dtype=torch.float64)))
    logits.sum().backward()
    total = 0.0
    for w in _weights(model):
        if w.grad is not None:
            total += float((w.detach() * w.grad).abs().sum())
    return _finite(math.log(total)) if total > 0 and math.isfinite(total) else FLOOR


def measure(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], wanted: Iterable[str]
            ) -> dict[str, float]:
    """The proxies ``wanted`` of ``model`` (untrained), data proxies averaged over ``batches``.

    ``model`` is changed (``synflow`` rewrites its weights): build a fresh one per measurement."""
    from ..ops.measure import count_flops, count_params

    wanted = list(dict.fromkeys(wanted))
    unknown = [w for w in wanted if w not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy {unknown[0]!r}; known: {', '.join(PROXIES)}")
    shape = tuple(batches[0][0].shape[1:])
    out: dict[str, float] = {}
    if "params" in wanted:
        out["params"] = float(count_params(model))
    if "flops" in wanted:
        out["flops"] = float(count_flops(model, (1, *shape)))
    data = [w for w in wanted if w in DATA_PROXIES]
    if data:
        sums = dict.fromkeys(data, 0.0)
        for x, y in batches:
            for k, v in batch_proxies(model, x, y, data).items():
                sums[k] += v
        out.update({k: v / len(batches) for k, v in sums.items()})
    if "synflow" in wanted:
        out["synflow"] = synflow(model, shape)
    return {w: out[w] for w in wanted}
