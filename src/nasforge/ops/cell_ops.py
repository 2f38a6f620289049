"""Cell operations of the NAS-Bench-201, DARTS, ENAS, NASNet and LaNAS spaces, and a generic cell.

Every operation is registered in :data:`nasforge.ops.OPS` as ``factory(C_in, C_out, stride, affine)``.
The factories follow the reference code of NAS-Bench-201 (Dong & Yang 2020) and DARTS (Liu et al.
2019), with two generalisations that let every operation serve every cell:

- ``C_in != C_out`` is allowed everywhere (pooling and identity then use a 1x1 projection or a
  factorized reduction, as NAS-Bench-201 does);
- with ``stride=2`` every operation gives ``ceil(H / 2)`` rows and columns, so that the edges of a
  reduction cell agree on odd sizes too (DARTS' factorized reduction needs even sizes).

:class:`DAGCell` builds a cell from a small description (per node: a list of ``(op name, input)``
pairs), so that spaces do not hard-code their cells and a super-network can reuse the same pieces.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from . import OPS

#: a cell, described per intermediate node by its incoming edges ``(operation name, input index)``
CellDescription = Sequence[Sequence[tuple[str, int]]]


class ReLUConvBN(nn.Module):
    """ReLU, convolution, batch norm: the "nor_conv" of NAS-Bench-201 and the plain convs of NASNet."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel: int | tuple[int, int],
        stride: int | tuple[int, int],
        padding: int | tuple[int, int],
        affine: bool,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        # a 1x1 stride-2 convolution reads the stride-2 grid first and runs with stride 1 (see stride2_grids)
        self.grid = 2 if kernel in (1, (1, 1)) and stride in (2, (2, 2)) and padding in (0, (0, 0)) else 1
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel, stride=1 if self.grid > 1 else stride, padding=padding,
                      dilation=dilation, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self._on_grid(x))

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` of an input that already went through the ReLU (cells share it between edges)."""
        return self.op[2](self.op[1](self._on_grid(x)))

    def _on_grid(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::2, ::2] if self.grid > 1 else x  # the first of stride2_grids, without the shifted one


class DilConv(nn.Module):
    """ReLU, depthwise (dilated) convolution, pointwise convolution, batch norm (DARTS)."""

    def __init__(
        self, C_in: int, C_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` of an input that already went through the ReLU (cells share it between edges)."""
        return self.op[3](self.op[2](self.op[1](x)))


class SepConv(nn.Module):
    """Depthwise-separable convolution applied twice, as in NASNet and DARTS (the stride on the first)."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__()
        pad = kernel // 2
        self.op = nn.Sequential(
            DilConv(C_in, C_in, kernel, stride, pad, 1, affine),
            DilConv(C_in, C_out, kernel, 1, pad, 1, affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def after_relu(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` of an input that already went through the ReLU (cells share it between edges)."""
        first = cast(DilConv, self.op[0])
        return self.op[1](first.after_relu(x))


class FactorizedConv(nn.Module):
    """A ``1xk`` then ``kx1`` convolution (NASNet's "1x7 then 7x1"), the stride split over both."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int, affine: bool) -> None:
        super().__init__()
        pad = kernel // 2
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(C_in, C_out, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Identity(nn.Module):
    """The identity; cells never apply drop-path to it (DARTS)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The "none" operation: zeros of the output's shape (an edge that is not there)."""

    def __init__(self, C_in: int, C_out: int, stride: int) -> None:
        super().__init__()
        self.C_out = C_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if x.shape[1] != self.C_out:
            # derived from x (not new_zeros), so that a node fed only by "none" stays in the graph
            return x[:, :1].mul(0.0).repeat(1, self.C_out, 1, 1)
        return x.mul(0.0)


def stride2_grids(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels a 1x1 stride-2 convolution reads from ``x`` and from ``x`` shifted by one pixel (zero-padded at
    the bottom right, so that odd sizes work), for 1x1 convolutions of stride 1.

    The same numbers as stride-2 convolutions, which the factorized reductions had: in PyTorch 2.13's CPU kernels
    the backward pass of a 1x1 stride-2 convolution in the channels-last format corrupts the heap on some CPUs
    (seen on an AVX2 AMD EPYC, one thread, 8x8 inputs: "corrupted double-linked list", then abort)."""
    return x[:, :, ::2, ::2], F.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convolutions on inputs shifted by one pixel (DARTS).

    The shifted copy is padded on the bottom-right instead of cropped, so that odd sizes work.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool) -> None:
        super().__init__()
        half = C_out // 2
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, half, 1, bias=False)  # on the stride-2 grid (see stride2_grids)
        self.conv_2 = nn.Conv2d(C_in, C_out - half, 1, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid, shifted = stride2_grids(self.relu(x))
        return self.bn(torch.cat([self.conv_1(grid), self.conv_2(shifted)], dim=1))


class Pool(nn.Module):
    """Average or max pooling with "same" padding; a 1x1 ReLU-Conv-BN first when the width changes."""

    def __init__(self, kind: str, kernel: int, C_in: int, C_out: int, stride: int, affine: bool) -> None:
        super().__init__()
        self.preprocess = None if C_in == C_out else ReLUConvBN(C_in, C_out, 1, 1, 0, affine)
        self.pool: nn.Module
        if kind == "avg":
            self.pool = nn.AvgPool2d(kernel, stride=stride, padding=kernel // 2, count_include_pad=False)
        else:
            self.pool = nn.MaxPool2d(kernel, stride=stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            x = self.preprocess(x)
        return self.pool(x)


# ---------------------------------------------------------------------- registrations
@OPS.register("none", family="nb201")
def zero(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
    """No edge: zeros."""
    return Zero(C_in, C_out, stride)


@OPS.register("skip_connect", aliases=("identity",), family="darts")
def skip_connect(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
    """Identity, or a factorized reduction when the shape changes."""
    if stride == 1 and C_in == C_out:
        return Identity()
    if stride == 1:
        return ReLUConvBN(C_in, C_out, 1, 1, 0, affine)
    return FactorizedReduce(C_in, C_out, affine)


def _register_conv(name: str, kernel: int, aliases: tuple[str, ...] = ()) -> None:
    @OPS.register(name, aliases=aliases, family="conv")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return ReLUConvBN(C_in, C_out, kernel, stride, kernel // 2, affine)

    factory.__doc__ = f"ReLU, {kernel}x{kernel} convolution, batch norm."


def _register_sep(kernel: int) -> None:
    @OPS.register(f"sep_conv_{kernel}x{kernel}", family="darts")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return SepConv(C_in, C_out, kernel, stride, affine)

    factory.__doc__ = f"{kernel}x{kernel} depthwise-separable convolution, twice."


def _register_dil(kernel: int) -> None:
    @OPS.register(f"dil_conv_{kernel}x{kernel}", family="darts")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return DilConv(C_in, C_out, kernel, stride, kernel - 1, 2, affine)

    factory.__doc__ = f"{kernel}x{kernel} depthwise convolution with dilation 2, then 1x1."


def _register_factorized(kernel: int) -> None:
    @OPS.register(f"conv_{kernel}x1_1x{kernel}", aliases=(f"conv_1x{kernel}_{kernel}x1",), family="nasnet")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return FactorizedConv(C_in, C_out, kernel, stride, affine)

    factory.__doc__ = f"1x{kernel} then {kernel}x1 convolution."


def _register_pool(kind: str, kernel: int) -> None:
    @OPS.register(f"{kind}_pool_{kernel}x{kernel}", family="pool")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return Pool(kind, kernel, C_in, C_out, stride, affine)

    factory.__doc__ = f"{kernel}x{kernel} {kind} pooling."


# NB201 calls its ReLU-Conv-BN "nor_conv"; NASNet and LaNAS call the same operation "conv".
_register_conv("nor_conv_1x1", 1, aliases=("conv_1x1",))
_register_conv("nor_conv_3x3", 3, aliases=("conv_3x3",))
for _k in (3, 5, 7):
    _register_sep(_k)
for _k in (3, 5):
    _register_dil(_k)
for _k in (3, 7):
    _register_factorized(_k)
_register_pool("avg", 3)
for _k in (3, 5, 7):
    _register_pool("max", _k)


# ---------------------------------------------------------------------- cells
def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (DARTS' drop-path).

    Like :class:`torch.nn.Dropout`, it draws from torch's random generator, which the training loop
    seeds.
    """
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


def edge_stride(source: int, n_inputs: int, reduction: bool) -> int:
    """Stride of an edge: 2 for edges leaving an input node of a reduction cell, else 1."""
    return 2 if reduction and source < n_inputs else 1


class DAGCell(nn.Module):
    """A cell given as a DAG: input nodes, then intermediate nodes that sum their operated inputs.

    Args:
        nodes: per intermediate node, its incoming edges as ``(operation name, input index)``; input
            indices count the cell's inputs first (``0 .. n_inputs - 1``), then the earlier
            intermediate nodes.
        C: channels of every node.
        n_inputs: number of input nodes (1 for NAS-Bench-201, 2 for DARTS-like cells).
        reduction: edges leaving an input node then have stride 2.
        output: indices of the nodes whose concatenation is the cell's output (default: all
            intermediate nodes, as in DARTS); a single index returns that node itself.
        affine: learnable batch-norm scales of the operations.

    The edge operations are kept in ``self.edges`` in description order, so that callers can map an
    edge to its module. Drop-path (``forward(..., drop_prob=p)``) skips identity edges, as in DARTS.
    """

    def __init__(
        self,
        nodes: CellDescription,
        C: int,
        n_inputs: int,
        reduction: bool = False,
        output: Sequence[int] | None = None,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.n_inputs = n_inputs
        self.sources: list[list[int]] = []
        self.edges = nn.ModuleList()
        for i, node in enumerate(nodes):
            if not node:
                raise ValueError(f"node {i + n_inputs} has no incoming edge")
            self.sources.append([])
            for op, src in node:
                if not 0 <= src < n_inputs + i:
                    raise ValueError(f"node {i + n_inputs}: input {src} is not an earlier node")
                self.edges.append(OPS.create(op, C, C, edge_stride(src, n_inputs, reduction), affine))
                self.sources[-1].append(src)
        # Inputs read by several edges that start with a ReLU get it once (same numbers, less work).
        starts_with_relu = [src for op, src in zip(self.edges, (s for node in self.sources for s in node))
                            if hasattr(op, "after_relu")]
        self.shared_relu = {src for src in starts_with_relu if starts_with_relu.count(src) > 1}
        last = n_inputs + len(nodes)
        self.output = tuple(output) if output is not None else tuple(range(n_inputs, last))
        if not self.output or not all(0 <= o < last for o in self.output):
            raise ValueError(f"output nodes {self.output} outside 0..{last - 1}")

    @property
    def multiplier(self) -> int:
        """Output channels divided by ``C``."""
        return len(self.output)

    def forward(self, *inputs: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = list(inputs)
        relued: dict[int, torch.Tensor] = {}
        edges = iter(self.edges)
        for sources in self.sources:
            pairs: list[tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]] = []
            for src in sources:
                op = next(edges)
                if src in self.shared_relu and hasattr(op, "after_relu"):
                    if src not in relued:
                        relued[src] = F.relu(states[src])
                    pairs.append((cast(Callable[[torch.Tensor], torch.Tensor], op.after_relu), relued[src]))
                else:
                    pairs.append((op, states[src]))
            states.append(node_sum(pairs, self.training, drop_prob))
        return cell_output(states, self.output)


@contextlib.contextmanager
def relu_per_edge(model: nn.Module) -> Iterator[None]:
    """Within the block every cell's edges apply their own ``nn.ReLU`` modules, as the reference networks do.

    For measures that hook ReLU modules (NASWOT's activation patterns count one per edge): the shared ReLU of
    :class:`DAGCell` is a function call they would not see. The numbers computed are the same either way."""
    cells = [m for m in model.modules() if isinstance(m, DAGCell)]
    saved = [cell.shared_relu for cell in cells]
    for cell in cells:
        cell.shared_relu = set()
    try:
        yield
    finally:
        for cell, shared in zip(cells, saved):
            cell.shared_relu = shared


def node_sum(edges: Sequence[tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]], training: bool,
             drop_prob: float) -> torch.Tensor:
    """A node's output: the sum of its incoming edges' operations, scheduled drop-path on non-identity edges."""
    total: torch.Tensor | None = None
    for op, x in edges:
        h = op(x)
        if training and drop_prob > 0.0 and not isinstance(op, Identity):
            h = drop_path(h, drop_prob)
        total = h if total is None else total + h
    assert total is not None, "a node sums at least one edge"
    return total


class _ChannelCat(torch.autograd.Function):
    """``torch.cat(parts, dim=1)`` whose backward hands each part a dense gradient.

    The plain concatenation's backward gives channel slices of the output's gradient, which in the
    channels-last memory format are strided views; batch norm's backward, which most cell nodes end
    with, runs about ten times slower on those than on a dense tensor (measured on the CPU, torch 2.13).
    """

    @staticmethod
    def forward(ctx: Any, *parts: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [p.shape[1] for p in parts]
        return torch.cat(parts, dim=1)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, ...]:
        (grad,) = grads
        channels_last = grad.dim() == 4 and grad.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        return tuple(g.contiguous(memory_format=fmt) for g in grad.split(ctx.sizes, dim=1))


def channel_cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate along channels (see :class:`_ChannelCat`); the plain ``torch.cat`` when no gradient is needed."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in parts):
        out: torch.Tensor = _ChannelCat.apply(*parts)
        return out
    return torch.cat(list(parts), dim=1)


def cell_output(states: list[torch.Tensor], output: list[int] | tuple[int, ...]) -> torch.Tensor:
    """The cell's output: its one output node, or the concatenation of several along channels."""
    if len(output) == 1:
        return states[output[0]]
    return channel_cat([states[o] for o in output])
