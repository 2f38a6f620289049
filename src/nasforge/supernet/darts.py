"""The super-network of the ``darts`` space (every operation set)."""

from __future__ import annotations

from ..arch import Architecture
from ..models.darts_net import DartsCell, DartsNetwork
from ..spaces.darts import DartsModelArgs, DartsSpace
from .base import SUPERNETS, CellSupernet, SupernetOptions
from .cells import CellDescription, placeholder, share_cells


@SUPERNETS.register("darts", model_args=DartsModelArgs)
# The super-network reuses the network's layers and forward, adding the architecture to forward's arguments.
class DartsSupernet(CellSupernet, DartsNetwork):  # type: ignore[misc]
    """DARTS-network super-network: per cell, all ``B(B+3)/2`` edges (14 for ``B = 4``) times every
    operation of the space's operation set. Every normal cell runs the sampled normal cell and every
    reduction cell the sampled reduction cell, each network cell with its own weights (ENAS, EDNAS)."""

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

    def descriptions(self, arch: Architecture) -> dict[str, CellDescription]:
        cells = {False: self.space.cell_nodes(arch, "normal"), True: self.space.cell_nodes(arch, "reduce")}
        out: dict[str, CellDescription] = {}
        for i, cell in enumerate(self.cells):
            assert isinstance(cell, DartsCell)  # share_cells swaps only each DartsCell's inner DAG
            out[f"cells.{i}.dag"] = cells[cell.reduction]
        return out

    def edge_decisions(self) -> dict[str, tuple[int, ...]]:
        # the space numbers a cell's edges node by node, sources ascending: the shared cell's order
        rows = {kind: tuple(n.edges[src] for n in self.space.layout[kind] for src in sorted(n.edges))
                for kind in ("normal", "reduce")}
        out: dict[str, tuple[int, ...]] = {}
        for i, cell in enumerate(self.cells):
            assert isinstance(cell, DartsCell)
            out[f"cells.{i}.dag"] = rows["reduce" if cell.reduction else "normal"]
        return out
