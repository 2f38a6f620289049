"""A plain-data picture of an architecture: what :meth:`SearchSpace.graph` returns and the report draws.

An :class:`ArchGraph` is one or more :class:`GraphPart` s (a DARTS genotype has two, the normal and
the reduction cell, drawn side by side), each a small directed acyclic graph of :class:`GraphNode` s
and :class:`GraphEdge` s. Operations sit on edges in cell spaces (NASNet/DARTS style: ``op`` labels) and
on nodes in macro and NAS-Bench-101 style spaces. Node ``role`` s tell a renderer how to draw a node:

- ``input``: what enters the cell or network (``c_{k-2}``, the stem, ``x_t``);
- ``node``: an intermediate node (a sum in a DARTS cell, a layer in a chain);
- ``output``: what leaves it (the concatenation, ``h_t``, the classifier).

Edge ``kind`` s: ``op`` (an operation on the edge), ``skip`` (a skip connection of a macro network),
``concat`` (into a concatenating output) and ``data`` (a plain connection). The ``kind`` of the whole
graph is ``cell``, ``chain`` or ``rnn``. Nothing here depends on a drawing library: the data can be
serialised (:meth:`ArchGraph.to_dict`) and checked (:meth:`ArchGraph.problem`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ROLES = ("input", "node", "output")
EDGE_KINDS = ("op", "skip", "concat", "data")
GRAPH_KINDS = ("cell", "chain", "rnn")


@dataclass(frozen=True)
class GraphNode:
    """A node: its id (unique within its part), the text drawn in it, and its role."""

    id: str
    label: str
    role: str = "node"


@dataclass(frozen=True)
class GraphEdge:
    """A directed edge ``src -> dst`` with an optional label (the operation) and its kind."""

    src: str
    dst: str
    label: str = ""
    kind: str = "data"


@dataclass(frozen=True)
class GraphPart:
    """One drawable DAG: a cell (``normal``, ``reduce``), a network or a recurrent cell."""

    name: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]


@dataclass(frozen=True)
class ArchGraph:
    """The picture of one architecture: its space, the kind of drawing and the parts drawn side by side."""

    space: str
    kind: str
    parts: tuple[GraphPart, ...]
    title: str = ""
    notes: tuple[str, ...] = field(default=())

    def problem(self) -> str | None:
        """Why this is not a drawable graph, or None (used by the conformance suite)."""
        if self.kind not in GRAPH_KINDS:
            return f"kind {self.kind!r} is not one of {', '.join(GRAPH_KINDS)}"
        if not self.parts:
            return "no parts"
        for part in self.parts:
            where = f"part {part.name!r}"
            ids = [n.id for n in part.nodes]
            if not ids:
                return f"{where} has no nodes"
            if len(set(ids)) != len(ids):
                return f"{where}: node ids are not unique"
            for n in part.nodes:
                if n.role not in ROLES:
                    return f"{where}: node {n.id!r} has role {n.role!r}, not one of {', '.join(ROLES)}"
            if not any(n.role == "input" for n in part.nodes) or not any(n.role == "output" for n in part.nodes):
                return f"{where} needs at least one input and one output node"
            known = set(ids)
            for e in part.edges:
                if e.src not in known or e.dst not in known:
                    return f"{where}: edge {e.src!r} -> {e.dst!r} names an unknown node"
                if e.kind not in EDGE_KINDS:
                    return f"{where}: edge {e.src!r} -> {e.dst!r} has kind {e.kind!r}, not one of {', '.join(EDGE_KINDS)}"
            if _has_cycle(ids, [(e.src, e.dst) for e in part.edges]):
                return f"{where} has a cycle"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "space": self.space, "kind": self.kind, "title": self.title, "notes": list(self.notes),
            "parts": [{"name": p.name,
                       "nodes": [{"id": n.id, "label": n.label, "role": n.role} for n in p.nodes],
                       "edges": [{"src": e.src, "dst": e.dst, "label": e.label, "kind": e.kind} for e in p.edges]}
                      for p in self.parts],
        }


def layers(part: GraphPart) -> dict[str, int]:
    """Each node's depth: the length of the longest path to it from a node without incoming edges."""
    incoming: dict[str, list[str]] = {n.id: [] for n in part.nodes}
    for e in part.edges:
        incoming[e.dst].append(e.src)
    depth: dict[str, int] = {}

    def visit(node: str) -> int:
        if node not in depth:
            depth[node] = 0  # a guard against cycles; problem() reports them
            depth[node] = max((visit(s) + 1 for s in incoming[node]), default=0)
        return depth[node]

    for n in part.nodes:
        visit(n.id)
    return depth


def _has_cycle(ids: list[str], edges: list[tuple[str, str]]) -> bool:
    out: dict[str, list[str]] = {i: [] for i in ids}
    for a, b in edges:
        out[a].append(b)
    state: dict[str, int] = {}

    def visit(v: str) -> bool:
        state[v] = 1
        for w in out[v]:
            if state.get(w) == 1 or (w not in state and visit(w)):
                return True
        state[v] = 2
        return False

    return any(v not in state and visit(v) for v in ids)


def cell_part(name: str, inputs: list[tuple[str, str]], nodes: list[list[tuple[str, str]]],
              output: tuple[str, str], concat: list[str]) -> GraphPart:
    """A NASNet/DARTS-style cell: inputs, intermediate nodes that sum operations on their incoming edges,
    and an output that concatenates some of them.

    Args:
        name: the part's name (``normal``, ``reduce``).
        inputs: ``(id, label)`` of each input node (``("c_k-2", "c_{k-2}")``...).
        nodes: per intermediate node ``k`` (id and label ``str(k)``), its incoming ``(operation, source id)`` edges.
        output: ``(id, label)`` of the output node.
        concat: the intermediate node ids concatenated into the output.
    """
    graph_nodes = [GraphNode(i, label, "input") for i, label in inputs]
    edges = []
    for k, incoming in enumerate(nodes):
        graph_nodes.append(GraphNode(str(k), str(k), "node"))
        edges += [GraphEdge(src, str(k), op, "op") for op, src in incoming]
    graph_nodes.append(GraphNode(output[0], output[1], "output"))
    edges += [GraphEdge(k, output[0], "", "concat") for k in concat]
    return GraphPart(name, tuple(graph_nodes), tuple(edges))
