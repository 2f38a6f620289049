"""Regularized evolution (Real, Aggarwal, Huang & Le, AAAI 2019)."""

from __future__ import annotations

import collections
import functools
from dataclasses import dataclass
from typing import Sequence

from ..arch import Architecture
from ..registry import STRATEGIES
from ..result import Result
from .base import Strategy, usable
from .common import UnseenSampler


@dataclass
class EvolutionConfig:
    """Regularized evolution parameters (defaults as NASLib's for budgets of a few hundred)."""

    population: int = 30  # P: individuals kept; the oldest is removed when a child joins
    sample_size: int = 10  # S: tournament size; the best of S random members is the parent
    avoid_repeats: bool = True  # re-draw a mutation that gives an already proposed architecture

    def __post_init__(self) -> None:
        if self.population < 1 or not 1 <= self.sample_size <= self.population:
            raise ValueError("need population >= 1 and 1 <= sample_size <= population")


@STRATEGIES.register("re", aliases=("evolution",), guided=True, batch=True, prior=True, paper="Real et al. 2019")
class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution: tournament selection, one-decision mutation, oldest dies."""

    Config = EvolutionConfig

    def __init__(self, space, config: EvolutionConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.population: collections.deque = collections.deque()  # (arch, reward), oldest first
        self.sampler = UnseenSampler(space)
        self.n_asked = 0

    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        for _ in range(n):
            if self.n_asked < self.config.population or not self.population:
                out.append(self.initial_sample(self.sampler))
            else:
                parent = self._tournament()
                draw = functools.partial(self.space.mutate, parent, self.rng)
                out.append(self.sampler.propose(draw) if self.config.avoid_repeats else draw())
            self.n_asked += 1
        return out

    def _tournament(self) -> Architecture:
        size = min(self.config.sample_size, len(self.population))
        idx = self.rng.choice(len(self.population), size=size, replace=False)
        best = max(idx, key=lambda i: self.population[i][1])
        return self.population[best][0]

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            if ok:
                self.population.append((arch, float(result.reward)))
                if len(self.population) > self.config.population:
                    self.population.popleft()
