"""The super-network of the ``nb201`` space (NAS-Bench-201 cells)."""

from __future__ import annotations

from ..arch import Architecture
from ..models.nb201_net import NB201Network
from ..spaces.nb201 import NB201_OPS, NB201ModelArgs, NB201Space
from .base import SUPERNETS, CellSupernet, SupernetOptions
from .cells import CellDescription, placeholder, share_cells


@SUPERNETS.register("nb201", model_args=NB201ModelArgs)
# The super-network reuses the network's layers and forward, adding the architecture to forward's arguments.
class NB201Supernet(CellSupernet, NB201Network):  # type: ignore[misc]
    """NAS-Bench-201 super-network: per cell, 6 edges times the 5 operations; all cells run the one
    sampled cell, each with its own weights."""

    space: NB201Space

    def __init__(
        self,
        space: NB201Space,
        args: NB201ModelArgs,
        *,
        num_classes: int,
        in_channels: int,
        options: SupernetOptions,
    ) -> None:
        NB201Network.__init__(self, placeholder(3, n_inputs=1), num_classes, in_channels, C=args.C, N=args.N)
        self._remember(space, args, num_classes, in_channels, options)
        self.shared = share_cells(self, NB201_OPS, options.shared_affine)
        self.check_relaxable()

    def descriptions(self, arch: Architecture) -> dict[str, CellDescription]:
        cell = self.space.cell(arch)
        return {path: cell for path in self.shared}

    def edge_decisions(self) -> dict[str, tuple[int, ...]]:
        # one operation decision per edge, in the cell's edge order; every cell runs the same cell
        return {path: tuple(range(len(cell.edges))) for path, cell in self.shared.items()}
