"""LaNAS' plain VGG-style ConvNet space (Wang et al. 2019, section 2 and ConvNet-60K).

A network is a stack of ``depth`` Conv-ReLU layers, each with its own kernel size and number of
filters. The defaults are the paper's motivating example: depth 1..5, filters {32, 64}, kernels
{3x3, 5x5}, 1,364 networks. ConvNet-60K widens it to depth 1..8 and filters {32, 64, 96}
(``create_space("convnet", max_depth=8, channels=[32, 64, 96])``).

Decisions follow the paper's "global" action space: the depth first (structure), then the kernel
of every layer, then the filters of every layer (operations); the layers deeper than the chosen
depth are inactive.

The paper names only depth, filters and kernels, so the network is the plainest one consistent
with them: the Conv-ReLU layers at full resolution ("same" padding, stride 1, no residual
connections), global average pooling and a linear classifier. The convolutions start from He
initialisation, without which such plain stacks barely move from chance in a short proxy training.
The full ConvNet-60K grid holds 2,015,538 networks (the paper's data set is named for 60,000).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..models.plain_convnet import PlainConvNet
from ..registry import SPACES
from .base import OPERATION, STRUCTURE, Decision, SearchSpace


@dataclass
class ConvNetConfig:
    """Options of the ConvNet space (defaults: LaNAS' 1,364-network motivating example)."""

    max_depth: int = 5  # most convolutional layers (the depth is searched from 1)
    channels: tuple[int, ...] = (32, 64)  # filter counts a layer can have
    kernels: tuple[int, ...] = (3, 5)  # kernel sizes a layer can have (odd, for same padding)

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        self.kernels = tuple(self.kernels)
        if self.max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {self.max_depth}")
        if not self.channels or min(self.channels) < 1 or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels must be distinct positive numbers, got {self.channels}")
        odd = all(k >= 1 and k % 2 == 1 for k in self.kernels)
        if not self.kernels or not odd or len(set(self.kernels)) != len(self.kernels):
            raise ValueError(f"kernels must be distinct odd sizes (for 'same' padding), got {self.kernels}")


@dataclass
class ConvNetModelArgs:
    """Size knobs of the network built by :meth:`ConvNetSpace.build`."""

    width: float = 1.0  # multiplies every layer's filters (at least 1 filter each)
    batch_norm: bool = False  # BN after each convolution (the paper's layers are plain Conv-ReLU)
    dropout: float = 0.0  # before the classifier

    def __post_init__(self) -> None:
        if self.width <= 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@SPACES.register("convnet", finite=True, trainable=True, tabular=False, has_structure=True)
class ConvNetSpace(SearchSpace):
    """LaNAS plain ConvNets: depth, then per layer kernel size and filters (1,364 networks by default).

    Config: ``max_depth`` (5), ``channels`` ((32, 64)), ``kernels`` ((3, 5)). :meth:`build` model
    arguments: ``width`` (1.0, filter multiplier), ``batch_norm`` (False), ``dropout`` (0.0).
    String form: one ``k<kernel>c<filters>`` per layer joined by ``-``, e.g. ``k3c32-k5c64``.
    """

    name = "convnet"
    model_args = ConvNetModelArgs
    Config = ConvNetConfig

    def __init__(self, config: ConvNetConfig | None = None) -> None:
        self.config = config or ConvNetConfig()
        c = self.config
        self.max_depth = c.max_depth
        depth = Decision("depth", c.max_depth, STRUCTURE, tuple(str(d) for d in range(1, c.max_depth + 1)))
        kernels = tuple(
            Decision(f"kernel_{i}", len(c.kernels), OPERATION, tuple(f"{k}x{k}" for k in c.kernels))
            for i in range(1, c.max_depth + 1)
        )
        channels = tuple(
            Decision(f"channels_{i}", len(c.channels), OPERATION, tuple(str(n) for n in c.channels))
            for i in range(1, c.max_depth + 1)
        )
        self.decisions = (depth,) + kernels + channels

    # ----------------------------------------------------------------- structure
    def depth(self, choices: Sequence[int]) -> int:
        return int(choices[0]) + 1

    def layers(self, choices: Sequence[int]) -> list[tuple[int, int]]:
        """``(kernel, filters)`` of every layer of the network."""
        D = self.max_depth
        return [
            (self.config.kernels[choices[1 + i]], self.config.channels[choices[1 + D + i]])
            for i in range(self.depth(choices))
        ]

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        per_layer = tuple(i < self.depth(choices) for i in range(self.max_depth))
        return (True,) + per_layer + per_layer

    @property
    def size(self) -> int:
        per_layer = len(self.config.kernels) * len(self.config.channels)
        return sum(per_layer**d for d in range(1, self.max_depth + 1))

    def enumerate(self) -> Iterator[Architecture]:
        """Depth by depth, only over the active decisions (the base class would scan every tuple)."""
        D = self.max_depth
        options = list(itertools.product(range(len(self.config.kernels)), range(len(self.config.channels))))
        for depth in range(1, D + 1):
            for layers in itertools.product(options, repeat=depth):
                choices = [0] * len(self.decisions)
                choices[0] = depth - 1
                for i, (k, c) in enumerate(layers):
                    choices[1 + i], choices[1 + D + i] = k, c
                yield Architecture(self.name, tuple(choices), self.to_string(choices))

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        return "-".join(f"k{k}c{c}" for k, c in self.layers(choices))

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        parts = text.split("-")
        if not 1 <= len(parts) <= self.max_depth:
            raise InvalidArchitecture(
                f"convnet string {text!r}: {len(parts)} layers, expected 1 to {self.max_depth}"
            )
        D = self.max_depth
        choices = [0] * len(self.decisions)
        choices[0] = len(parts) - 1
        for i, part in enumerate(parts):
            match = re.fullmatch(r"k(\d+)c(\d+)", part.strip())
            if not match:
                raise InvalidArchitecture(f"convnet string {text!r}: layer {part!r} must be 'k<kernel>c<filters>'")
            kernel, filters = int(match.group(1)), int(match.group(2))
            if kernel not in self.config.kernels:
                raise InvalidArchitecture(
                    f"convnet string {text!r}: kernel {kernel} not among {list(self.config.kernels)}"
                )
            if filters not in self.config.channels:
                raise InvalidArchitecture(
                    f"convnet string {text!r}: {filters} filters not among {list(self.config.channels)}"
                )
            choices[1 + i] = self.config.kernels.index(kernel)
            choices[1 + D + i] = self.config.channels.index(filters)
        return self.make(choices)

    def graph(self, arch: Architecture) -> ArchGraph:
        """The chain of Conv-ReLU layers between the input image and the pooled classifier."""
        nodes = [GraphNode("in", "image", "input")]
        for i, (k, c) in enumerate(self.layers(arch.choices)):
            nodes.append(GraphNode(f"l{i}", f"conv {k}x{k}, {c}"))
        nodes.append(GraphNode("out", "pool + fc", "output"))
        edges = tuple(GraphEdge(a.id, b.id) for a, b in zip(nodes, nodes[1:]))
        return ArchGraph(self.name, "chain", (GraphPart("network", tuple(nodes), edges),), "plain ConvNet")

    # ----------------------------------------------------------------- models
    def build(self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any) -> nn.Module:
        """The plain ConvNet of ``arch``; ``model_args``: ``width`` (1.0), ``batch_norm`` (False), ``dropout`` (0)."""
        args = build_config(ConvNetModelArgs, model_args, "model")
        self.validate(arch)
        layers = [(k, max(1, round(c * args.width))) for k, c in self.layers(arch.choices)]
        return PlainConvNet(layers, num_classes, in_channels, args.batch_norm, args.dropout)
