"""The NAS-Bench-101 cell space (Ying et al. 2019): a DAG of up to 7 vertices and 9 edges.

Vertex 0 is the cell input and vertex 6 the output; each of the 5 interior vertices is one of
``conv3x3-bn-relu``, ``conv1x1-bn-relu``, ``maxpool3x3``. Decisions: the 21 upper-triangular
adjacency bits (structure), then the 5 interior operations.

The benchmark's rules, as in ``nasbench/lib/model_spec.py`` and ``api.py``:

- vertices not on an input-to-output path are pruned together with their edges; a graph without
  such a path is invalid;
- the 9-edge limit applies to the *pruned* graph (the benchmark checks the pruned spec), so raw
  choices with dangling extra edges are valid and mean their pruned graph.

Canonical form: :meth:`make` prunes, then renumbers the kept interior vertices ``1..k`` in their
order, leaving the free slots ``k+1..5`` with no edges and operation 0. So one pruned graph (with
its vertex order) has one architecture value, and the string form is exactly the pruned adjacency
matrix. :meth:`key` is the iterated in/out-degree + label hash of the pruned graph (the idea of
``graph_util.hash_module``), equal for isomorphic cells and equal to the benchmark's own module hash
(checked on a released cell), so NAS-Bench-101 data keyed by that hash can be looked up with it. The
built network matches the benchmark's too (same trainable parameter count on that cell).

:meth:`neighbours` and :meth:`mutate` work on that canonical form: flip an edge between kept
vertices, change a kept vertex's operation, or add a vertex (an edge from a kept vertex into the
first free slot plus that slot's edge to the output, with an operation drawn anew): one bit alone
can never revive a pruned vertex, and without this move a search could only shrink cells.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..models.nb101_net import NB101Net
from ..ops.macro_ops import NB101_OPS
from ..registry import SPACES
from .base import OPERATION, STRUCTURE, Decision, SearchSpace

NUM_VERTICES = 7
MAX_EDGES = 9
OUTPUT = NUM_VERTICES - 1
EDGES = tuple((i, j) for i in range(NUM_VERTICES) for j in range(i + 1, NUM_VERTICES))  # row-major
OP_LABELS = tuple(label for label, _ in NB101_OPS)
_ALIASES = {**{label: label for label in OP_LABELS}, "conv3x3": OP_LABELS[0], "conv1x1": OP_LABELS[1],
            "maxpool": OP_LABELS[2]}
_EDGE_INDEX = {edge: k for k, edge in enumerate(EDGES)}
_OP_OFFSET = len(EDGES)  # decision index of vertex 1's operation


@dataclass
class NB101ModelArgs:
    """Size of the network built by :meth:`NB101Space.build` (NAS-Bench-101: 128, 3, 3)."""

    C: int = 128  # stem and first-stack channels, doubled at each later stack
    stacks: int = 3  # stacks of cells, separated by 2x2 max pooling
    cells: int = 3  # cells per stack

    def __post_init__(self) -> None:
        if self.C < NUM_VERTICES - 2:
            # Up to 5 vertices split the output channels; each needs at least one.
            raise ValueError(f"C must be at least {NUM_VERTICES - 2}, got {self.C}")
        if self.stacks < 1 or self.cells < 1:
            raise ValueError(f"stacks and cells must be positive, got stacks={self.stacks}, cells={self.cells}")


# ----------------------------------------------------------------- graph helpers
def adjacency(choices: Sequence[int]) -> np.ndarray:
    """The 7x7 upper-triangular adjacency matrix of a choice tuple."""
    matrix = np.zeros((NUM_VERTICES, NUM_VERTICES), dtype=np.int64)
    for (i, j), bit in zip(EDGES, choices):
        matrix[i, j] = bit
    return matrix


def _reachable(matrix: np.ndarray, start: int) -> set[int]:
    seen, stack = {start}, [start]
    while stack:
        v = stack.pop()
        for w in np.flatnonzero(matrix[v]):
            if int(w) not in seen:
                seen.add(int(w))
                stack.append(int(w))
    return seen


def kept_vertices(matrix: np.ndarray) -> list[int]:
    """Vertices on some input-to-output path, in order (empty if there is no such path)."""
    n = len(matrix)
    forward = _reachable(matrix, 0)
    if n - 1 not in forward:
        return []
    backward = _reachable(matrix.T, n - 1)
    return sorted(forward & backward)


def prune(choices: Sequence[int]) -> tuple[np.ndarray, list[str]] | None:
    """The pruned adjacency matrix and its operations (``input``, interior labels, ``output``), or None
    if the output is not reachable from the input."""
    matrix = adjacency(choices)
    kept = kept_vertices(matrix)
    if not kept:
        return None
    ops = ["input"] + [OP_LABELS[choices[_OP_OFFSET + v - 1]] for v in kept[1:-1]] + ["output"]
    return matrix[np.ix_(kept, kept)], ops


def _pruned(choices: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """:func:`prune` of an architecture of the space, whose output :meth:`NB101Space.check` made reachable."""
    pruned = prune(choices)
    assert pruned is not None, "no path from the input to the output: not an nb101 architecture"
    return pruned


def graph_hash(matrix: np.ndarray, labels: Sequence[int]) -> str:
    """Isomorphism-invariant fingerprint of a labelled DAG (NAS-Bench-101's ``hash_module`` idea).

    Each vertex starts from (out-degree, in-degree, label) and, as many rounds as there are vertices,
    absorbs the sorted hashes of its predecessors and successors; the fingerprint hashes the sorted
    vertex hashes. Labels: -1 input, -2 output, operation index otherwise, as the benchmark's.
    """

    def md5(text: str) -> str:
        return hashlib.md5(text.encode("utf-8")).hexdigest()

    n = len(matrix)
    ins, outs = matrix.sum(axis=0).tolist(), matrix.sum(axis=1).tolist()
    hashes = [md5(str((outs[v], ins[v], labels[v]))) for v in range(n)]
    for _ in range(n):
        hashes = [
            md5(
                "".join(sorted(hashes[w] for w in range(n) if matrix[w, v]))
                + "|"
                + "".join(sorted(hashes[w] for w in range(n) if matrix[v, w]))
                + "|"
                + hashes[v]
            )
            for v in range(n)
        ]
    return md5(str(sorted(hashes)))


# ----------------------------------------------------------------- the space
@SPACES.register("nb101", finite=False, trainable=True, tabular=False, has_structure=True)
class NB101Space(SearchSpace):
    """NAS-Bench-101 cells: 7x7 upper-triangular adjacency (<= 9 edges after pruning) + 5 operations.

    :meth:`build` model arguments: ``C`` (128, stem and first-stack channels), ``stacks`` (3),
    ``cells`` (3 per stack). String form: the pruned adjacency matrix row by row and the vertex
    operations, e.g. ``adj=0110/0001/0001/0000 ops=input,conv3x3-bn-relu,maxpool3x3,output``
    (``conv3x3``, ``conv1x1`` and ``maxpool`` are accepted as short names; an unpruned matrix of up to 7
    vertices is read and pruned). :attr:`size` is None: the benchmark's 423,624 unique cells are not
    enumerated here.
    """

    name = "nb101"
    model_args = NB101ModelArgs
    decisions = tuple(Decision(f"edge_{i}->{j}", 2, STRUCTURE, ("0", "1")) for i, j in EDGES) + tuple(
        Decision(f"op_{v}", len(OP_LABELS), OPERATION, OP_LABELS) for v in range(1, OUTPUT)
    )

    def __init__(self, config: object = None) -> None:
        self.config = config

    # ----------------------------------------------------------------- validity and canonical form
    def check(self, choices: Sequence[int]) -> str | None:
        reason = super().check(choices)
        if reason:
            return reason
        pruned = prune(choices)
        if pruned is None:
            return "no path from the input (vertex 0) to the output (vertex 6)"
        edges = int(pruned[0].sum())
        if edges > MAX_EDGES:
            return f"{edges} edges after pruning, at most {MAX_EDGES} allowed"
        return None

    def canonical(self, choices: Sequence[int]) -> tuple[int, ...]:
        matrix = adjacency(choices)
        kept = kept_vertices(matrix)
        if not kept:
            return tuple(int(c) for c in choices)
        # Kept interior vertices move to slots 1..k in order; the output stays at slot 6.
        slots = list(range(len(kept) - 1)) + [OUTPUT]
        new = [0] * len(self.decisions)
        for a, sa in zip(kept, slots):
            for b, sb in zip(kept, slots):
                if matrix[a, b]:
                    new[_EDGE_INDEX[(sa, sb)]] = 1
            if 0 < a < OUTPUT:
                new[_OP_OFFSET + sa - 1] = int(choices[_OP_OFFSET + a - 1])
        return tuple(new)

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        kept = set(kept_vertices(adjacency(choices)))
        if not kept:
            return (True,) * len(EDGES) + (False,) * (OUTPUT - 1)
        edges = tuple(i in kept and j in kept for i, j in EDGES)
        return edges + tuple(v in kept for v in range(1, OUTPUT))

    def key(self, arch: Architecture) -> Hashable:
        """Hash of the pruned cell: isomorphic cells (same graph and operations) share it."""
        matrix, ops = _pruned(arch.choices)
        labels = [-1] + [OP_LABELS.index(op) for op in ops[1:-1]] + [-2]
        return graph_hash(matrix, labels)

    # ----------------------------------------------------------------- moves
    def _moves(self, choices: Sequence[int]) -> list[list[int]]:
        """Raw choice lists one move away (see the module docstring); may be invalid or equal."""
        kept = kept_vertices(adjacency(choices))
        free = len(kept) - 1 if len(kept) < NUM_VERTICES else None  # first free slot of the canonical form
        moves = []
        for k, (i, j) in enumerate(EDGES):
            if i in kept and j in kept:
                moves.append(_with(choices, {k: 1 - choices[k]}))
            elif j == free and i in kept:
                for op in range(len(OP_LABELS)):
                    grow = {k: 1, _EDGE_INDEX[(free, OUTPUT)]: 1, _OP_OFFSET + free - 1: op}
                    moves.append(_with(choices, grow))
        for v in kept[1:-1]:
            d = _OP_OFFSET + v - 1
            moves.extend(_with(choices, {d: op}) for op in range(len(OP_LABELS)) if op != choices[d])
        return moves

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every distinct valid cell one move away: edge flip, operation change or added vertex."""
        out: dict[tuple[int, ...], Architecture] = {}
        for move in self._moves(arch.choices):
            if self.check(move) is None:
                new = self.make(move)
                if new != arch:
                    out.setdefault(new.choices, new)
        return list(out.values())

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """One random move (uniform over the moves) that gives another valid cell; ``arch`` if none does."""
        moves = self._moves(arch.choices)
        for k in rng.permutation(len(moves)):
            if self.check(moves[k]) is None:
                new = self.make(moves[k])
                if new != arch:
                    return new
        return arch

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        matrix, ops = _pruned(choices)
        rows = "/".join("".join(str(int(b)) for b in row) for row in matrix)
        return f"adj={rows} ops={','.join(ops)}"

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        match = re.fullmatch(r"adj=([01/]+)[\s;]+ops=([\w\-,]+)", text)
        if not match:
            raise InvalidArchitecture(f"nb101 string {text!r}: expected 'adj=ROW/ROW/... ops=input,...,output'")
        rows = match.group(1).split("/")
        ops = match.group(2).split(",")
        n = len(rows)
        if not 2 <= n <= NUM_VERTICES:
            raise InvalidArchitecture(f"nb101 string {text!r}: {n} vertices, expected 2 to {NUM_VERTICES}")
        if any(len(row) != n for row in rows):
            raise InvalidArchitecture(f"nb101 string {text!r}: the adjacency matrix must be {n}x{n}")
        if len(ops) != n:
            raise InvalidArchitecture(f"nb101 string {text!r}: {len(ops)} operations for {n} vertices")
        if ops[0] != "input" or ops[-1] != "output":
            raise InvalidArchitecture(
                f"nb101 string {text!r}: operations must start with 'input' and end with 'output'"
            )
        unknown = [op for op in ops[1:-1] if op not in _ALIASES]
        if unknown:
            raise InvalidArchitecture(
                f"nb101 string {text!r}: unknown operation {unknown[0]!r} (known: {', '.join(OP_LABELS)})"
            )
        slots = list(range(n - 1)) + [OUTPUT]
        choices = [0] * len(self.decisions)
        for a, row in enumerate(rows):
            for b, bit in enumerate(row):
                if bit == "1":
                    if b <= a:
                        raise InvalidArchitecture(
                            f"nb101 string {text!r}: edge {a}->{b} is not upper triangular (vertices must be in order)"
                        )
                    choices[_EDGE_INDEX[(slots[a], slots[b])]] = 1
        for v, op in enumerate(ops[1:-1], start=1):
            choices[_OP_OFFSET + v - 1] = OP_LABELS.index(_ALIASES[op])
        return self.make(choices)

    def graph(self, arch: Architecture) -> ArchGraph:
        """The pruned cell: operations on the vertices (NAS-Bench-101's own drawing), the output concatenating."""
        matrix, ops = _pruned(arch.choices)
        last = len(ops) - 1
        nodes = tuple(GraphNode(str(v), op, "input" if v == 0 else "output" if v == last else "node")
                      for v, op in enumerate(ops))
        edges = tuple(GraphEdge(str(a), str(b), "", "concat" if b == last and a != 0 else "data")
                      for a in range(len(ops)) for b in range(len(ops)) if matrix[a, b])
        return ArchGraph(self.name, "cell", (GraphPart("cell", nodes, edges),), "NAS-Bench-101 cell")

    # ----------------------------------------------------------------- models
    def build(self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any) -> nn.Module:
        """The NAS-Bench-101 network of ``arch``; ``model_args``: ``C`` (128), ``stacks`` (3), ``cells`` (3)."""
        args = build_config(NB101ModelArgs, model_args, "model")
        self.validate(arch)
        matrix, ops = _pruned(arch.choices)
        return NB101Net(matrix, ops, num_classes, in_channels, args.C, args.stacks, args.cells)


def _with(choices: Sequence[int], changes: dict[int, int]) -> list[int]:
    new = list(choices)
    for k, v in changes.items():
        new[k] = v
    return new
