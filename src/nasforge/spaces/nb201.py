"""NAS-Bench-201: a cell of 4 nodes, each of the 6 edges (j -> i, j < i) one of 5 operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..models.nb201_net import NB201Network
from ..registry import SPACES
from .base import OPERATION, Decision, SearchSpace

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))  # (to, from), string order
NONE = NB201_OPS.index("none")


@dataclass
class NB201ModelArgs:
    """Size of the NAS-Bench-201 network built by :meth:`NB201Space.build`."""

    C: int = 16  # channels of the first stage (then 2C, 4C)
    N: int = 5  # cells per stage

    def __post_init__(self) -> None:
        if self.C < 1 or self.N < 1:
            raise ValueError(f"C and N must be positive, got C={self.C}, N={self.N}")


@SPACES.register("nb201", finite=True, trainable=True, tabular=True, has_structure=False)
class NB201Space(SearchSpace):
    """NAS-Bench-201 / NATS-Bench topology space: 6 edges x 5 operations, 15,625 cells.

    :meth:`build` gives the NAS-Bench-201 network (:class:`~nasforge.models.NB201Network`); its
    model arguments are ``C`` (first-stage channels, 16) and ``N`` (cells per stage, 5).
    """

    name = "nb201"
    model_args = NB201ModelArgs
    decisions = tuple(
        Decision(f"edge_{i}<-{j}", len(NB201_OPS), OPERATION, NB201_OPS) for i, j in NB201_EDGES
    )

    def __init__(self, config: object = None) -> None:
        self.config = config

    @property
    def size(self) -> int:
        return len(NB201_OPS) ** len(NB201_EDGES)

    def effective(self, arch: Architecture) -> Architecture:
        """Edges whose source no input reaches, or whose target reaches no output, become ``none``; a cell whose
        output no input reaches is all ``none`` (each such cell of NAS-Bench-201 outputs zeros)."""
        live = [c != NONE for c in arch.choices]
        reached = {0}
        for k, (i, j) in enumerate(NB201_EDGES):  # edges into lower nodes come first
            if live[k] and j in reached:
                reached.add(i)
        reaching = {3}
        for k, (i, j) in reversed(list(enumerate(NB201_EDGES))):  # edges out of higher nodes come first
            if live[k] and i in reaching:
                reaching.add(j)
        if 3 not in reached:
            choices = (NONE,) * len(NB201_EDGES)
        else:
            choices = tuple(c if j in reached and i in reaching else NONE
                            for c, (i, j) in zip(arch.choices, NB201_EDGES))
        return arch if choices == arch.choices else self.make(choices)

    def to_string(self, choices: Sequence[int]) -> str:
        groups, k = [], 0
        for i in range(1, 4):
            ops = []
            for j in range(i):
                ops.append(f"{NB201_OPS[choices[k]]}~{j}")
                k += 1
            groups.append("|" + "|".join(ops) + "|")
        return "+".join(groups)

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        groups = text.split("+")
        if len(groups) != 3:
            raise InvalidArchitecture(
                f"nb201 string {text!r}: expected 3 node groups separated by '+', got {len(groups)}"
            )
        choices = []
        for i, group in enumerate(groups, start=1):
            if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
                raise InvalidArchitecture(f"nb201 string {text!r}: node {i} group {group!r} must be '|op~j|...|'")
            items = group[1:-1].split("|")
            if len(items) != i:
                raise InvalidArchitecture(
                    f"nb201 string {text!r}: node {i} must have {i} incoming edges, got {len(items)}"
                )
            for j, item in enumerate(items):
                op, tilde, src = item.partition("~")
                if not tilde:
                    raise InvalidArchitecture(f"nb201 string {text!r}: edge {item!r} must be 'op~{j}'")
                if op not in NB201_OPS:
                    raise InvalidArchitecture(
                        f"nb201 string {text!r}: unknown operation {op!r} (known: {', '.join(NB201_OPS)})"
                    )
                if src != str(j):
                    raise InvalidArchitecture(
                        f"nb201 string {text!r}: node {i}, edge {j + 1} must come from node {j}, got ~{src}"
                    )
                choices.append(NB201_OPS.index(op))
        return self.make(choices)

    def cell(self, arch: Architecture) -> list[list[tuple[str, int]]]:
        """The cell as per-node incoming edges ``(operation, input node)``, node 0 the cell input."""
        edges = iter(NB201_OPS[c] for c in arch.choices)
        return [[(next(edges), j) for j in range(i)] for i in range(1, 4)]

    def graph(self, arch: Architecture) -> ArchGraph:
        """The cell: node 0 the input, node 3 the output, operations on the edges (``none`` edges are absent)."""
        nodes = (GraphNode("0", "0 (in)", "input"), GraphNode("1", "1"), GraphNode("2", "2"),
                 GraphNode("3", "3 (out)", "output"))
        edges = tuple(GraphEdge(str(j), str(i), op, "op")
                      for i, incoming in enumerate(self.cell(arch), start=1) for op, j in incoming if op != "none")
        return ArchGraph(self.name, "cell", (GraphPart("cell", nodes, edges),), "NAS-Bench-201 cell")

    def build(
        self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any
    ) -> nn.Module:
        """The NAS-Bench-201 network of ``arch``; ``model_args``: ``C`` (16), ``N`` (5)."""
        args = build_config(NB201ModelArgs, model_args, "model")
        self.validate(arch)
        return NB201Network(self.cell(arch), num_classes, in_channels, C=args.C, N=args.N)
