"""The super-network of the ``nb201`` space (NAS-Bench-201 cells)."""

from __future__ import annotations

from ..arch import Architecture
from ..models.nb201_net import NB201Network
from ..spaces.base import SearchSpace
from ..spaces.nb201 import NB201_OPS, NB201ModelArgs
from .base import SUPERNETS, CellSupernet, SupernetOptions
from .cells import CellDescription, placeholder, share_cells


@SUPERNETS.register("nb201", model_args=NB201ModelArgs)
class NB201Supernet(CellSupernet, NB201Network):
    """NAS-Bench-201 super-network: per cell, 6 edges times the 5 operations; all cells run the one
    sampled cell, each with its own weights."""

    def __init__(
        self,
        space: SearchSpace,
        args: NB201ModelArgs,
        *,
        num_classes: int,
        in_channels: int,
        options: SupernetOptions,
    ) -> None:
        NB201Network.__init__(self, placeholder(3, n_inputs=1), num_classes, in_channels, C=args.C, N=args.N)
        self._remember(space, args, num_classes, in_channels, options)
        self.shared = share_cells(self, NB201_OPS, options.shared_affine)

    def descriptions(self, arch: Architecture) -> dict[str, CellDescription]:
        cell = self.space.cell(arch)
        return {path: cell for path in self.shared}
