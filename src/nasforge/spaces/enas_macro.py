"""The ENAS macro search space (Pham et al. 2018; Zoph & Le 2017's layer-wise space with skip connections).

A network of ``L`` layers. Layer ``i`` applies one of six operations to the output of layer ``i - 1``
and may also take any subset of the earlier outputs as skip inputs. ``6^L * 2^(L(L-1)/2)``
architectures: about 1.6e29 for ENAS' 12 layers.

Where the paper is vague this follows the authors' code (``general_child.py``, fixed-architecture
mode), so that ENAS' ``fixed_arc`` strings mean the same network here:

- the decisions come in ENAS' order: layer ``i``'s operation (ENAS numbering: 0 conv3x3, 1 sep3x3,
  2 conv5x5, 3 sep5x5, 4 avgpool, 5 maxpool), then its ``i`` skip bits;
- the ``i`` skip candidates of layer ``i`` are the *nodes* ``0..i-1`` where node 0 is the stem and
  node ``k`` the output of layer ``k - 1``: the previous layer is always the input, so a bit for it
  would be redundant, and the stem can be skipped from;
- the chosen skip outputs and the operation's output are concatenated, then ReLU, 1x1 convolution
  back to the layer's width and batch norm (every layer but the first, skips or not);
- after layers ``L//3 - 1`` and ``2L//3 - 1`` the width doubles and every output kept for later skips
  is halved in resolution by a factorized reduction.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..models.enas_macro_net import EnasMacroNet
from ..ops.macro_ops import ENAS_MACRO_OPS
from ..registry import SPACES
from .base import OPERATION, STRUCTURE, Decision, SearchSpace

OP_LABELS = tuple(label for label, *_ in ENAS_MACRO_OPS)
STEM = "stem"


@dataclass
class EnasMacroConfig:
    """Parameters of the ENAS macro space."""

    layers: int = 12  # ENAS searches 12 layers (its final networks use 24)

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"layers must be at least 1, got {self.layers}")


@dataclass
class EnasMacroModelArgs:
    """Size of the network built by :meth:`EnasMacroSpace.build`."""

    C: int = 36  # channels of the first stage (ENAS search: 36; its final networks: 96)
    dropout: float = 0.0  # dropout before the classifier (ENAS trains with keep probability 0.9)

    def __post_init__(self) -> None:
        if self.C < 2:
            raise ValueError(f"C must be at least 2 (the factorized reduction splits it), got {self.C}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def source_name(node: int) -> str:
    """Name of skip source ``node``: the stem, or the layer whose output it is."""
    return STEM if node == 0 else str(node - 1)


@SPACES.register("enas-macro", finite=True, trainable=True, tabular=False, has_structure=True)
class EnasMacroSpace(SearchSpace):
    """ENAS macro space: L layers, each one of 6 operations plus any subset of skip inputs.

    Config: ``layers`` (12). :meth:`build` model arguments: ``C`` (36, first-stage channels, doubled
    at each of the two reductions) and ``dropout`` (0.0, before the classifier).

    String form: one ``i: op`` per layer, separated by `` | ``, with ``<- sources`` for skip inputs
    (``stem`` or a layer number), e.g. ``0: conv3x3 | 1: sep5x5 <- stem | 2: maxpool <- 0``.
    :meth:`parse` also reads ENAS' ``fixed_arc`` form, whitespace-separated integers in decision order
    (``"0 3 1 5 0 1"`` is the same network as the example).
    """

    name = "enas-macro"
    model_args = EnasMacroModelArgs
    Config = EnasMacroConfig

    def __init__(self, config: EnasMacroConfig | None = None) -> None:
        self.config = config or EnasMacroConfig()
        self.layers = self.config.layers
        decisions: list[Decision] = []
        self._op_index: list[int] = []
        self._skips: dict[int, tuple[int, int]] = {}
        for i in range(self.layers):
            self._op_index.append(len(decisions))
            decisions.append(Decision(f"layer{i}_op", len(OP_LABELS), OPERATION, OP_LABELS))
            for j in range(i):
                self._skips[len(decisions)] = (i, j)
                decisions.append(Decision(f"layer{i}<-{source_name(j)}", 2, STRUCTURE, ("no", "yes")))
        self.decisions = tuple(decisions)

    # ----------------------------------------------------------------- structure
    def skip_links(self) -> dict[int, tuple[int, int]]:
        """``{decision index: (layer i, skip candidate j)}``; candidate ``j`` is node ``j`` (0 = stem)."""
        return dict(self._skips)

    def layer_plan(self, choices: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
        """Per layer: the operation label and the skip source nodes (0 = stem, k = layer k - 1)."""
        plan = []
        for i, start in enumerate(self._op_index):
            bits = choices[start + 1 : start + 1 + i]
            plan.append((OP_LABELS[choices[start]], tuple(j for j, b in enumerate(bits) if b)))
        return plan

    @property
    def size(self) -> int:
        return len(OP_LABELS) ** self.layers * 2 ** (self.layers * (self.layers - 1) // 2)

    @property
    def log10_size(self) -> float:
        return self.layers * math.log10(len(OP_LABELS)) + self.layers * (self.layers - 1) / 2 * math.log10(2)

    def enumerate(self) -> Iterator[Architecture]:
        # Every choice tuple is valid and canonical here, so the base class' checks are not needed.
        for choices in itertools.product(*(range(d.n_choices) for d in self.decisions)):
            yield Architecture(self.name, choices, self.to_string(choices))

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        parts = []
        for i, (op, sources) in enumerate(self.layer_plan(choices)):
            skip = f" <- {','.join(source_name(j) for j in sources)}" if sources else ""
            parts.append(f"{i}: {op}{skip}")
        return " | ".join(parts)

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        if re.fullmatch(r"[\d\s]+", text):
            return self._parse_fixed_arc(text)
        parts = [p.strip() for p in text.split("|")]
        if len(parts) != self.layers:
            raise InvalidArchitecture(
                f"enas-macro string {text!r}: expected {self.layers} layers separated by '|', got {len(parts)}"
            )
        choices: list[int] = []
        for i, part in enumerate(parts):
            choices.extend(self._parse_layer(i, part, text))
        return self.make(choices)

    def _parse_layer(self, i: int, part: str, text: str) -> list[int]:
        match = re.fullmatch(r"(\d+)\s*:\s*([\w]+)\s*(?:<-\s*(.*))?", part)
        if not match:
            raise InvalidArchitecture(f"enas-macro string {text!r}: layer {part!r} must be 'i: op' or 'i: op <- a,b'")
        index, op, sources = match.groups()
        if int(index) != i:
            raise InvalidArchitecture(f"enas-macro string {text!r}: layer {i} is numbered {index}")
        if op not in OP_LABELS:
            raise InvalidArchitecture(
                f"enas-macro string {text!r}: unknown operation {op!r} (known: {', '.join(OP_LABELS)})"
            )
        bits = [0] * i
        allowed = {source_name(j): j for j in range(i)}
        for name in (s.strip() for s in (sources or "").split(",") if s.strip()):
            if name not in allowed:
                known = ", ".join(allowed) or "none"
                raise InvalidArchitecture(
                    f"enas-macro string {text!r}: layer {i} cannot take a skip from {name!r} (allowed: {known})"
                )
            if bits[allowed[name]]:
                raise InvalidArchitecture(f"enas-macro string {text!r}: layer {i} lists {name!r} twice")
            bits[allowed[name]] = 1
        if sources is not None and not any(bits):
            raise InvalidArchitecture(f"enas-macro string {text!r}: layer {i} has '<-' but no skip source")
        return [OP_LABELS.index(op), *bits]

    def _parse_fixed_arc(self, text: str) -> Architecture:
        values = [int(v) for v in text.split()]
        if len(values) != len(self.decisions):
            raise InvalidArchitecture(
                f"enas-macro fixed_arc {text!r}: {self.layers} layers need {len(self.decisions)} integers, "
                f"got {len(values)}"
            )
        return self.make(values)

    def graph(self, arch: Architecture) -> ArchGraph:
        """The layer chain from the stem to the classifier, with the skip connections of every layer."""
        plan = self.layer_plan(arch.choices)
        nodes = [GraphNode("n0", STEM, "input")]
        edges = []
        for i, (op, sources) in enumerate(plan):
            nodes.append(GraphNode(f"n{i + 1}", f"{i}: {op}"))
            edges.append(GraphEdge(f"n{i}", f"n{i + 1}", "", "data"))
            edges += [GraphEdge(f"n{j}", f"n{i + 1}", "", "skip") for j in sources]
        nodes.append(GraphNode("out", "pool + fc", "output"))
        edges.append(GraphEdge(f"n{len(plan)}", "out", "", "data"))
        return ArchGraph(self.name, "chain", (GraphPart("network", tuple(nodes), tuple(edges)),),
                         f"ENAS macro network ({self.layers} layers)")

    # ----------------------------------------------------------------- models
    def build(self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any) -> nn.Module:
        """The ENAS macro network of ``arch``; ``model_args``: ``C`` (36), ``dropout`` (0.0)."""
        args = build_config(EnasMacroModelArgs, model_args, "model")
        self.validate(arch)
        return EnasMacroNet(self.layer_plan(arch.choices), num_classes, in_channels, args.C, args.dropout)
