"""Shared-weight cells: every candidate operation on every possible edge exists once, a step runs one path.

:class:`SharedDAGCell` is the weight-sharing counterpart of :class:`~nasforge.ops.cell_ops.DAGCell`: it
holds, for each edge ``src -> node`` (``src < node``) an :class:`torch.nn.ModuleDict` of every candidate
operation, and its forward runs only the edges and operations of the cell description it is given
(ENAS' single path, ``M = 1``), so that a step costs what the sampled child costs.

The description is handed over through :attr:`SharedDAGCell.selected` rather than a forward argument
because the fixed networks' containers (e.g. :class:`~nasforge.models.darts_net.DartsCell`) call their
cell as ``dag(s0, s1, drop_prob=p)``: keeping that call lets the super-networks reuse the fixed
networks' stems, preprocessing, heads and module names unchanged. :func:`selecting` sets it for the
duration of one forward pass only.

Differentiable one-shot search (DARTS, GDAS) runs the cell *relaxed* instead: :attr:`SharedDAGCell.mixture`
(set by :func:`mixing`) holds a weight for every candidate operation of every edge, and each node is the sum
over all its incoming edges of the weighted sum of their operations. Any super-network built from shared
cells gets this forward by mapping its cells to rows of architecture weights.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import OPS
from ..ops.cell_ops import (
    CellDescription,
    DAGCell,
    FactorizedReduce,
    ReLUConvBN,
    Zero,
    cell_output,
    edge_stride,
    node_sum,
)


@dataclass
class Mixture:
    """The relaxed choice of one cell: ``weights[e, k]`` multiplies operation ``k`` (the cell's ``ops`` order)
    of edge ``e``.

    With ``index`` (one operation per edge; GDAS' hard sample) only the indexed operation runs; every other
    operation contributes its weight alone, a number that is zero for a straight-through one-hot weight
    but carries the gradient to it (GDAS' implementation does the same). A step then costs one operation
    per edge instead of all of them.
    An edge indexed -1 runs nothing and contributes its weights alone (a ``nasnet`` block input's sources
    other than the sampled one).
    """

    weights: torch.Tensor
    index: torch.Tensor | None = None


class SharedDAGCell(nn.Module):
    """A DAG cell holding all candidate operations on all edges; runs the selected description only.

    Args:
        C: channels of every node.
        n_inputs: number of input nodes (1 for NAS-Bench-201, 2 for DARTS-like cells).
        n_nodes: number of intermediate nodes; node ``n`` may take any earlier node as input.
        ops: names of the candidate operations (keys of each edge's ``ModuleDict``).
        reduction: edges leaving an input node have stride 2.
        output: nodes concatenated as the output (default all intermediate nodes; one index returns
            that node itself), as in :class:`~nasforge.ops.cell_ops.DAGCell`.
        affine: learnable batch-norm scale and shift inside the candidate operations.

    A cell whose output concatenates every intermediate node (DARTS) also runs a description of fewer nodes
    (the first ``k``; a growing cell, PNAS): its output is then the concatenation of those ``k`` nodes, as the
    fixed cell of ``k`` nodes computes, ``k * C`` channels wide.

    ``edges[edge_index[(node, src)]][op]`` is the module of operation ``op`` on edge ``src -> node``;
    edges are numbered node by node, sources in increasing order (NAS-Bench-301's and NAS-Bench-201's
    order: 14 edges for 2 inputs and 4 nodes, 6 for 1 input and 3 nodes).
    """

    def __init__(
        self,
        C: int,
        n_inputs: int,
        n_nodes: int,
        ops: Sequence[str],
        reduction: bool = False,
        output: Sequence[int] | None = None,
        affine: bool = False,
    ) -> None:
        super().__init__()
        self.C = C
        self.n_inputs = n_inputs
        self.ops = tuple(ops)
        self.edge_index: dict[tuple[int, int], int] = {}
        self.edges = nn.ModuleList()
        for node in range(n_inputs, n_inputs + n_nodes):
            for src in range(node):
                self.edge_index[(node, src)] = len(self.edges)
                stride = edge_stride(src, n_inputs, reduction)
                self.edges.append(nn.ModuleDict({op: OPS.create(op, C, C, stride, affine) for op in self.ops}))
        last = n_inputs + n_nodes
        self.n_nodes = n_nodes
        self.output = tuple(output) if output is not None else tuple(range(n_inputs, last))
        self.concat_all = self.output == tuple(range(n_inputs, last))  # a smaller description can run
        self.selected: CellDescription | None = None
        self.mixture: Mixture | None = None

    @property
    def multiplier(self) -> int:
        """Output channels divided by ``C``."""
        return len(self.output)

    def locate(self, node: int, src: int, op: str) -> int:
        """Index of edge ``src -> node``, checking that ``op`` is one of its candidates."""
        index = self.edge_index.get((node, src))
        if index is None or op not in self.ops:
            raise ValueError(f"node {node}: edge ({op!r}, {src}) is not a candidate of this cell")
        return index

    def path(self, nodes: CellDescription) -> list[tuple[int, str]]:
        """``(edge index, operation)`` of each edge of a description, in description order."""
        return [(self.locate(self.n_inputs + i, src, op), op) for i, node in enumerate(nodes) for op, src in node]

    def _op(self, edge: int, name: str) -> nn.Module:
        ops = self.edges[edge]
        assert isinstance(ops, nn.ModuleDict)  # one candidate operation per name on every edge
        return ops[name]

    def forward(self, *inputs: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        if self.mixture is not None:
            return self.forward_mixed(list(inputs), self.mixture)
        if self.selected is None:
            raise RuntimeError("a shared cell runs one sampled path: call the super-network with an architecture")
        states = list(inputs)
        # Same order of operations and sums as DAGCell, so that a child with inherited weights
        # computes the same numbers.
        for i, node in enumerate(self.selected):
            edges = [(self._op(self.locate(self.n_inputs + i, src, name), name), states[src]) for name, src in node]
            states.append(node_sum(edges, self.training, drop_prob))
        return cell_output(states, self.outputs(len(self.selected)))

    def outputs(self, n_nodes: int) -> tuple[int, ...]:
        """The nodes concatenated as the output of a description of ``n_nodes`` nodes."""
        if n_nodes == self.n_nodes:
            return self.output
        if not (self.concat_all and 1 <= n_nodes < self.n_nodes):
            raise ValueError(f"a description of {n_nodes} nodes given to a cell of {self.n_nodes} nodes "
                             f"with output {self.output}")
        return tuple(range(self.n_inputs, self.n_inputs + n_nodes))

    def forward_mixed(self, states: list[torch.Tensor], mixture: Mixture) -> torch.Tensor:
        """Every node sums all its incoming edges, each edge the weighted sum of its operations (no drop-path:
        a search-time forward)."""
        weights, index = mixture.weights, mixture.index
        if weights.shape != (len(self.edges), len(self.ops)):
            raise ValueError(f"mixture weights of shape {tuple(weights.shape)} for a cell of {len(self.edges)} "
                             f"edges and {len(self.ops)} operations")
        for node in range(self.n_inputs, self.n_inputs + self.n_nodes):
            total: torch.Tensor | None = None
            for src in range(node):
                e = self.edge_index[(node, src)]
                total = add_mixed_edge(total, self.edges[e], self.ops, weights[e], states[src],
                                       None if index is None else int(index[e]))
            assert total is not None  # every intermediate node has at least one incoming edge
            states.append(total)
        return cell_output(states, self.output)


def add_mixed_edge(total: torch.Tensor | None, edge: nn.Module, ops: Sequence[str], w: torch.Tensor, x: torch.Tensor,
                   k: int | None) -> torch.Tensor:
    """``total`` plus one edge of a :class:`Mixture` (``edge``: a ``ModuleDict`` of the operations ``ops``, ``w``
    their weights, ``x`` its input): every operation weighted (``k`` None); only operation ``k``, the others'
    weights added as numbers (zero for a straight-through one-hot weight, but their gradient reaches it: GDAS);
    or, for ``k`` < 0 (an edge a hard sample left out), the weights alone."""
    assert isinstance(edge, nn.ModuleDict)  # one candidate per operation name on every edge
    if k is None:
        terms = [w[j] * edge[name](x) for j, name in enumerate(ops)]
    elif k < 0:
        terms = [w.sum()]
    else:
        terms = [w[k] * edge[ops[k]](x), w.sum() - w[k]]
    for t in terms:
        total = t if total is None else total + t
    assert total is not None  # an edge has at least one operation
    return total


# ---------------------------------------------------------------------- layers reading a cell of any width
class RowSelectConv2d(nn.Conv2d):
    """A convolution built for the widest input whose step uses the input channels in :attr:`select` only
    (indices or a slice of the weight's input dimension)."""

    select: torch.Tensor | slice | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.select is None else self.weight[:, self.select]
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class RowSelectLinear(nn.Linear):
    """A linear layer built for the widest input whose step uses the input features in :attr:`select` only."""

    select: torch.Tensor | slice | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.select is None else self.weight[:, self.select]
        return F.linear(x, weight, self.bias)


def row_select(module: nn.Module) -> RowSelectConv2d | RowSelectLinear:
    """The row-selecting counterpart of a 1x1 convolution or linear layer, holding the same parameters."""
    new: RowSelectConv2d | RowSelectLinear
    if isinstance(module, nn.Conv2d):
        new = RowSelectConv2d(module.in_channels, module.out_channels, module.kernel_size,  # type: ignore[arg-type]
                              module.stride, module.padding, module.dilation, module.groups,  # type: ignore[arg-type]
                              module.bias is not None, device="meta")
    elif isinstance(module, nn.Linear):
        new = RowSelectLinear(module.in_features, module.out_features, module.bias is not None, device="meta")
    else:
        raise TypeError(f"{type(module).__name__} cannot select input rows")
    new.weight = module.weight
    new.bias = module.bias
    return new


@contextlib.contextmanager
def rows_selected(layers: dict[str, RowSelectConv2d | RowSelectLinear],
                  rows: Mapping[str, torch.Tensor | slice | None]) -> Iterator[None]:
    """Within the block each reading layer uses the input rows ``rows`` gives it (all rows when absent or None);
    afterwards every layer reads all rows again."""
    try:
        for name, select in rows.items():
            layers[name].select = select
        yield
    finally:
        for layer in layers.values():
            layer.select = None


def make_reading(root: nn.Module, path: str, module: nn.Module) -> dict[str, RowSelectConv2d | RowSelectLinear]:
    """Swap the layers of ``module`` (at ``path`` in ``root``) that read a cell's output for row-selecting ones:
    a preprocessing ReLU-conv-BN's convolution, a factorized reduction's two convolutions, or ``module`` itself (a
    1x1 convolution or the classifier). Returns them by their paths in ``root``."""
    if isinstance(module, ReLUConvBN):
        targets = {f"{path}.op.1": module.op[1]}
    elif isinstance(module, FactorizedReduce):
        targets = {f"{path}.conv_1": module.conv_1, f"{path}.conv_2": module.conv_2}
    else:
        targets = {path: module}
    swapped = {name: row_select(layer) for name, layer in targets.items()}
    for name, layer in swapped.items():
        root.set_submodule(name, layer)
    return swapped


def placeholder(n_nodes: int, n_inputs: int) -> list[list[tuple[str, int]]]:
    """A parameter-free cell description used to build a fixed network's frame: every node takes
    every input node through a "none" edge."""
    return [[("none", src) for src in range(n_inputs)] for _ in range(n_nodes)]


def share_cells(net: nn.Module, ops: Sequence[str], affine: bool) -> dict[str, SharedDAGCell]:
    """Replace every :class:`DAGCell` of ``net`` (built from a :func:`placeholder`) by a shared cell.

    The placeholder's parameter-free "none" edges record each cell's width (``C_out``) and the stride of
    its edges, so the shared cell gets the same geometry without repeating the network's bookkeeping.
    Returns the shared cells by module path (the path of the fixed network's cell).
    """
    shared = {}
    for path, module in list(net.named_modules()):
        if isinstance(module, DAGCell):
            zeros = [e for e in module.edges if isinstance(e, Zero)]
            if len(zeros) != len(module.edges):
                raise TypeError(f"cell {path!r} was not built from a placeholder description")
            cell = SharedDAGCell(
                zeros[0].C_out,
                module.n_inputs,
                len(module.sources),
                ops,
                reduction=any(z.stride > 1 for z in zeros),
                output=module.output,
                affine=affine,
            )
            net.set_submodule(path, cell)
            shared[path] = cell
    return shared


@contextlib.contextmanager
def mixing(mixtures: Iterable[tuple[Any, Mixture]]) -> Iterator[None]:
    """Set each shared cell's mixture (a module with a ``mixture`` attribute: :class:`SharedDAGCell` or the
    ``nasnet`` super-network's cell) for one forward pass, and clear it afterwards."""
    cells = []
    try:
        for cell, mixture in mixtures:
            cell.mixture = mixture
            cells.append(cell)
        yield
    finally:
        for cell in cells:
            cell.mixture = None


@contextlib.contextmanager
def selecting(selections: Iterable[tuple[SharedDAGCell, CellDescription]]) -> Iterator[None]:
    """Set each shared cell's description for one forward pass, and clear it afterwards."""
    cells = []
    try:
        for cell, nodes in selections:
            cell.selected = nodes
            cells.append(cell)
        yield
    finally:
        for cell in cells:
            cell.selected = None
