"""The super-network of the ``darts`` space (every operation set), for cells of any number of nodes.

A ``darts`` cell concatenates its intermediate nodes, so a cell of ``k`` nodes outputs ``k * C`` channels and the
layers that read it (the next two cells' 1x1 preprocessing or factorized reduction, the auxiliary head's 1x1
convolution, the classifier) are narrower in the fixed network of a smaller cell (PNAS grows cells from one
node: ``space.min_blocks`` < ``space.nodes``). The super-network builds each reading layer for the widest cell,
all ``nodes`` nodes, and a child of ``k`` nodes uses the first ``k * C`` input rows of its weight only
(:class:`~nasforge.supernet.cells.RowSelectConv2d`): node ``n``'s channels are at the same place of the
concatenation whatever the cell's size, so those rows are exactly the child's own layer, input channels in the
child's order, and :meth:`DartsSupernet.child_tensor` hands the child that slice. This is ENAS' trick, as the
``nasnet`` super-network reads loose ends. It was chosen over one set of reading weights per node count because

- the weights that read node ``n`` are shared by every cell size, so what a ``k``-node child learns is what its
  expansions (PNAS' next beam: the same first ``k`` nodes plus one) start from, and training is not split
  ``nodes`` ways across copies;
- it adds no parameter: a full-size child has the same parameter names, shapes and computation as before
  (no row selection at all), so the super-network of a space of full cells only is unchanged.

The cost, as with any weight sharing, is that a smaller child's reading layers are the full ones with the rows
of absent nodes left out, not layers trained for the narrower input (the batch norm after each preprocessing
convolution renormalises the narrower sum; the classifier's bias and scale are shared as they are).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ..arch import Architecture
from ..models.darts_net import DartsCell, DartsNetwork
from ..spaces.darts import DartsModelArgs, DartsSpace
from .base import SUPERNETS, CellSupernet, Relaxed, SupernetOptions
from .cells import (
    CellDescription,
    RowSelectConv2d,
    RowSelectLinear,
    make_reading,
    placeholder,
    rows_selected,
    share_cells,
)


@SUPERNETS.register("darts", model_args=DartsModelArgs, any_blocks=True)
# The super-network reuses the network's layers and forward, adding the architecture to forward's arguments.
class DartsSupernet(CellSupernet, DartsNetwork):
    """DARTS-network super-network: per cell, all ``B(B+3)/2`` edges (14 for ``B = 4``) times every
    operation of the space's operation set. Every normal cell runs the sampled normal cell and every
    reduction cell the sampled reduction cell, each network cell with its own weights (ENAS, EDNAS).
    A child of fewer nodes than ``B`` runs their first nodes, and the layers reading a cell use the weight
    rows of the nodes present (see the module docstring)."""

    space: DartsSpace

    def __init__(
        self,
        space: DartsSpace,
        args: DartsModelArgs,
        *,
        num_classes: int,
        in_channels: int,
        options: SupernetOptions,
    ) -> None:
        frame = placeholder(space.config.nodes, n_inputs=2)
        DartsNetwork.__init__(
            self, frame, frame, num_classes, in_channels, C=args.C, layers=args.layers,
            auxiliary=args.auxiliary, dropout=args.dropout, stem_multiplier=args.stem_multiplier,
            affine=args.affine,
        )
        self._remember(space, args, num_classes, in_channels, options)
        self.shared = share_cells(self, space.ops, options.shared_affine)
        self.check_relaxable()
        #: module path of each layer reading a cell's output -> the path of that cell's shared DAG
        self.readers: dict[str, str] = {}
        self._selecting: dict[str, RowSelectConv2d | RowSelectLinear] = {}  # the same layers (registered as modules)
        for i, cell in enumerate(self.cells):
            assert isinstance(cell, DartsCell)
            if i >= 1:
                self._reads(f"cells.{i}.preprocess1", cell.preprocess1, i - 1)
            if i >= 2:
                self._reads(f"cells.{i}.preprocess0", cell.preprocess0, i - 2)
        if self.auxiliary_head is not None:
            self._reads("auxiliary_head.features.2", self.auxiliary_head.features[2], self.aux_after)
        self._reads("classifier", self.classifier, len(self.cells) - 1)

    def _reads(self, path: str, module: nn.Module, source: int) -> None:
        """Make the 1x1 convolutions (or the linear layer) at ``path`` able to read a smaller cell ``source``."""
        for name, layer in make_reading(self, path, module).items():
            self._selecting[name] = layer
            self.readers[name] = f"cells.{source}.dag"

    def descriptions(self, arch: Architecture) -> dict[str, CellDescription]:
        cells = {False: self.space.cell_nodes(arch, "normal"), True: self.space.cell_nodes(arch, "reduce")}
        out: dict[str, CellDescription] = {}
        for i, cell in enumerate(self.cells):
            assert isinstance(cell, DartsCell)  # share_cells swaps only each DartsCell's inner DAG
            out[f"cells.{i}.dag"] = cells[cell.reduction]
        return out

    def _rows(self, arch: Architecture) -> dict[str, slice]:
        """The input rows of each reading layer that ``arch`` uses, for those reading a cell smaller than full:
        the channels of the cell's nodes present, the first ``k * C``."""
        described = self.descriptions(arch)
        out = {}
        for name, source in self.readers.items():
            dag, k = self.shared[source], len(described[source])
            if k < dag.n_nodes:
                out[name] = slice(0, k * dag.C)
        return out

    def forward(self, x: torch.Tensor, arch: Architecture | Relaxed) -> Any:  # type: ignore[override]
        if isinstance(arch, Relaxed):  # every node of every cell: full width
            return super().forward(x, arch)
        with rows_selected(self._selecting, self._rows(self.space.validate(arch))):
            return super().forward(x, arch)

    def child_tensor(self, arch: Architecture, key: str, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        match = re.fullmatch(r"(.+)\.weight", key)
        if match and match.group(1) in self.readers:
            select = self._rows(arch).get(match.group(1))
            return state[key] if select is None else state[key][:, select]
        return super().child_tensor(arch, key, state)

    def edge_decisions(self) -> dict[str, tuple[int, ...]]:
        # the space numbers a cell's edges node by node, sources ascending: the shared cell's order
        rows = {kind: tuple(n.edges[src] for n in self.space.layout[kind] for src in sorted(n.edges))
                for kind in ("normal", "reduce")}
        out: dict[str, tuple[int, ...]] = {}
        for i, cell in enumerate(self.cells):
            assert isinstance(cell, DartsCell)
            out[f"cells.{i}.dag"] = rows["reduce" if cell.reduction else "normal"]
        return out
