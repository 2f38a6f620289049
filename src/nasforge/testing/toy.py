"""A small space with a known optimum, and its evaluator: every strategy must find that optimum.

The toy space has two structure decisions and four operation decisions (3 x 4 x 4^4 = 3,072
architectures). Its reward is a fixed, separable score per decision plus a monotone interaction, so
the unique optimum is the best option of every decision, and a strategy that learns anything about
the decisions finds it far sooner than random search.

The toy evaluator has fidelities (1, 3 and 9 "epochs" by default, 9 being its default and full one) for
multi-fidelity strategies: a shorter training scores lower and ranks architectures only roughly (it
underrates the second structure decision), costs ``fidelity / 9``, and reports the full test accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture
from ..evaluators.base import Evaluator
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..registry import EVALUATORS, SPACES
from ..result import Result
from ..spaces.base import OPERATION, STRUCTURE, Decision, SearchSpace

_SHAPE = ((3, STRUCTURE), (4, STRUCTURE), (4, OPERATION), (4, OPERATION), (4, OPERATION), (4, OPERATION))


@SPACES.register("toy", finite=True, trainable=False, tabular=False, has_structure=True)
class ToySpace(SearchSpace):
    """Toy space with a known optimum (3,072 architectures), for tests and demos without data."""

    name = "toy"
    decisions = tuple(
        Decision(f"{'s' if g == STRUCTURE else 'o'}{i}", n, g, tuple(f"c{k}" for k in range(n)))
        for i, (n, g) in enumerate(_SHAPE)
    )

    def __init__(self, config: object = None) -> None:
        self.config = config

    @property
    def size(self) -> int:
        return int(np.prod([d.n_choices for d in self.decisions]))

    def to_string(self, choices: Sequence[int]) -> str:
        return "-".join(f"{d.name}={c}" for d, c in zip(self.decisions, choices))

    def parse(self, text: str) -> Architecture:
        parts = text.strip().split("-")
        if len(parts) != len(self.decisions):
            raise InvalidArchitecture(f"toy string {text!r}: expected {len(self.decisions)} parts 'name=choice'")
        choices = []
        for d, part in zip(self.decisions, parts):
            name, _, value = part.partition("=")
            if name != d.name or not value.isdigit():
                raise InvalidArchitecture(f"toy string {text!r}: expected '{d.name}=<int>', got {part!r}")
            choices.append(int(value))
        return self.make(choices)

    def graph(self, arch: Architecture) -> ArchGraph:
        """The toy architecture as a chain of its decisions (it has no network): each node one decision's option."""
        nodes = [GraphNode("in", "input", "input")]
        nodes += [GraphNode(d.name, f"{d.name} = {d.label(c)}") for d, c in zip(self.decisions, arch.choices)]
        nodes.append(GraphNode("out", "reward", "output"))
        edges = tuple(GraphEdge(a.id, b.id) for a, b in zip(nodes, nodes[1:]))
        return ArchGraph(self.name, "chain", (GraphPart("decisions", tuple(nodes), edges),), "toy decisions")


def toy_scores(space: SearchSpace) -> list[np.ndarray]:
    """Per-decision scores in [0, 1], a fixed shuffle so that the best option is not always the last."""
    rng = np.random.default_rng(12345)
    return [rng.permutation(np.linspace(0.0, 1.0, d.n_choices)) for d in space.decisions]


def toy_reward(space: SearchSpace, choices: Sequence[int]) -> float:
    scores = toy_scores(space)
    parts = np.array([s[c] for s, c in zip(scores, choices)])
    return float(50.0 + 40.0 * parts.mean() + 10.0 * parts[0] * parts[2])


def toy_optimum(space: SearchSpace) -> Architecture:
    return space.make([int(np.argmax(s)) for s in toy_scores(space)])


@dataclass
class ToyConfig:
    """Parameters of the toy evaluator."""

    noise: float = 0.0  # standard deviation of Gaussian noise added to the reward
    delay: float = 0.0  # seconds each evaluation sleeps (to test interruption, timeouts, parallelism)
    fidelities: list[int] = field(default_factory=lambda: [1, 3, 9])  # the last is the full (default) one

    def __post_init__(self) -> None:
        if not self.fidelities or sorted(set(self.fidelities)) != list(self.fidelities) or self.fidelities[0] < 1:
            raise ValueError(f"fidelities must be increasing positive integers, got {self.fidelities}")


@EVALUATORS.register("toy", spaces=("toy",), tabular=True, trains=False)
class ToyEvaluator(Evaluator):
    """Exact toy objective (reward in 50..100, test accuracy = reward - 0.5)."""

    Config: ClassVar[type] = ToyConfig
    cost_unit = "full trainings"

    def __init__(self, space: SearchSpace, config: ToyConfig | None = None, context: object = None) -> None:
        super().__init__(space, config, context)
        self._scores = toy_scores(space)
        # kept: a subclass may have a config of its own (the faulty evaluator), which gets the defaults
        self._fidelities = list(getattr(self.config, "fidelities", None) or ToyConfig().fidelities)

    @property
    def fidelities(self) -> tuple[float, ...]:
        return tuple(float(f) for f in self._fidelities)

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        if self.config.delay > 0:
            time.sleep(self.config.delay)
        full = self._fidelities[-1]
        if fidelity is None:
            fidelity = full
        elif fidelity not in self._fidelities:
            raise ConfigError(f"fidelity: the toy evaluator has fidelities {self._fidelities}, got {fidelity}")
        reward = toy_reward(self.space, arch.choices)
        seen = reward
        if fidelity < full:  # shorter training: lower, and blind to part of the second decision's merit
            seen -= (1.0 - fidelity / full) * (10.0 + 4.0 * float(self._scores[1][arch.choices[1]]))
        if self.config.noise > 0:
            seen += float(np.random.default_rng(seed).normal(0.0, self.config.noise))
        return Result(seen, {"test_accuracy": reward - 0.5, "fidelity": fidelity}, cost=fidelity / full)

    def optimum(self) -> tuple[Architecture, Result]:
        best = toy_optimum(self.space)
        reward = toy_reward(self.space, best.choices)
        return best, Result(reward, {"test_accuracy": reward - 0.5, "fidelity": self._fidelities[-1]}, cost=1.0)
