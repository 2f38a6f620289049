"""Pareto regularised evolution: regularised evolution with NSGA-II's selection (Deb et al. 2002).

The population and the mutation are those of regularised evolution (Real et al. 2019); only the comparison
changes. A tournament's winner is the member of the best non-dominated front of the population, ties broken
by the larger crowding distance (NSGA-II's crowded-comparison operator), so that parents spread along the
front instead of crowding at its accurate end. With one objective the fronts are the reward order and the
strategy is regularised evolution.

Constraints are handled as in NSGA-II's constrained domination: an infeasible architecture (an evaluator
reports it failed with ``metrics["infeasible"]`` and its ``violation``) joins the population but loses to every
feasible one, and between infeasible ones the smaller violation wins, so that a population that starts outside
the constraints is led back into them. Other failures teach nothing and are dropped.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..arch import Architecture
from ..objectives import INFEASIBLE, crowding_distance, nondominated_sort, parse_objectives
from ..registry import STRATEGIES
from ..result import Result
from .base import Strategy
from .common import UnseenSampler

log = logging.getLogger(__name__)


@dataclass
class Nsga2Config:
    """Pareto regularised-evolution parameters (the population and tournament of ``re``)."""

    objectives: list[str] = field(default_factory=list)  # the run's --objective (the factory fills it); none: accuracy
    population: int = 30  # individuals kept
    sample_size: int = 10  # tournament size: the best of S random members (by front, then crowding) is the parent
    removal: str = "oldest"  # oldest (regularised evolution's aging) | worst (NSGA-II's elitism: last front, most crowded)
    avoid_repeats: bool = True  # re-draw a mutation that gives an already proposed architecture

    def __post_init__(self) -> None:
        if self.population < 1 or not 1 <= self.sample_size <= self.population:
            raise ValueError("need population >= 1 and 1 <= sample_size <= population")
        if self.removal not in ("oldest", "worst"):
            raise ValueError(f"removal must be oldest or worst, got {self.removal!r}")
        parse_objectives(self.objectives, "strategy.objectives")


@STRATEGIES.register("nsga2", aliases=("re-pareto",), guided=True, batch=True, multiobjective=True,
                     paper="Deb et al. 2002; Real et al. 2019")
class Nsga2(Strategy):
    """Regularised evolution whose tournaments compare by non-dominated front, then crowding distance."""

    Config = Nsga2Config

    def __init__(self, space: Any, config: Nsga2Config | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        # (arch, objective values in maximisation form, violation): oldest first; violation 0 when feasible
        self.population: collections.deque = collections.deque()
        self.sampler = UnseenSampler(space)
        self.n_asked = 0
        self.n_missing = 0  # feasible results without every objective (an evaluator that does not report it)

    @property
    def _objectives(self) -> list[Any]:
        return parse_objectives(self.config.objectives or ["accuracy"], "strategy.objectives")

    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        for _ in range(n):
            if self.n_asked < self.config.population or not self.population:
                out.append(self.sampler.sample(self.rng))
            else:
                parent = self._tournament()
                draw = functools.partial(self.space.mutate, parent, self.rng)
                out.append(self.sampler.propose(draw) if self.config.avoid_repeats else draw())
            self.n_asked += 1
        return out

    def ranking(self) -> tuple[np.ndarray, np.ndarray]:
        """Each member's front (0 best; infeasible members after all feasible ones, by violation) and its
        crowding distance within that front."""
        n = len(self.population)
        front = np.zeros(n, dtype=np.int64)
        crowd = np.zeros(n)
        feasible = [i for i, m in enumerate(self.population) if m[2] == 0]
        if feasible:
            values = np.array([self.population[i][1] for i in feasible], dtype=np.float64)
            for k, members in enumerate(nondominated_sort(values)):
                idx = [feasible[j] for j in members]
                front[idx] = k
                crowd[idx] = crowding_distance(values[members])
        infeasible = sorted((i for i, m in enumerate(self.population) if m[2] > 0), key=lambda i: self.population[i][2])
        base = int(front[feasible].max()) + 1 if feasible else 0
        last = math.nan
        k = base - 1
        for i in infeasible:  # equal violations share a front
            if self.population[i][2] != last:
                k, last = k + 1, self.population[i][2]
            front[i] = k
        return front, crowd

    def _tournament(self) -> Architecture:
        front, crowd = self.ranking()
        size = min(self.config.sample_size, len(self.population))
        idx = self.rng.choice(len(self.population), size=size, replace=False)
        best = min(idx, key=lambda i: (front[i], -crowd[i]))
        return self.population[best][0]

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        objectives = self._objectives
        for arch, result in zip(archs, results):
            member: tuple[Architecture, tuple[float, ...], float]
            if result.failed:
                violation = result.metrics.get("violation")
                if not result.metrics.get(INFEASIBLE) or violation is None:
                    continue
                member = (arch, (), float(violation))
            else:
                values = [o.value(result) for o in objectives]
                if any(v is None for v in values):
                    self.n_missing += 1
                    if self.n_missing == 1:
                        log.warning("nsga2: a result lacks objective %s (metrics: %s); such results are ignored",
                                    next(str(o) for o, v in zip(objectives, values) if v is None),
                                    ", ".join(sorted(result.metrics)))
                    continue
                member = (arch, tuple(float(v) for v in values if v is not None), 0.0)
            self.population.append(member)
            if len(self.population) > self.config.population:
                self._remove()

    def _remove(self) -> None:
        if self.config.removal == "oldest":
            self.population.popleft()
            return
        front, crowd = self.ranking()
        worst = max(range(len(self.population)), key=lambda i: (front[i], -crowd[i], -i))
        del self.population[worst]

    def status(self) -> dict[str, float]:
        if not self.population:
            return {}
        front, _ = self.ranking()
        return {"front size": float(np.sum(front == 0))}
