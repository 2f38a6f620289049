"""Operations of the macro spaces: ENAS macro layers, the NAS-Bench-101 cell, LaNAS' plain ConvNets.

Registered in :data:`nasforge.ops.OPS` under prefixed names (``enas_*``, ``nb101_*``, ``plain_*``) so
that they never clash with the cell operations of :mod:`nasforge.ops.cell_ops`, whose semantics differ
(those are ReLU-Conv-BN; these follow each paper's own reference code):

- ENAS (Pham et al. 2018, ``general_child.py``): every branch is a 1x1 Conv-BN-ReLU to the layer's
  width followed by the operation (Conv-BN-ReLU, depthwise-separable Conv-BN-ReLU or a 3x3 pooling);
  reductions are ENAS' factorized reduction (two shifted 1x1 paths, concatenated, then BN).
- NAS-Bench-101 (Ying et al. 2019, ``base_ops.py``): Conv-BN-ReLU with TensorFlow's batch-norm
  settings (decay 0.997, epsilon 1e-5) and a 3x3 max pooling.
- LaNAS' ConvNet space (Wang et al. 2019): "the primitive operation is a Conv-ReLU layer".

Every factory accepts ``C_in != C_out`` and ``stride`` 1 or 2; with stride 2 the output has
``ceil(H / 2)`` rows and columns.
"""

from __future__ import annotations

import torch
from torch import nn

from . import OPS
from .cell_ops import stride2_grids

#: NAS-Bench-101 trains with TensorFlow batch norm, decay 0.997 (PyTorch momentum 1 - 0.997)
NB101_BN_MOMENTUM = 0.003
NB101_BN_EPS = 1e-5


class ConvBNReLU(nn.Module):
    """Convolution ("same" padding, no bias), batch norm, ReLU."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        kernel: int,
        stride: int = 1,
        affine: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(C_out, affine=affine, momentum=momentum, eps=eps),
            nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConvBNReLU(nn.Module):
    """Depthwise ``k x k`` then pointwise convolution (channel multiplier 1, as ENAS), batch norm, ReLU."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int = 1, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.Conv2d(C_in, C_in, kernel, stride=stride, padding=kernel // 2, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
            nn.ReLU(inplace=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def pool3x3(kind: str, stride: int = 1) -> nn.Module:
    """3x3 max or average pooling with "same" padding (padding excluded from averages, as TensorFlow)."""
    if kind == "max":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if kind == "avg":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    raise ValueError(f"unknown pooling {kind!r}; expected 'max' or 'avg'")


class EnasBranch(nn.Module):
    """One ENAS macro operation: 1x1 Conv-BN-ReLU to ``C_out``, then the operation itself.

    ``op`` is ``"conv"``, ``"sep"``, ``"max"`` or ``"avg"``; ``kernel`` is used by the convolutions.
    """

    def __init__(self, C_in: int, C_out: int, op: str, kernel: int = 3, stride: int = 1, affine: bool = True) -> None:
        super().__init__()
        self.inp = ConvBNReLU(C_in, C_out, 1, affine=affine)
        self.op: nn.Module
        if op == "conv":
            self.op = ConvBNReLU(C_out, C_out, kernel, stride, affine)
        elif op == "sep":
            self.op = SepConvBNReLU(C_out, C_out, kernel, stride, affine)
        else:
            self.op = pool3x3(op, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(self.inp(x))


class EnasFactorizedReduction(nn.Module):
    """ENAS' factorized reduction: 1x1 convolutions on the stride-2 grid and on the grid shifted by one
    pixel (zero-padded at the bottom right), concatenated, then batch norm. With stride 1 it is a 1x1
    convolution and batch norm. Unlike DARTS' version there is no ReLU in front.
    """

    def __init__(self, C_in: int, C_out: int, stride: int = 2, affine: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"factorized reduction supports stride 1 or 2, got {stride}")
        self.stride = stride
        half = C_out // 2
        if stride == 1:
            self.paths = nn.ModuleList([nn.Conv2d(C_in, C_out, 1, bias=False)])
        else:
            self.paths = nn.ModuleList(  # on the stride-2 grids (see stride2_grids)
                [nn.Conv2d(C_in, half, 1, bias=False), nn.Conv2d(C_in, C_out - half, 1, bias=False)]
            )
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return self.bn(self.paths[0](x))
        grid, shifted = stride2_grids(x)
        return self.bn(torch.cat([self.paths[0](grid), self.paths[1](shifted)], dim=1))


class NB101MaxPool(nn.Module):
    """NAS-Bench-101's 3x3 max pooling; a 1x1 projection first if the width changes (the cell never
    needs one: it projects vertex inputs itself)."""

    def __init__(self, C_in: int, C_out: int, stride: int = 1, affine: bool = True) -> None:
        super().__init__()
        self.proj = (
            ConvBNReLU(C_in, C_out, 1, affine=affine, momentum=NB101_BN_MOMENTUM, eps=NB101_BN_EPS)
            if C_in != C_out
            else nn.Identity()
        )
        self.pool = pool3x3("max", stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.proj(x))


class ConvReLU(nn.Module):
    """Convolution with bias and "same" padding, then ReLU: the primitive of LaNAS' plain ConvNets."""

    def __init__(self, C_in: int, C_out: int, kernel: int, stride: int = 1, batch_norm: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(C_in, C_out, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)
        # He initialisation (as torchvision's VGG): with PyTorch's default a plain stack without
        # batch norm shrinks its signal layer by layer and barely trains.
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if conv.bias is not None:
            nn.init.zeros_(conv.bias)
        layers: list[nn.Module] = [conv]
        if batch_norm:
            layers.append(nn.BatchNorm2d(C_out))
        layers.append(nn.ReLU(inplace=False))
        self.op = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


# ----------------------------------------------------------------- registration
#: ENAS macro operations in the order of ENAS' architecture encoding (``fixed_arc`` integers 0..5)
ENAS_MACRO_OPS = (
    ("conv3x3", "enas_conv_3x3", "conv", 3),
    ("sep3x3", "enas_sep_conv_3x3", "sep", 3),
    ("conv5x5", "enas_conv_5x5", "conv", 5),
    ("sep5x5", "enas_sep_conv_5x5", "sep", 5),
    ("avgpool", "enas_avg_pool_3x3", "avg", 3),
    ("maxpool", "enas_max_pool_3x3", "max", 3),
)

#: NAS-Bench-101 interior operations in the benchmark's own order (the one its graph hash labels use)
NB101_OPS = (
    ("conv3x3-bn-relu", "nb101_conv_3x3"),
    ("conv1x1-bn-relu", "nb101_conv_1x1"),
    ("maxpool3x3", "nb101_max_pool_3x3"),
)


def _register_enas(registered: str, op: str, kernel: int) -> None:
    @OPS.register(registered, family="enas_macro")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return EnasBranch(C_in, C_out, op, kernel, stride, affine)

    factory.__doc__ = f"ENAS macro branch: 1x1 Conv-BN-ReLU, then {op} {kernel}x{kernel}."


def _register_nb101_conv(registered: str, kernel: int) -> None:
    @OPS.register(registered, family="nb101")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return ConvBNReLU(C_in, C_out, kernel, stride, affine, momentum=NB101_BN_MOMENTUM, eps=NB101_BN_EPS)

    factory.__doc__ = f"NAS-Bench-101 conv{kernel}x{kernel}-bn-relu."


def _register_plain(kernel: int) -> None:
    @OPS.register(f"plain_conv_{kernel}x{kernel}", family="convnet")
    def factory(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
        return ConvReLU(C_in, C_out, kernel, stride)

    factory.__doc__ = f"LaNAS ConvNet layer: {kernel}x{kernel} convolution and ReLU."


for _label, _registered, _op, _kernel in ENAS_MACRO_OPS:
    _register_enas(_registered, _op, _kernel)
_register_nb101_conv("nb101_conv_3x3", 3)
_register_nb101_conv("nb101_conv_1x1", 1)
for _kernel in (3, 5, 7):
    _register_plain(_kernel)


@OPS.register("nb101_max_pool_3x3", family="nb101")
def nb101_max_pool(C_in: int, C_out: int, stride: int, affine: bool = True) -> nn.Module:
    """NAS-Bench-101 maxpool3x3."""
    return NB101MaxPool(C_in, C_out, stride, affine)
