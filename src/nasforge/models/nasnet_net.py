"""NASNet-convention cells in the DARTS evaluation network (``NetworkCIFAR``).

A NASNet cell (Zoph et al. 2018) is ``B`` blocks; block ``n`` (numbered from 2, after the two inputs) applies
an operation to each of its two inputs, which may be the same node, and combines the two by addition or by
concatenation along the channels. The cell's output concatenates a list of its nodes (NASNet and AmoebaNet: the
blocks no other block uses; PNAS and DARTS: every block). With additions only and that list, the network is
DARTS' ``NetworkCIFAR`` for a genotype of ``genotypes.py`` (the same modules, names and parameter counts): the
stack, stem, preprocessing, auxiliary head and classifier are :class:`~nasforge.models.darts_net.DartsNetwork`'s.

A block combined by concatenation has twice the channels of the others; the operations that read it and the
output concatenation take that width (an identity on it becomes a 1x1 ReLU-conv-BN, as in every cell of this
library whose widths differ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, cast

import torch
from torch import nn

from ..ops import OPS
from ..ops.cell_ops import FactorizedReduce, Identity, ReLUConvBN, channel_cat, drop_path, edge_stride, node_sum
from .darts_net import DartsNetwork

N_INPUTS = 2
COMBINES = ("add", "concat")


@dataclass(frozen=True)
class Block:
    """One block: ``(operation, input node)`` of its first and second input, and how they combine."""

    first: tuple[str, int]
    second: tuple[str, int]
    combine: str = "add"


@dataclass(frozen=True)
class CellSpec:
    """A cell: its blocks (nodes ``2 .. len(blocks) + 1``) and the nodes its output concatenates."""

    blocks: tuple[Block, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        last = N_INPUTS + len(self.blocks)
        for i, block in enumerate(self.blocks):
            if block.combine not in COMBINES:
                raise ValueError(f"block {i + N_INPUTS}: combination {block.combine!r} is not one of {COMBINES}")
            for _, src in (block.first, block.second):
                if not 0 <= src < i + N_INPUTS:
                    raise ValueError(f"block {i + N_INPUTS}: input {src} is not an earlier node")
        if not self.concat or not all(N_INPUTS <= c < last for c in self.concat):
            raise ValueError(f"output nodes {self.concat} must be blocks {N_INPUTS}..{last - 1}")

    def widths(self, C: int) -> list[int]:
        """Channels of every node (inputs first) when the inputs have ``C``."""
        out = [C] * N_INPUTS
        for block in self.blocks:
            out.append(2 * C if block.combine == "concat" else C)
        return out


def combine(edges: list[tuple[nn.Module, torch.Tensor]], how: str, training: bool, drop_prob: float) -> torch.Tensor:
    """A block's output: the sum (as DARTS' cells) or the concatenation of its operated inputs; drop-path skips
    identities."""
    if how == "add":
        return node_sum(edges, training, drop_prob)
    outs = []
    for op, x in edges:
        h = op(x)
        if training and drop_prob > 0.0 and not isinstance(op, Identity):
            h = drop_path(h, drop_prob)
        outs.append(h)
    return channel_cat(outs)


class NasnetDAG(nn.Module):
    """The blocks of one cell on its two preprocessed inputs (``C`` channels each).

    ``edges`` holds the operations in genotype order (first and second input of block 2, then of block 3, ...),
    as DARTS' ``Cell._ops``; edges leaving an input node of a reduction cell have stride 2.
    """

    def __init__(self, spec: CellSpec, C: int, reduction: bool, affine: bool = True) -> None:
        super().__init__()
        self.spec = spec
        widths = spec.widths(C)
        self.edges = nn.ModuleList()
        for block in spec.blocks:
            for op, src in (block.first, block.second):
                self.edges.append(OPS.create(op, widths[src], C, edge_stride(src, N_INPUTS, reduction), affine))
        self.out_channels = sum(widths[c] for c in spec.concat)
        self.C = C

    @property
    def multiplier(self) -> int:
        """Output channels divided by ``C``."""
        return self.out_channels // self.C

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [s0, s1]
        for i, block in enumerate(self.spec.blocks):
            a, b = self.edges[2 * i], self.edges[2 * i + 1]
            edges = [(a, states[block.first[1]]), (b, states[block.second[1]])]
            states.append(combine(edges, block.combine, self.training, drop_prob))
        return channel_cat([states[c] for c in self.spec.concat])


class NasnetCell(nn.Module):
    """Preprocess the two previous cells' outputs to ``C`` channels (DARTS' cell), then run the blocks."""

    def __init__(
        self, spec: CellSpec, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool, affine: bool = True
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_pp, C, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, True)
        self.dag = NasnetDAG(spec, C, reduction, affine)

    @property
    def multiplier(self) -> int:
        return self.dag.multiplier

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        return self.dag(self.preprocess0(s0), self.preprocess1(s1), drop_prob=drop_prob)


class NasnetNetwork(DartsNetwork):
    """DARTS' CIFAR network of NASNet-convention cells: ``normal`` and ``reduce`` are :class:`CellSpec` s (the same
    one for a shared cell); every other argument as :class:`~nasforge.models.darts_net.DartsNetwork`."""

    def __init__(self, normal: CellSpec, reduce: CellSpec, num_classes: int, in_channels: int = 3,
                 **kwargs: Any) -> None:
        # DartsNetwork hands each cell description to make_cell only
        super().__init__(cast(Any, normal), cast(Any, reduce), num_classes, in_channels, **kwargs)

    def make_cell(
        self, nodes: CellSpec, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool, affine: bool
    ) -> NasnetCell:
        return NasnetCell(nodes, C_pp, C_p, C, reduction, reduction_prev, affine)


def cell_spec(pairs: Sequence[tuple[str, int]], concat: Sequence[int], combines: Sequence[str] | None = None) -> CellSpec:
    """A :class:`CellSpec` from DARTS' flat genotype list (two ``(operation, input)`` pairs per block)."""
    n = len(pairs) // 2
    combines = list(combines) if combines is not None else ["add"] * n
    blocks = tuple(Block(tuple(pairs[2 * i]), tuple(pairs[2 * i + 1]), combines[i])  # type: ignore[arg-type]
                   for i in range(n))
    return CellSpec(blocks, tuple(concat))
