"""The super-network of the ``darts`` space (every operation set)."""

from __future__ import annotations

from ..arch import Architecture
from ..models.darts_net import DartsNetwork
from ..spaces.base import SearchSpace
from ..spaces.darts import DartsModelArgs
from .base import SUPERNETS, CellSupernet, SupernetOptions
from .cells import CellDescription, placeholder, share_cells


@SUPERNETS.register("darts", model_args=DartsModelArgs)
class DartsSupernet(CellSupernet, DartsNetwork):
    """DARTS-network super-network: per cell, all ``B(B+3)/2`` edges (14 for ``B = 4``) times every
    operation of the space's operation set. Every normal cell runs the sampled normal cell and every
    reduction cell the sampled reduction cell, each network cell with its own weights (ENAS, EDNAS)."""

    def __init__(
        self,
        space: SearchSpace,
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

    def descriptions(self, arch: Architecture) -> dict[str, CellDescription]:
        cells = {False: self.space.cell_nodes(arch, "normal"), True: self.space.cell_nodes(arch, "reduce")}
        return {f"cells.{i}.dag": cells[cell.reduction] for i, cell in enumerate(self.cells)}
