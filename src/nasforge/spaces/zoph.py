"""Zoph & Le's macro space (ICLR 2017, "Neural Architecture Search with Reinforcement Learning", section 3.3).

A network of ``L`` convolutional layers (15 in their CIFAR-10 search). For each layer the controller picks, in
this order, the filter height and width from {1, 3, 5, 7}, the number of filters from {24, 36, 48, 64},
optionally the stride from {1, 2, 3} (``strides=true``; the paper searches with stride 1 first), and then which
earlier layers feed it: one binary decision per earlier layer, which the ``reinforce`` controller takes by
anchor-point attention (``p(j -> i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i))``), every other strategy as an
ordinary two-option decision.

Several inputs are concatenated along depth (smaller maps zero-padded to the largest); a layer with no input
takes the image; the classifier reads every output that no layer uses (:mod:`nasforge.models.zoph_net`).
Unlike ENAS' macro space the previous layer is not an input by default: layer ``i``'s candidates are layers
``0 .. i-1``, all chosen by attention.

String form: one ``i: HxW N`` per layer (``/s`` after the count when the stride is not 1), with ``<- a,b`` for
input layers, separated by `` | ``: ``0: 3x3 36 | 1: 5x7 48 <- 0 | 2: 1x1 24/2 <- 0,1``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..models.zoph_net import ZophLayer, ZophNet, loose_ends
from ..registry import SPACES
from .base import OPERATION, STRUCTURE, Decision, SearchSpace


@dataclass
class ZophConfig:
    """Parameters of the Zoph & Le space."""

    layers: int = 15  # their CIFAR-10 search grows to 15 layers
    strides: bool = False  # also choose each layer's stride
    heights: tuple[int, ...] = (1, 3, 5, 7)  # filter heights a layer can have (odd: same padding)
    widths: tuple[int, ...] = (1, 3, 5, 7)  # filter widths a layer can have (odd)
    filters: tuple[int, ...] = (24, 36, 48, 64)  # filter counts a layer can have
    stride_options: tuple[int, ...] = (1, 2, 3)  # strides a layer can have (with strides=true)

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"layers must be at least 1, got {self.layers}")
        for field_name in ("heights", "widths"):
            values = getattr(self, field_name)
            if not values or any(v < 1 or v % 2 == 0 for v in values):
                raise ValueError(f"{field_name} must be odd positive sizes (same padding), got {list(values)}")
        if not self.filters or any(f < 1 for f in self.filters):
            raise ValueError(f"filters must be positive counts, got {list(self.filters)}")
        if not self.stride_options or any(s < 1 for s in self.stride_options):
            raise ValueError(f"stride_options must be positive, got {list(self.stride_options)}")


@dataclass
class ZophModelArgs:
    """Size of the network built by :meth:`ZophSpace.build`."""

    scale: float = 1.0  # multiplies every layer's filter count (1: the searched counts)
    dropout: float = 0.0  # dropout before the classifier

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


_LAYER = re.compile(r"(\d+)\s*:\s*(\d+)x(\d+)\s+(\d+)(?:/(\d+))?\s*(?:<-\s*(.*))?")


@SPACES.register("zoph", finite=False, trainable=True, tabular=False, has_structure=True,
                 paper="Zoph & Le 2017")
class ZophSpace(SearchSpace):
    """Zoph & Le's layer-wise space: filter height, width, count (and stride) per layer, inputs by attention.

    Config: ``layers`` (15), ``strides`` (false), and the option lists ``heights``, ``widths``, ``filters``,
    ``stride_options``. :meth:`build` model arguments: ``scale`` (1.0), ``dropout`` (0.0).
    """

    name = "zoph"
    model_args = ZophModelArgs
    Config = ZophConfig

    def __init__(self, config: ZophConfig | None = None) -> None:
        self.config = config or ZophConfig()
        c = self.config
        self.layers = c.layers
        decisions: list[Decision] = []
        self._first: list[int] = []  # index of each layer's height decision
        self._skips: dict[int, tuple[int, int]] = {}
        for i in range(self.layers):
            self._first.append(len(decisions))
            decisions.append(Decision(f"layer{i}_height", len(c.heights), OPERATION, tuple(map(str, c.heights))))
            decisions.append(Decision(f"layer{i}_width", len(c.widths), OPERATION, tuple(map(str, c.widths))))
            decisions.append(Decision(f"layer{i}_filters", len(c.filters), OPERATION, tuple(map(str, c.filters))))
            if c.strides:
                decisions.append(Decision(f"layer{i}_stride", len(c.stride_options), OPERATION,
                                          tuple(map(str, c.stride_options))))
            for j in range(i):
                self._skips[len(decisions)] = (i, j)
                decisions.append(Decision(f"layer{i}<-{j}", 2, STRUCTURE, ("no", "yes")))
        self.decisions = tuple(decisions)

    @property
    def _per_layer(self) -> int:
        return 4 if self.config.strides else 3

    # ----------------------------------------------------------------- structure
    def skip_links(self) -> dict[int, tuple[int, int]]:
        """``{decision index: (layer i, input candidate j)}``: the anchor-point attention's decisions."""
        return dict(self._skips)

    def layer_plan(self, choices: Sequence[int]) -> list[ZophLayer]:
        """The network's layers: filter shape, count, stride and input layers of each."""
        c = self.config
        plan = []
        for i, start in enumerate(self._first):
            stride = c.stride_options[choices[start + 3]] if c.strides else 1
            bits = choices[start + self._per_layer : start + self._per_layer + i]
            plan.append(ZophLayer(c.heights[choices[start]], c.widths[choices[start + 1]],
                                  c.filters[choices[start + 2]], stride,
                                  tuple(j for j, b in enumerate(bits) if b)))
        return plan

    @property
    def log10_size(self) -> float:
        per_layer = sum(math.log10(d.n_choices) for d in self.decisions[: self._per_layer])
        return self.layers * per_layer + self.layers * (self.layers - 1) / 2 * math.log10(2)

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        parts = []
        for i, layer in enumerate(self.layer_plan(choices)):
            stride = f"/{layer.stride}" if layer.stride != 1 else ""
            inputs = f" <- {','.join(map(str, layer.inputs))}" if layer.inputs else ""
            parts.append(f"{i}: {layer.height}x{layer.width} {layer.filters}{stride}{inputs}")
        return " | ".join(parts)

    def parse(self, text: str) -> Architecture:
        parts = [p.strip() for p in text.strip().split("|")]
        if len(parts) != self.layers:
            raise InvalidArchitecture(
                f"zoph string {text!r}: expected {self.layers} layers separated by '|', got {len(parts)} "
                "(the number of layers is space.layers)"
            )
        choices: list[int] = []
        for i, part in enumerate(parts):
            choices.extend(self._parse_layer(i, part, text))
        return self.make(choices)

    def _option(self, values: tuple[int, ...], value: int, what: str, i: int, text: str) -> int:
        if value not in values:
            raise InvalidArchitecture(
                f"zoph string {text!r}: layer {i} {what} {value} is not an option ({', '.join(map(str, values))})"
            )
        return values.index(value)

    def _parse_layer(self, i: int, part: str, text: str) -> list[int]:
        match = _LAYER.fullmatch(part)
        if not match:
            raise InvalidArchitecture(
                f"zoph string {text!r}: layer {part!r} must read 'i: HxW N', 'i: HxW N/stride' or 'i: HxW N <- a,b'"
            )
        index, height, width, filters, stride, sources = match.groups()
        if int(index) != i:
            raise InvalidArchitecture(f"zoph string {text!r}: layer {i} is numbered {index}")
        c = self.config
        out = [self._option(c.heights, int(height), "filter height", i, text),
               self._option(c.widths, int(width), "filter width", i, text),
               self._option(c.filters, int(filters), "filter count", i, text)]
        if c.strides:
            out.append(self._option(c.stride_options, int(stride or 1), "stride", i, text))
        elif stride and int(stride) != 1:
            raise InvalidArchitecture(f"zoph string {text!r}: layer {i} has stride {stride}, but this space "
                                      "searches stride 1 only (space.strides=true allows others)")
        bits = [0] * i
        for name in (s.strip() for s in (sources or "").split(",") if s.strip()):
            if not name.isdigit() or int(name) >= i:
                raise InvalidArchitecture(
                    f"zoph string {text!r}: layer {i} can only take earlier layers 0..{i - 1} as inputs, got {name!r}"
                )
            if bits[int(name)]:
                raise InvalidArchitecture(f"zoph string {text!r}: layer {i} lists input {name} twice")
            bits[int(name)] = 1
        return out + bits

    def graph(self, arch: Architecture) -> ArchGraph:
        """The layers with their inputs: a layer without inputs reads the image; the classifier reads every
        output no layer uses (the loose ends)."""
        plan = self.layer_plan(arch.choices)
        nodes = [GraphNode("img", "image", "input")]
        edges = []
        for i, layer in enumerate(plan):
            stride = f" /{layer.stride}" if layer.stride != 1 else ""
            nodes.append(GraphNode(f"l{i}", f"{i}: {layer.height}x{layer.width} conv, {layer.filters}{stride}"))
            sources = [f"l{j}" for j in layer.inputs] or ["img"]
            edges += [GraphEdge(src, f"l{i}", "", "data" if src in ("img", f"l{i - 1}") else "skip")
                      for src in sources]
        nodes.append(GraphNode("out", "concat + pool + fc", "output"))
        edges += [GraphEdge(f"l{j}", "out", "", "concat") for j in loose_ends(plan)]
        return ArchGraph(self.name, "chain", (GraphPart("network", tuple(nodes), tuple(edges)),),
                         f"Zoph & Le network ({self.layers} layers)")

    # ----------------------------------------------------------------- models
    def build(self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any) -> nn.Module:
        """The network of ``arch``; ``model_args``: ``scale`` (1.0), ``dropout`` (0.0)."""
        args = build_config(ZophModelArgs, model_args, "model")
        self.validate(arch)
        return ZophNet(self.layer_plan(arch.choices), num_classes, in_channels, args.scale, args.dropout)
