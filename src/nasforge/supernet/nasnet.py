"""The super-network of the ``nasnet`` space: ENAS' micro search space with shared weights.

Every block input of every cell holds each candidate operation once per possible source node, as ENAS' shared
child model does (``edges[edge_index[(node, slot, src)]][op]``; ``slot`` 0 is the block's first input, 1 its
second, so that a block that reads the same node twice has two operations, as its child). A step runs the
sampled child only: two operations per block and the combination.

The cell's output concatenates a number of blocks that depends on the child (its loose ends, or a smaller
cell's blocks), so the layers that read a cell's output (the next cells' preprocessing, the auxiliary head and
the classifier) do not have a fixed width. ENAS' trick keeps them shared: each is built for the concatenation
of all ``B`` blocks, and a step uses only the weight rows of the blocks the child concatenates
(:class:`RowSelectConv2d`, :class:`RowSelectLinear`), which is the child's own layer with its input channels in
the same order. This is also what lets cells of fewer blocks run (``any_blocks``: PNAS' progressive search).

The stem, the stack, the reduction positions and every module name outside the cells are those of the fixed
child (:class:`~nasforge.models.nasnet_net.NasnetNetwork`); :meth:`NasnetSupernet.child_tensor` maps each
child weight to its super-network weight (an operation renamed, a reading layer's rows selected).
Combination by concatenation (``combine="add,concat"``) is not supported: blocks would differ in width.

Differentiable search (DARTS, GDAS) runs it relaxed (:meth:`NasnetSupernet.mixtures`): a block input is then
the weighted sum over every source node of the weighted sum of every operation on it, each source weighted by its
input decision's row of the :class:`~nasforge.supernet.base.Relaxed` weights and each operation by its operation
decision's row (the two decisions of a NASNet input stay separate, as in the space; the input is learnt like the
operation). A relaxed cell concatenates all its blocks, as DARTS' cells do: which blocks are loose ends depends
on the inputs chosen, which a relaxed cell has not chosen yet.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from ..models.nasnet_net import N_INPUTS, Block, CellSpec, NasnetCell, NasnetNetwork, combine
from ..ops import OPS
from ..ops.cell_ops import channel_cat, edge_stride
from ..spaces.darts import DartsModelArgs
from ..spaces.nasnet import NasnetSpace
from .base import SUPERNETS, CellSupernet, Relaxed, SupernetOptions
from .cells import Mixture, RowSelectConv2d, RowSelectLinear, add_mixed_edge, make_reading, rows_selected


class SharedNasnetDAG(nn.Module):
    """A NASNet cell's blocks with every candidate operation on every (block, input slot, source); runs the
    :class:`CellSpec` in :attr:`selected` only."""

    def __init__(self, C: int, n_blocks: int, ops: Sequence[str], reduction: bool, affine: bool) -> None:
        super().__init__()
        self.C = C
        self.n_blocks = n_blocks
        self.ops = tuple(ops)
        self.edge_index: dict[tuple[int, int, int], int] = {}
        self.edges = nn.ModuleList()
        for node in range(N_INPUTS, N_INPUTS + n_blocks):
            for slot in (0, 1):
                for src in range(node):
                    self.edge_index[(node, slot, src)] = len(self.edges)
                    stride = edge_stride(src, N_INPUTS, reduction)
                    self.edges.append(nn.ModuleDict({op: OPS.create(op, C, C, stride, affine) for op in self.ops}))
        self.selected: CellSpec | None = None
        self.mixture: Mixture | None = None

    def path(self, spec: CellSpec) -> list[tuple[int, str]]:
        """``(edge index, operation)`` of each of the child's edges, in the child's order."""
        out = []
        for i, block in enumerate(spec.blocks):
            for slot, (op, src) in enumerate((block.first, block.second)):
                index = self.edge_index.get((N_INPUTS + i, slot, src))
                if index is None or op not in self.ops:
                    raise ValueError(f"block {N_INPUTS + i}: ({op!r}, {src}) is not a candidate of this cell")
                out.append((index, op))
        return out

    def _op(self, edge: int, name: str) -> nn.Module:
        ops = self.edges[edge]
        assert isinstance(ops, nn.ModuleDict)  # one candidate per operation name on every edge
        return ops[name]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        if self.mixture is not None:
            return self.forward_mixed([s0, s1], self.mixture)
        spec = self.selected
        if spec is None:
            raise RuntimeError("a shared cell runs one sampled path: call the super-network with an architecture")
        states = [s0, s1]
        path = iter(self.path(spec))
        # the fixed child's order of operations and sums, so that a child with inherited weights computes the same
        for block in spec.blocks:
            edges = [(self._op(*next(path)), states[src]) for _, src in (block.first, block.second)]
            states.append(combine(edges, block.combine, self.training, drop_prob))
        return channel_cat([states[c] for c in spec.concat])

    def forward_mixed(self, states: list[torch.Tensor], mixture: Mixture) -> torch.Tensor:
        """Every block sums, over its two inputs and every source, the weighted operations of the edge
        (``mixture.weights[e, k]``; with ``mixture.index`` only the indexed operation of an edge runs, and an edge
        indexed -1 contributes its weights alone: GDAS' one-path step; :func:`add_mixed_edge`). All blocks are
        concatenated."""
        weights, index = mixture.weights, mixture.index
        if weights.shape != (len(self.edges), len(self.ops)):
            raise ValueError(f"mixture weights of shape {tuple(weights.shape)} for a cell of {len(self.edges)} "
                             f"edges and {len(self.ops)} operations")
        for node in range(N_INPUTS, N_INPUTS + self.n_blocks):
            total: torch.Tensor | None = None
            for slot in (0, 1):
                for src in range(node):
                    e = self.edge_index[(node, slot, src)]
                    total = add_mixed_edge(total, self.edges[e], self.ops, weights[e], states[src],
                                           None if index is None else int(index[e]))
            assert total is not None  # every block has two inputs
            states.append(total)
        return channel_cat(states[N_INPUTS:])


def _frame(n_blocks: int) -> CellSpec:
    """A parameter-free cell concatenating all ``n_blocks`` blocks: the widest output, for the network's frame."""
    blocks = tuple(Block(("none", 0), ("none", 1)) for _ in range(n_blocks))
    return CellSpec(blocks, tuple(range(N_INPUTS, N_INPUTS + n_blocks)))


@SUPERNETS.register("nasnet", model_args=DartsModelArgs, any_blocks=True)
# The super-network reuses the network's layers and forward, adding the architecture to forward's arguments.
class NasnetSupernet(CellSupernet, NasnetNetwork):
    """ENAS micro super-network: per cell and block input, every operation on every earlier node; the layers
    reading a cell's output select the weight rows of the blocks the child concatenates."""

    space: NasnetSpace

    def __init__(
        self, space: NasnetSpace, args: DartsModelArgs, *, num_classes: int, in_channels: int,
        options: SupernetOptions,
    ) -> None:
        if len(space.combines) > 1:
            raise ConfigError("supernet: the nasnet super-network combines blocks by addition only "
                              f"(space.combine={space.config.combine}); use space.combine=add")
        frame = _frame(space.max_blocks)
        NasnetNetwork.__init__(
            self, frame, frame, num_classes, in_channels, C=args.C, layers=args.layers, auxiliary=args.auxiliary,
            dropout=args.dropout, stem_multiplier=args.stem_multiplier, affine=args.affine,
        )
        self._remember(space, args, num_classes, in_channels, options)
        self.shared: dict[str, SharedNasnetDAG] = {}  # type: ignore[assignment]
        #: module path of each layer reading a cell's output -> (that cell's index, its C)
        self.readers: dict[str, tuple[int, int]] = {}
        self._selecting: dict[str, RowSelectConv2d | RowSelectLinear] = {}  # the same layers (registered as modules)
        cells = [c for c in self.cells if isinstance(c, NasnetCell)]
        for i, cell in enumerate(cells):
            dag = SharedNasnetDAG(cell.dag.C, space.max_blocks, space.ops, cell.reduction, options.shared_affine)
            cell.dag = dag  # type: ignore[assignment]
            self.shared[f"cells.{i}.dag"] = dag
            if i >= 1:
                self._reads(f"cells.{i}.preprocess1", cell.preprocess1, i - 1, cells)
            if i >= 2:
                self._reads(f"cells.{i}.preprocess0", cell.preprocess0, i - 2, cells)
        if self.auxiliary_head is not None:
            self._reads("auxiliary_head.features.2", self.auxiliary_head.features[2], self.aux_after, cells)
        self._reads("classifier", self.classifier, len(cells) - 1, cells)
        #: per shared cell, the layout it follows ("normal", "reduce" or the one shared "cell") and
        #: ``(node, input decision, operation decision)`` of each block input, in the order of its edges
        self._kinds = {path: "cell" if space.config.shared_cell else "reduce" if dag_cell.reduction else "normal"
                       for path, dag_cell in zip(self.shared, cells)}
        self._inputs = {path: [(s.node, d_in, d_op) for s in space.layout[kind]
                               for d_in, d_op in ((s.in1, s.op1), (s.in2, s.op2))]
                        for path, kind in self._kinds.items()}
        self.check_relaxable()

    def _reads(self, path: str, module: nn.Module, source: int, cells: list[NasnetCell]) -> None:
        """Make the 1x1 convolutions (or the linear layer) at ``path`` select the rows of cell ``source``'s blocks."""
        C = cells[source].dag.C
        for name, layer in make_reading(self, path, module).items():
            self._selecting[name] = layer
            self.readers[name] = (source, C)

    def descriptions(self, arch: Architecture) -> dict[str, Any]:
        specs = {False: self.space.cell_spec(arch, "normal"), True: self.space.cell_spec(arch, "reduce")}
        return {path: specs[bool(self.get_submodule(path.rpartition(".")[0]).reduction)] for path in self.shared}

    def _rows(self, arch: Architecture) -> dict[str, torch.Tensor]:
        """Input channels of each reading layer for ``arch``: the concatenated blocks' slices, in the child's order."""
        specs = self.descriptions(arch)
        out = {}
        for name, (source, C) in self.readers.items():
            concat = specs[f"cells.{source}.dag"].concat
            rows = [torch.arange((c - N_INPUTS) * C, (c - N_INPUTS + 1) * C) for c in concat]
            out[name] = torch.cat(rows).to(self.classifier.weight.device)
        return out

    def forward(self, x: torch.Tensor, arch: Architecture | Relaxed) -> Any:  # type: ignore[override]
        if isinstance(arch, Relaxed):  # every block of every cell: full width
            return super().forward(x, arch)
        self.space.validate(arch)
        with rows_selected(self._selecting, self._rows(arch)):
            return super().forward(x, arch)

    def edge_decisions(self) -> dict[str, tuple[int, ...]]:
        # one edge per block input and source; every source of an input shares that input's operation decision
        return {path: tuple(d_op for node, _, d_op in inputs for _ in range(node)) for path, inputs in self._inputs.items()}

    def relaxed_decisions(self) -> list[int]:
        """The operation decisions and the input decisions: a relaxed block input weighs both."""
        return sorted({d for inputs in self._inputs.values() for _, d_in, d_op in inputs for d in (d_in, d_op)})

    def mixtures(self, arch: Relaxed) -> list[tuple[Any, Mixture]]:
        """Each shared cell with the weight of every (block input, source, operation): the source's weight in the
        input decision's row times the operation's in the operation decision's row; with ``arch.index`` (a hard
        sample) only the sampled source's edge runs, its sampled operation."""
        out: list[tuple[Any, Mixture]] = []
        made: dict[str, Mixture] = {}  # cells of one kind share the decisions, so the mixture is made once
        for path, dag in self.shared.items():
            inputs, key = self._inputs[path], self._kinds[path]
            if key not in made:
                n_ops = len(dag.ops)
                rows = [arch.weights[d_in, :node, None] * arch.weights[d_op, None, :n_ops] for node, d_in, d_op in inputs]
                index = None
                if arch.index is not None:
                    picks = [(int(arch.index[d_in]), int(arch.index[d_op])) for _, d_in, d_op in inputs]
                    index = torch.tensor([k if src == chosen else -1 for (node, _, _), (chosen, k) in zip(inputs, picks)
                                          for src in range(node)])
                made[key] = Mixture(torch.cat(rows), index)
            out.append((dag, made[key]))
        return out

    def child_tensor(self, arch: Architecture, key: str, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        match = re.fullmatch(r"(.+)\.weight", key)
        if match and match.group(1) in self.readers:
            return state[key][:, self._rows(arch)[match.group(1)].to(state[key].device)]
        return super().child_tensor(arch, key, state)
