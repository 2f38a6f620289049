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
from typing import ClassVar, Iterator, Sequence

import numpy as np

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture
from ..evaluators.base import Evaluator
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..registry import EVALUATORS, SPACES
from ..result import Result
from ..spaces.base import BLOCKS, OPERATION, STRUCTURE, Decision, SearchSpace

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


#: blocks of a full cell of the growable toy space
TOY_BLOCKS = 3


@dataclass
class ToyBlocksConfig:
    """Parameters of the growable toy space."""

    min_blocks: int | None = None  # smallest cells held (None: full cells of TOY_BLOCKS blocks only)

    def __post_init__(self) -> None:
        if self.min_blocks is not None and not 1 <= self.min_blocks <= TOY_BLOCKS:
            raise ValueError(f"min_blocks must be in 1..{TOY_BLOCKS}, got {self.min_blocks}")


@SPACES.register("toy-blocks", finite=True, trainable=False, tabular=False, has_structure=True, growable=True)
class ToyBlocksSpace(SearchSpace):
    """Growable toy cell of up to 3 blocks (an input among the two cell inputs and earlier blocks, and one of 4
    operations per block), with a known optimum: for strategies that grow cells (PNAS)."""

    name = "toy-blocks"
    Config = ToyBlocksConfig
    max_blocks = TOY_BLOCKS

    def __init__(self, config: ToyBlocksConfig | None = None) -> None:
        self.config = config or ToyBlocksConfig()
        self.min_blocks = TOY_BLOCKS if self.config.min_blocks is None else self.config.min_blocks
        decisions = []
        for b in range(TOY_BLOCKS):
            decisions.append(Decision(f"in{b}", 2 + b, STRUCTURE, tuple(str(k) for k in range(2 + b))))
            decisions.append(Decision(f"op{b}", 4, OPERATION, tuple(f"c{k}" for k in range(4))))
        if self.min_blocks < TOY_BLOCKS:
            counts = range(self.min_blocks, TOY_BLOCKS + 1)
            decisions.append(Decision(BLOCKS, len(counts), STRUCTURE, tuple(str(c) for c in counts)))
        self.decisions = tuple(decisions)

    def blocks(self, arch: Architecture) -> int:
        return self._count(arch.choices)

    def _count(self, choices: Sequence[int]) -> int:
        return self.min_blocks + int(choices[-1]) if self.min_blocks < TOY_BLOCKS else TOY_BLOCKS

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        count = self._count(choices)
        return tuple(i // 2 < count for i in range(2 * TOY_BLOCKS)) + (True,) * (len(self.decisions) - 2 * TOY_BLOCKS)

    def graph(self, arch: Architecture) -> ArchGraph:
        """The toy cell: two inputs, each present block with its operation on the edge from its input."""
        count = self._count(arch.choices)
        nodes = [GraphNode("x0", "x0", "input"), GraphNode("x1", "x1", "input")]
        edges = []

        def source(k: int) -> str:
            return f"x{k}" if k < 2 else f"b{k - 2}"

        for b in range(count):
            nodes.append(GraphNode(f"b{b}", f"b{b}"))
            edges.append(GraphEdge(source(arch.choices[2 * b]), f"b{b}", f"c{arch.choices[2 * b + 1]}", "op"))
        nodes.append(GraphNode("out", "output", "output"))
        edges.append(GraphEdge(f"b{count - 1}", "out", "", "concat"))
        return ArchGraph(self.name, "cell", (GraphPart("cell", tuple(nodes), tuple(edges)),), "toy cell")

    def initial_cells(self) -> Iterator[Architecture]:
        return self._grown(1)

    def expand(self, arch: Architecture) -> Iterator[Architecture]:
        count = self.blocks(arch)
        if count < TOY_BLOCKS:
            yield from self._grown(count + 1, arch.choices)

    def _grown(self, count: int, base: Sequence[int] = ()) -> Iterator[Architecture]:
        if not self.min_blocks <= count <= TOY_BLOCKS:
            raise ValueError(f"toy-blocks: cells of {count} blocks need min_blocks <= {count}")
        b = count - 1
        for i in range(2 + b):
            for op in range(4):
                new = list(base) or [0] * len(self.decisions)
                new[2 * b], new[2 * b + 1] = i, op
                if self.min_blocks < TOY_BLOCKS:
                    new[-1] = count - self.min_blocks
                yield self.make(new)

    @property
    def size(self) -> int:
        per_block = [(2 + b) * 4 for b in range(TOY_BLOCKS)]
        return sum(int(np.prod(per_block[:c])) for c in range(self.min_blocks, TOY_BLOCKS + 1))

    def to_string(self, choices: Sequence[int]) -> str:
        return "|".join(f"{choices[2 * b]}~c{choices[2 * b + 1]}" for b in range(self._count(choices)))

    def parse(self, text: str) -> Architecture:
        parts = text.strip().split("|")
        if not self.min_blocks <= len(parts) <= TOY_BLOCKS:
            raise InvalidArchitecture(f"toy-blocks string {text!r}: expected {self.min_blocks}..{TOY_BLOCKS} "
                                      "blocks 'input~c<op>' joined by '|'")
        choices = [0] * len(self.decisions)
        for b, part in enumerate(parts):
            i, _, op = part.partition("~c")
            if not (i.isdigit() and op.isdigit()):
                raise InvalidArchitecture(f"toy-blocks string {text!r}: block {part!r} is not 'input~c<op>'")
            choices[2 * b], choices[2 * b + 1] = int(i), int(op)
        if self.min_blocks < TOY_BLOCKS:
            choices[-1] = len(parts) - self.min_blocks
        return self.make(choices)


def toy_scores(space: SearchSpace) -> list[np.ndarray]:
    """Per-decision scores in [0, 1], a fixed shuffle so that the best option is not always the last."""
    rng = np.random.default_rng(12345)
    return [rng.permutation(np.linspace(0.0, 1.0, d.n_choices)) for d in space.decisions]


def toy_reward(space: SearchSpace, choices: Sequence[int]) -> float:
    scores = toy_scores(space)
    if isinstance(space, ToyBlocksSpace):
        # every block adds up to 40 / TOY_BLOCKS, more for better options; the first block's two decisions
        # interact monotonically: the unique optimum is the full cell of the best options
        count = space.blocks(Architecture(space.name, tuple(choices)))
        parts = np.array([s[c] for s, c in zip(scores, choices)])[: 2 * count].reshape(count, 2).mean(1)
        return float(50.0 + 40.0 / TOY_BLOCKS * (0.5 + 0.5 * parts).sum() + 10.0 * scores[0][choices[0]]
                     * scores[1][choices[1]])
    parts = np.array([s[c] for s, c in zip(scores, choices)])
    return float(50.0 + 40.0 * parts.mean() + 10.0 * parts[0] * parts[2])


def toy_optimum(space: SearchSpace) -> Architecture:
    best = [int(np.argmax(s)) for s in toy_scores(space)]
    if isinstance(space, ToyBlocksSpace) and space.min_blocks < TOY_BLOCKS:
        best[-1] = TOY_BLOCKS - space.min_blocks  # the full cell
    return space.make(best)


@dataclass
class ToyConfig:
    """Parameters of the toy evaluator."""

    noise: float = 0.0  # standard deviation of Gaussian noise added to the reward
    delay: float = 0.0  # seconds each evaluation sleeps (to test interruption, timeouts, parallelism)
    fidelities: list[int] = field(default_factory=lambda: [1, 3, 9])  # the last is the full (default) one

    def __post_init__(self) -> None:
        if not self.fidelities or sorted(set(self.fidelities)) != list(self.fidelities) or self.fidelities[0] < 1:
            raise ValueError(f"fidelities must be increasing positive integers, got {self.fidelities}")


@EVALUATORS.register("toy", spaces=("toy", "toy-blocks"), tabular=True, trains=False, any_blocks=True)
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
