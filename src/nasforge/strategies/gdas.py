"""GDAS (Dong & Yang, CVPR 2019): DARTS' architecture weights, one operation per edge sampled by Gumbel-softmax.

Each step draws, per edge, ``softmax((log_softmax(alpha) + g) / tau)`` with Gumbel noise ``g`` and keeps its
argmax as a hard one-hot weight whose gradient is that of the soft sample (straight-through). The super-network
runs only the sampled operation of each edge (:class:`~nasforge.supernet.Mixture` with an index), so a step
costs one child, as in ENAS, where DARTS' costs every operation. The temperature falls linearly from
``tau_max`` to ``tau_min`` over the search (GDAS on NAS-Bench-201: 10 to 0.1). The rest (Adam on the weights,
warm-up, derivation) is :mod:`DARTS' <nasforge.strategies.darts>`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..registry import STRATEGIES
from ..supernet import Relaxed
from .darts import DartsConfig, DifferentiableStrategy


@dataclass
class GdasConfig(DartsConfig):
    """DARTS' optimiser settings (GDAS uses the same) and the temperature's schedule."""

    tau_max: float = 10.0  # Gumbel-softmax temperature at the start
    tau_min: float = 0.1  # temperature at the end (annealed over the search)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.tau_min <= self.tau_max:
            raise ValueError("need 0 < tau_min <= tau_max")


@STRATEGIES.register("gdas", guided=True, differentiable=True, observable=True, paper="Dong & Yang 2019 (GDAS)")
class Gdas(DifferentiableStrategy):
    """GDAS: a hard Gumbel-softmax sample of one operation per edge per step, straight-through, temperature annealed."""

    Config = GdasConfig
    trains_mixture = False  # one sampled operation per edge runs: the mixture itself is never trained

    def temperature(self, progress: float) -> float:
        cfg = self.config
        return cfg.tau_max - (cfg.tau_max - cfg.tau_min) * min(max(progress, 0.0), 1.0)

    def relaxed(self, progress: float) -> Relaxed:
        log_p = torch.log_softmax(self.policy.masked(), dim=-1)
        while True:  # GDAS redraws the rare sample whose noise overflowed
            u = torch.rand(log_p.shape, generator=self.generator).clamp_min(1e-20)
            gumbel = -torch.log(-torch.log(u))
            soft = torch.softmax((log_p + gumbel) / self.temperature(progress), dim=-1)
            if torch.isfinite(soft).all():
                break
        index = soft.detach().argmax(dim=-1)
        hard = torch.zeros_like(soft).scatter_(-1, index[:, None], 1.0)
        return Relaxed(hard - soft.detach() + soft, index)
