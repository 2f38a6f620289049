"""LaNAS' plain ConvNet: Conv-ReLU layers at full resolution, global average pooling, a linear classifier.

The layers are ``(kernel, filters)`` pairs, from :meth:`nasforge.spaces.convnet.ConvNetSpace.layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops.macro_ops import ConvReLU


class PlainConvNet(nn.Module):
    """Conv-ReLU layers at full resolution, global average pooling, dropout, linear classifier."""

    def __init__(
        self,
        layers: Sequence[tuple[int, int]],
        num_classes: int,
        in_channels: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        body: list[nn.Module] = []
        width = in_channels
        for kernel, filters in layers:
            body.append(ConvReLU(width, filters, kernel, batch_norm=batch_norm))
            width = filters
        self.body = nn.Sequential(*body)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(out))
