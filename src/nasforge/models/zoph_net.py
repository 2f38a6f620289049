"""Zoph & Le's (ICLR 2017) convolutional network: every layer's filter shape, count and stride chosen freely,
and any earlier layers as its inputs.

Each layer is a convolution (``height x width``, ``filters``, ``stride``; "same" padding, so a stride ``s``
gives ``ceil(size / s)``), batch norm and ReLU. Its inputs are concatenated along depth; inputs of different
spatial sizes are zero-padded at the bottom and right to the largest, as the paper pads "the small layers with
zeros". A layer with no input takes the image. The classifier reads every layer output that no layer uses: each
is average-pooled on its own and the results are concatenated (the same as pooling the padded concatenation,
but without counting the padding's zeros into the averages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ZophLayer:
    """One layer of the plan: filter height and width, number of filters, stride and input layers."""

    height: int
    width: int
    filters: int
    stride: int
    inputs: tuple[int, ...]


def loose_ends(plan: Sequence[ZophLayer]) -> tuple[int, ...]:
    """Layers whose output no later layer reads (the last layer always is one)."""
    used = {j for layer in plan for j in layer.inputs}
    return tuple(i for i in range(len(plan)) if i not in used)


def concat_padded(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along channels, zero-padding smaller maps at the bottom and right to the largest."""
    if len(tensors) == 1:
        return tensors[0]
    h = max(t.shape[-2] for t in tensors)
    w = max(t.shape[-1] for t in tensors)
    padded = [t if t.shape[-2:] == (h, w) else F.pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in tensors]
    return torch.cat(padded, dim=1)


class ZophNet(nn.Module):
    """The network of a :class:`ZophLayer` plan; ``scale`` multiplies every layer's filter count."""

    def __init__(self, plan: Sequence[ZophLayer], num_classes: int, in_channels: int = 3, scale: float = 1.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.plan = tuple(plan)
        widths = [max(1, round(layer.filters * scale)) for layer in self.plan]
        self.layers = nn.ModuleList()
        for layer, out in zip(self.plan, widths):
            cin = sum(widths[j] for j in layer.inputs) if layer.inputs else in_channels
            self.layers.append(nn.Sequential(
                nn.Conv2d(cin, out, (layer.height, layer.width), stride=layer.stride,
                          padding=(layer.height // 2, layer.width // 2), bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ))
        self.outputs = loose_ends(self.plan)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(sum(widths[j] for j in self.outputs), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for layer, module in zip(self.plan, self.layers):
            inp = concat_padded([outs[j] for j in layer.inputs]) if layer.inputs else x
            outs.append(module(inp))
        pooled = torch.cat([torch.flatten(F.adaptive_avg_pool2d(outs[j], 1), 1) for j in self.outputs], dim=1)
        return self.classifier(self.dropout(pooled))
