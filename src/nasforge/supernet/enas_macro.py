"""The super-network of the ``enas-macro`` space: shared layers with per-source skip projections."""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import Architecture
from ..models.enas_macro_net import REGISTERED_OPS, EnasMacroNet, reduction_layers
from ..ops import OPS
from ..spaces.enas_macro import OP_LABELS, EnasMacroModelArgs, EnasMacroSpace
from .base import SUPERNETS, Supernet, SupernetOptions


class SkipCombine(nn.Module):
    """The child's "concatenate the skip inputs and the operation's output, ReLU, 1x1 conv, BN", with
    the 1x1 convolution split into one ``C x C`` block per possible input.

    ENAS' own search code sums the chosen skip inputs instead (no projection); the child it derives,
    like this space's fixed network, concatenates and projects. Keeping the projection's blocks per
    source lets every child inherit its projection exactly: the child's weight is the concatenation of
    the blocks of its sources and of the operation's output, in that order.
    """

    def __init__(self, n_sources: int, C: int) -> None:
        super().__init__()
        blocks = {str(j): nn.Conv2d(C, C, 1, bias=False) for j in range(n_sources)}
        self.proj = nn.ModuleDict({**blocks, "out": nn.Conv2d(C, C, 1, bias=False)})
        self.bn = nn.BatchNorm2d(C)

    def weight(self, sources: Iterable[int]) -> torch.Tensor:
        """The child's 1x1 convolution weight for these skip sources."""
        keys = [str(j) for j in sources] + ["out"]
        return torch.cat([self.proj.get_parameter(f"{key}.weight") for key in keys], dim=1)

    def forward(self, inputs: list[torch.Tensor], sources: tuple[int, ...]) -> torch.Tensor:
        return self.bn(F.conv2d(F.relu(torch.cat(inputs, dim=1)), self.weight(sources)))


class SharedEnasLayer(nn.Module):
    """Layer ``index`` of the ENAS macro super-network: the six operations, then (after layer 0) the
    skip combination over every earlier node."""

    def __init__(self, index: int, C: int, affine: bool) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({label: OPS.create(REGISTERED_OPS[label], C, C, 1, affine) for label in OP_LABELS})
        self.combine = SkipCombine(index, C) if index > 0 else None

    def forward(self, nodes: list[torch.Tensor | None], op: str, sources: tuple[int, ...]) -> torch.Tensor:
        out = self.ops[op](nodes[-1])
        if self.combine is None:
            return out
        return self.combine([nodes[j] for j in sources] + [out], sources)


def outputs_needed(plan: list[tuple[str, tuple[int, ...]]], layer: int) -> set[int]:
    """Nodes still read after ``layer``: its output and the later layers' skip sources up to it."""
    return {layer + 1} | {j for _, later in plan[layer + 1 :] for j in later if j <= layer + 1}


@SUPERNETS.register("enas-macro", model_args=EnasMacroModelArgs)
class EnasMacroSupernet(Supernet, EnasMacroNet):
    """ENAS macro super-network: per layer the six operations and a 1x1 skip projection block per
    possible source; a factorized reduction for every node that may be read after each reduction.

    Built as the fixed network of the architecture that takes every skip (so that every reduction
    exists, under the fixed network's names), whose layers are then swapped for shared ones.
    """

    space: EnasMacroSpace

    def __init__(
        self,
        space: EnasMacroSpace,
        args: EnasMacroModelArgs,
        *,
        num_classes: int,
        in_channels: int,
        options: SupernetOptions,
    ) -> None:
        layers = space.layers
        every_skip = [(OP_LABELS[0], tuple(range(i))) for i in range(layers)]
        EnasMacroNet.__init__(self, every_skip, num_classes, in_channels, args.C, args.dropout)
        self._remember(space, args, num_classes, in_channels, options)
        reductions = reduction_layers(layers)
        self.layers = nn.ModuleList(
            SharedEnasLayer(i, args.C * 2 ** sum(r < i for r in reductions), options.shared_affine)
            for i in range(layers)
        )

    # The super-network reuses the network's layers, adding the architecture to forward's arguments.
    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:  # type: ignore[override]
        """The fixed network's computation for ``arch``; only outputs read later are reduced."""
        plan = self.space.layer_plan(self.space.validate(arch).choices)
        nodes: list[torch.Tensor | None] = [self.stem(x)]
        for i, (layer, (op, sources)) in enumerate(zip(self.layers, plan)):
            nodes.append(layer(nodes, op, sources))
            if str(i) in self.reductions:
                reduce, needed = self.reductions[str(i)], outputs_needed(plan, i)
                assert isinstance(reduce, nn.ModuleDict)  # EnasMacroNet keeps one reduction per node
                nodes = [reduce[str(k)](n) if k in needed else None for k, n in enumerate(nodes)]
        last = nodes[-1]
        assert last is not None  # the newest node is always needed, so it is always reduced
        out = torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
        return self.classifier(self.dropout(out))

    def child_tensor(self, arch: Architecture, key: str, state: dict[str, torch.Tensor]) -> torch.Tensor | None:
        match = re.fullmatch(r"layers\.(\d+)\.(op|combine\.1|combine\.2)\.(.+)", key)
        if not match:
            return state.get(key)
        i, part, rest = int(match.group(1)), match.group(2), match.group(3)
        op, sources = self.space.layer_plan(arch.choices)[i]
        if part == "op":
            return state.get(f"layers.{i}.ops.{op}.{rest}")
        if part == "combine.2":
            return state.get(f"layers.{i}.combine.bn.{rest}")
        layer = self.layers[i]
        # only layers after the first have a skip combination (and a child key "combine.1")
        assert isinstance(layer, SharedEnasLayer) and layer.combine is not None
        return layer.combine.weight(sources).detach()
