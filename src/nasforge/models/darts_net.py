"""The DARTS evaluation network (Liu et al. 2019, ``NetworkCIFAR``): stacked normal and reduction cells.

The same network serves every NASNet-like cell space (NASNet, ENAS, DARTS, EDNAS, LaNAS): only the
cell descriptions and operation names differ.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..ops.cell_ops import DAGCell, FactorizedReduce, ReLUConvBN

Description = Sequence[Sequence[tuple[str, int]]]


class DartsCell(nn.Module):
    """Preprocess the two previous cells' outputs to ``C`` channels, then run the cell's DAG.

    When the previous cell reduced, the older input is a step larger and is halved by a factorized
    reduction, as in DARTS.
    """

    def __init__(
        self,
        nodes: Description,
        C_pp: int,
        C_p: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_pp, C, affine=True)
        else:
            self.preprocess0 = ReLUConvBN(C_pp, C, 1, 1, 0, affine=True)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, True)
        self.dag = DAGCell(nodes, C, n_inputs=2, reduction=reduction, affine=affine)

    @property
    def multiplier(self) -> int:
        return self.dag.multiplier

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        return self.dag(self.preprocess0(s0), self.preprocess1(s1), drop_prob=drop_prob)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier on the output of the cell at 2/3 of the depth (DARTS' CIFAR head).

    DARTS pools the 8x8 map of 32x32 inputs with a 5x5 window of stride 3 to 2x2; an adaptive pooling
    to 2x2 gives that size for any input size (8x8 digits reach the head at 2x2).
    """

    def __init__(self, C: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            # not in place (unlike DARTS): the cell output it reads also feeds the next cells
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DartsNetwork(nn.Module):
    """A stem, ``layers`` cells with reduction cells at 1/3 and 2/3 of the depth, pooling, a classifier.

    Args:
        normal, reduce: the two cells, per intermediate node its incoming edges
            ``(operation, input node)`` with nodes 0 and 1 the two previous cells' outputs.
        num_classes, in_channels: classifier outputs and input image channels.
        C: channels of the first cells (doubled at each reduction).
        layers: number of cells.
        auxiliary: add the auxiliary head; ``forward`` then returns ``(logits, aux_logits)`` in
            training mode.
        dropout: dropout probability before the classifier.
        stem_multiplier: the stem gives ``stem_multiplier * C`` channels.
        affine: learnable batch-norm scale and shift in the cells' operations (True in DARTS'
            evaluation network; NAS-Bench-301 trained its networks with False, which reproduces the
            parameter counts it reports).

    ``drop_path_prob`` (0 by default; the training loop schedules it) is the drop-path probability of
    every non-identity edge in training mode.
    """

    def __init__(
        self,
        normal: Description,
        reduce: Description,
        num_classes: int,
        in_channels: int = 3,
        C: int = 16,
        layers: int = 8,
        auxiliary: bool = False,
        dropout: float = 0.0,
        stem_multiplier: int = 3,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.drop_path_prob = 0.0
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr)
        )
        C_pp, C_p, C_curr = C_curr, C_curr, C
        reductions = {layers // 3, 2 * layers // 3}
        self.cells = nn.ModuleList()
        self.aux_after = 2 * layers // 3  # the auxiliary head reads this cell's output
        reduction_prev = False
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                C_curr *= 2
            cell = self.make_cell(reduce if reduction else normal, C_pp, C_p, C_curr, reduction, reduction_prev, affine)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if i == self.aux_after:
                C_aux = C_p
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes) if auxiliary else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(C_p, num_classes)

    def make_cell(
        self, nodes: Any, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool, affine: bool
    ) -> Any:
        """One cell of the stack, a module with a ``multiplier`` (networks of other cells override this)."""
        return DartsCell(nodes, C_pp, C_p, C, reduction, reduction_prev, affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_after and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.dropout(torch.flatten(self.pool(s1), 1)))
        return (logits, aux) if aux is not None else logits
