"""The NAS-Bench-101 network (Ying et al. 2019), as the benchmark's ``model_builder`` builds it.

A 3x3 Conv-BN-ReLU stem, ``stacks`` stacks of ``cells`` cells with 2x2 max pooling and channel
doubling between stacks, global average pooling and a linear classifier. A cell is given pruned,
as an upper-triangular adjacency matrix and one operation label per vertex
(:func:`nasforge.spaces.nb101.prune`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..ops import OPS
from ..ops.macro_ops import NB101_BN_EPS, NB101_BN_MOMENTUM, NB101_OPS, ConvBNReLU

#: operation label (as the space names it) -> registered operation
REGISTERED_OPS = dict(NB101_OPS)


def vertex_channels(C_in: int, C_out: int, matrix: np.ndarray) -> list[int]:
    """Channels of every vertex under NAS-Bench-101's rule.

    The output's channels are split as evenly as possible among the interior vertices that feed it
    (earlier vertices get the remainder); every other interior vertex takes the largest width among
    its successors; the input keeps ``C_in``.
    """
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[-1] = C_in, C_out
    if n == 2:
        return channels
    feeders = [v for v in range(1, n - 1) if matrix[v, n - 1]]
    share, extra = divmod(C_out, len(feeders))
    for rank, v in enumerate(feeders):
        channels[v] = share + (1 if rank < extra else 0)
    for v in range(n - 3, 0, -1):
        if not matrix[v, n - 1]:
            channels[v] = max(channels[w] for w in range(v + 1, n - 1) if matrix[v, w])
    return channels


def _projection(C_in: int, C_out: int) -> nn.Module:
    return ConvBNReLU(C_in, C_out, 1, momentum=NB101_BN_MOMENTUM, eps=NB101_BN_EPS)


class NB101Cell(nn.Module):
    """One NAS-Bench-101 module (``model_builder.build_module`` semantics).

    A vertex sums its inputs: the cell input through a 1x1 projection to the vertex's width, other
    vertices truncated to it (they are at most one channel wider). The output concatenates the
    vertices that feed it and adds the projected input if the input feeds it directly.
    """

    def __init__(self, matrix: np.ndarray, ops: Sequence[str], C_in: int, C_out: int) -> None:
        super().__init__()
        self.matrix = np.asarray(matrix, dtype=np.int64)
        n = len(self.matrix)
        self.channels = vertex_channels(C_in, C_out, self.matrix)
        interior = range(1, n - 1)
        self.input_proj = nn.ModuleDict(
            {str(t): _projection(C_in, self.channels[t]) for t in interior if self.matrix[0, t]}
        )
        self.vertex_ops = nn.ModuleList(
            OPS.create(REGISTERED_OPS[ops[t]], self.channels[t], self.channels[t], 1, True) for t in interior
        )
        self.output_proj = _projection(C_in, C_out) if self.matrix[0, n - 1] else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.matrix)
        values = [x]
        to_output = []
        for t in range(1, n - 1):
            inputs = [values[s][:, : self.channels[t]] for s in range(1, t) if self.matrix[s, t]]
            if self.matrix[0, t]:
                inputs.append(self.input_proj[str(t)](x))
            values.append(self.vertex_ops[t - 1](sum(inputs[1:], inputs[0])))
            if self.matrix[t, n - 1]:
                to_output.append(values[t])
        if not to_output:
            # a pruned cell whose output no vertex feeds is fed by the input directly
            assert self.output_proj is not None
            return self.output_proj(x)
        out = torch.cat(to_output, dim=1) if len(to_output) > 1 else to_output[0]
        return out + self.output_proj(x) if self.output_proj is not None else out


class NB101Net(nn.Module):
    """Stem 3x3 Conv-BN-ReLU, ``stacks`` x ``cells`` cells with 2x2 max pooling and channel doubling
    between stacks, global average pooling, linear classifier."""

    def __init__(
        self,
        matrix: np.ndarray,
        ops: Sequence[str],
        num_classes: int,
        in_channels: int = 3,
        C: int = 128,
        stacks: int = 3,
        cells: int = 3,
    ) -> None:
        super().__init__()
        self.stem = ConvBNReLU(in_channels, C, 3, momentum=NB101_BN_MOMENTUM, eps=NB101_BN_EPS)
        body: list[nn.Module] = []
        width = C_in = C
        for stack in range(stacks):
            if stack > 0:
                # "same" 2x2 pooling: ceil(H / 2), so odd sizes and 8x8 inputs keep working.
                body.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
                width *= 2
            for _ in range(cells):
                body.append(NB101Cell(matrix, ops, C_in, width))
                C_in = width
        self.body = nn.Sequential(*body)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.stem(x))
        return self.classifier(out.mean(dim=(2, 3)))
