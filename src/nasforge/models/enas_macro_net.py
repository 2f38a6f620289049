"""The ENAS macro network (Pham et al. 2018, the authors' ``general_child.py`` in fixed-architecture mode).

A 3x3 Conv-BN stem, one layer per entry of the plan (an operation on the previous output, then,
after layer 0, the chosen skip inputs concatenated with it, ReLU, 1x1 convolution and batch norm),
factorized reductions after the layers :func:`reduction_layers` names, global pooling and a linear
classifier. The plan comes from :meth:`nasforge.spaces.enas_macro.EnasMacroSpace.layer_plan`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops import OPS
from ..ops.macro_ops import ENAS_MACRO_OPS, EnasFactorizedReduction

#: operation label (as the space names it) -> registered operation
REGISTERED_OPS = {label: registered for label, registered, *_ in ENAS_MACRO_OPS}


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Layers after which ENAS halves the resolution (none for fewer than 3 layers)."""
    distance = layers // 3
    return tuple(sorted({distance - 1, 2 * distance - 1} - {-1}))


class EnasMacroLayer(nn.Module):
    """One layer: the operation on the previous output, then (after layer 0) concatenation with the
    skip inputs, ReLU, 1x1 convolution and batch norm."""

    def __init__(self, op: str, sources: tuple[int, ...], C: int, first: bool) -> None:
        super().__init__()
        self.sources = sources
        self.op = OPS.create(REGISTERED_OPS[op], C, C, 1, True)
        self.combine = (
            None
            if first
            else nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d((len(sources) + 1) * C, C, 1, bias=False),
                nn.BatchNorm2d(C),
            )
        )

    def forward(self, nodes: list[torch.Tensor | None]) -> torch.Tensor:
        out = self.op(nodes[-1])
        if self.combine is None:
            return out
        return self.combine(torch.cat([nodes[j] for j in self.sources] + [out], dim=1))


class EnasMacroNet(nn.Module):
    """Stem (3x3 conv, BN), the layers with two factorized reductions, global pooling, classifier."""

    def __init__(
        self,
        plan: Sequence[tuple[str, tuple[int, ...]]],
        num_classes: int,
        in_channels: int = 3,
        C: int = 36,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        reductions = reduction_layers(len(plan))
        self.layers = nn.ModuleList()
        self.reductions = nn.ModuleDict()
        width = C
        for i, (op, sources) in enumerate(plan):
            self.layers.append(EnasMacroLayer(op, sources, width, first=i == 0))
            if i in reductions:
                # Only outputs used later get reduced (ENAS reduces all; unused ones would be dead weights).
                needed = {i + 1} | {j for _, later in plan[i + 1 :] for j in later if j <= i + 1}
                self.reductions[str(i)] = nn.ModuleDict(
                    {str(k): EnasFactorizedReduction(width, 2 * width) for k in sorted(needed)}
                )
                width *= 2
        self.width = width
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [self.stem(x)]
        for i, layer in enumerate(self.layers):
            nodes.append(layer(nodes))
            if str(i) in self.reductions:
                reduce = self.reductions[str(i)]
                assert isinstance(reduce, nn.ModuleDict)  # one reduction per node read later
                nodes = [reduce[str(k)](n) if str(k) in reduce else None for k, n in enumerate(nodes)]
        last = nodes[-1]
        assert last is not None  # the newest node is always read later, so it is always reduced
        out = torch.flatten(nn.functional.adaptive_avg_pool2d(last, 1), 1)
        return self.classifier(self.dropout(out))
