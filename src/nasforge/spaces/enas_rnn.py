"""The ENAS / EDNAS recurrent-cell search space (Pham et al. 2018; Lee et al., EDNAS).

A cell of ``N`` nodes (see :mod:`nasforge.models.rnn_lm`): node 0 combines the input and the previous
hidden state; every later node ``j`` reads one earlier node (a "structure" decision with ``j``
options) and applies one of tanh, ReLU, identity, sigmoid (an "operation" decision, node 0's too).
The output is the average of the loose ends (ENAS) or of all nodes (EDNAS).

Decisions come in ENAS' controller order: node 0's activation, then per node its input and its
activation, with activations numbered as in ENAS' code (0 tanh, 1 relu, 2 identity, 3 sigmoid), so
that ENAS' ``fixed_arc`` strings parse to the same cell. Every choice tuple is a valid, canonical
cell: the space holds exactly ``4^N * (N-1)!`` architectures (6.7e14 for ENAS' 12 nodes). :attr:`size`
is that exact number (strategies compare it with their own limits) and :meth:`enumerate` is lazy,
so it is practical only for small ``N``. Isomorphic cells (e.g. two siblings swapped) keep distinct
values: their weights differ in a super-network, where node identity matters.

Settings of the papers: ENAS searches ``N = 12`` nodes with loose-end output. EDNAS uses 9 hidden nodes
(its count ``prod_{i=1}^{N-1} i * 4^8`` has no choice for node 0, whose activation it fixes to tanh)
and averages all nodes: ``nodes=9 output=all``, with node 0's activation searched here.
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
from ..errors import ConfigError, InvalidArchitecture
from ..graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from ..models.rnn_lm import ACTIVATIONS, OUTPUTS, CellPlan, EnasRNNCell, RNNLanguageModel
from ..registry import SPACES
from .base import OPERATION, STRUCTURE, Decision, SearchSpace

_NODE = re.compile(r"(\d+)\s*:\s*(\w+)\s*(?:<-\s*(\d+))?")


@dataclass
class EnasRNNConfig:
    """Parameters of the ENAS recurrent-cell space."""

    nodes: int = 12  # ENAS' PTB cell; EDNAS uses 9
    output: str = "loose_ends"  # or "all" (EDNAS)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {self.nodes}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")


@dataclass
class EnasRNNModelArgs:
    """Size and regularisation of the language model built by :meth:`EnasRNNSpace.build`.

    Sizes are EDNAS' search setting (300 / 300; ENAS' final PTB model uses 1000 and EDNAS' 850). The
    dropout rates are AWD-LSTM's PTB values, on which ENAS' and EDNAS' code is built (EDNAS reports
    0.75 on the output during its search).
    """

    emb_size: int = 300  # word embedding size
    hidden_size: int = 300  # recurrent cell width
    dropout_embedding: float = 0.1  # whole words of the embedding
    dropout_input: float = 0.4  # variational, on the cell input
    dropout_hidden: float = 0.25  # variational, on h_{t-1} before the recurrent weights
    dropout_output: float = 0.4  # variational, on the cell output before the decoder
    max_hidden_norm: float = 25.0  # cap on the hidden state's norm (ENAS' PyTorch code); 0: none

    def __post_init__(self) -> None:
        if self.max_hidden_norm < 0:
            raise ValueError(f"max_hidden_norm must be >= 0, got {self.max_hidden_norm}")
        if self.emb_size < 1 or self.hidden_size < 1:
            raise ValueError(f"emb_size and hidden_size must be positive, got {self.emb_size}, {self.hidden_size}")
        for name in ("dropout_embedding", "dropout_input", "dropout_hidden", "dropout_output"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@SPACES.register("enas-rnn", finite=True, trainable=False, tabular=False, has_structure=True, language_model=True)
class EnasRNNSpace(SearchSpace):
    """ENAS recurrent cell: N nodes, each (after the first) reading one earlier node, one of 4 activations.

    Config: ``nodes`` (12), ``output`` (``loose_ends`` or ``all``). :meth:`build` gives a word-level
    language model (model arguments in :class:`EnasRNNModelArgs`); it is registered with
    ``trainable=False`` because it builds language models, not image classifiers
    (``language_model=True``).

    String form: one ``j:activation<-i`` per node separated by spaces, node 0 without an input, e.g.
    ``0:tanh 1:relu<-0 2:sigmoid<-1``. :meth:`parse` also reads ENAS' ``fixed_arc`` form, integers in
    decision order (``"0 1 1 0 3"`` is the same cell as the example).
    """

    name = "enas-rnn"
    model_args = EnasRNNModelArgs
    Config = EnasRNNConfig

    def __init__(self, config: EnasRNNConfig | None = None) -> None:
        self.config = config or EnasRNNConfig()
        self.nodes = self.config.nodes
        decisions = [Decision("node0_act", len(ACTIVATIONS), OPERATION, ACTIVATIONS)]
        for j in range(1, self.nodes):
            decisions.append(Decision(f"node{j}_input", j, STRUCTURE, tuple(str(i) for i in range(j))))
            decisions.append(Decision(f"node{j}_act", len(ACTIVATIONS), OPERATION, ACTIVATIONS))
        self.decisions = tuple(decisions)

    # ----------------------------------------------------------------- structure
    def plan(self, arch: Architecture | Sequence[int]) -> CellPlan:
        """The cell of ``arch`` (an architecture or its choice tuple), for the models."""
        choices = arch.choices if isinstance(arch, Architecture) else tuple(arch)
        activations = (ACTIVATIONS[choices[0]], *(ACTIVATIONS[c] for c in choices[2::2]))
        return CellPlan(activations, tuple(choices[1::2]), self.config.output)

    @property
    def size(self) -> int:
        return len(ACTIVATIONS) ** self.nodes * math.factorial(self.nodes - 1)

    @property
    def log10_size(self) -> float:
        return self.nodes * math.log10(len(ACTIVATIONS)) + math.lgamma(self.nodes) / math.log(10)

    def enumerate(self) -> Iterator[Architecture]:
        # Every choice tuple is valid and canonical here: no rejection or deduplication needed.
        for choices in itertools.product(*(range(d.n_choices) for d in self.decisions)):
            yield Architecture(self.name, choices, self.to_string(choices))

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        plan = self.plan(choices)
        parts = [f"0:{plan.activations[0]}"]
        parts += [f"{j}:{plan.activations[j]}<-{i}" for j, i in plan.edges()]
        return " ".join(parts)

    def parse(self, text: str) -> Architecture:
        text = text.strip()
        if re.fullmatch(r"[\d\s]+", text):
            return self._parse_fixed_arc(text)
        parts = re.sub(r"\s*(:|<-)\s*", r"\1", text).split()
        if len(parts) != self.nodes:
            raise InvalidArchitecture(
                f"enas-rnn string {text!r}: expected {self.nodes} nodes 'j:activation<-i' separated by spaces, "
                f"got {len(parts)}"
            )
        choices: list[int] = []
        for j, part in enumerate(parts):
            choices.extend(self._parse_node(j, part, text))
        return self.make(choices)

    def _parse_node(self, j: int, part: str, text: str) -> list[int]:
        match = _NODE.fullmatch(part)
        if not match:
            raise InvalidArchitecture(f"enas-rnn string {text!r}: node {part!r} must be 'j:activation<-i'")
        index, act, source = match.groups()
        if int(index) != j:
            raise InvalidArchitecture(f"enas-rnn string {text!r}: node {j} is numbered {index}")
        if act not in ACTIVATIONS:
            raise InvalidArchitecture(
                f"enas-rnn string {text!r}: unknown activation {act!r} (known: {', '.join(ACTIVATIONS)})"
            )
        if j == 0:
            if source is not None:
                raise InvalidArchitecture(f"enas-rnn string {text!r}: node 0 reads the input and h_(t-1), not a node")
            return [ACTIVATIONS.index(act)]
        if source is None or not 0 <= int(source) < j:
            raise InvalidArchitecture(
                f"enas-rnn string {text!r}: node {j} must read one earlier node ('{j}:{act}<-i', i in 0..{j - 1})"
            )
        return [int(source), ACTIVATIONS.index(act)]

    def _parse_fixed_arc(self, text: str) -> Architecture:
        values = [int(v) for v in text.split()]
        if len(values) != len(self.decisions):
            raise InvalidArchitecture(
                f"enas-rnn fixed_arc {text!r}: {self.nodes} nodes need {len(self.decisions)} integers, "
                f"got {len(values)}"
            )
        return self.make(values)

    def graph(self, arch: Architecture) -> ArchGraph:
        """The recurrent cell: ``x_t`` and ``h_{t-1}`` into node 0, each node's activation on its incoming edge
        (ENAS' drawing), and ``h_t`` averaging the loose ends (or every node)."""
        plan = self.plan(arch)
        nodes = [GraphNode("x_t", "x_t", "input"), GraphNode("h_{t-1}", "h_{t-1}", "input")]
        nodes += [GraphNode(str(j), str(j)) for j in range(self.nodes)]
        edges = [GraphEdge("x_t", "0", plan.activations[0], "op"), GraphEdge("h_{t-1}", "0", plan.activations[0], "op")]
        edges += [GraphEdge(str(i), str(j), plan.activations[j], "op") for j, i in plan.edges()]
        ends = range(self.nodes) if self.config.output == "all" else plan.loose_ends()
        nodes.append(GraphNode("h_t", "h_t (average)", "output"))
        edges += [GraphEdge(str(j), "h_t", "", "concat") for j in ends]
        return ArchGraph(self.name, "rnn", (GraphPart("cell", tuple(nodes), tuple(edges)),),
                         f"ENAS recurrent cell ({self.nodes} nodes, output: {self.config.output})")

    # ----------------------------------------------------------------- models
    def build(
        self,
        arch: Architecture,
        *,
        num_classes: int | None = None,
        in_channels: int | None = None,
        vocab_size: int | None = None,
        **model_args: Any,
    ) -> nn.Module:
        """The language model of ``arch`` (:class:`~nasforge.models.rnn_lm.RNNLanguageModel`).

        ``vocab_size`` is required; ``num_classes`` and ``in_channels`` (the image spaces' arguments)
        are ignored. ``model_args`` are the fields of :class:`EnasRNNModelArgs`. The cell holds only
        the edges ``arch`` uses; their weights are named as in a super-network's cell.
        """
        if vocab_size is None:
            raise ConfigError("enas-rnn builds language models: build(..., vocab_size=...) is required")
        self.validate(arch)
        plan = self.plan(arch)
        return self._model(vocab_size, model_args, plan)

    def supernet(self, vocab_size: int, **model_args: Any) -> RNNLanguageModel:
        """A language model whose cell holds every candidate edge: ``forward(tokens, hidden, space.plan(arch))``
        runs any architecture of the space on shared weights (ENAS' shared model)."""
        return self._model(vocab_size, model_args, None)

    def _model(self, vocab_size: int, model_args: dict[str, Any], plan: CellPlan | None) -> RNNLanguageModel:
        args = build_config(EnasRNNModelArgs, model_args, "model")
        if int(vocab_size) < 1:
            raise ConfigError(f"model: vocab_size must be positive, got {vocab_size}")
        cell = EnasRNNCell(
            args.emb_size, args.hidden_size, self.nodes, edges=None if plan is None else plan.edges(), plan=plan,
            dropout_input=args.dropout_input, dropout_hidden=args.dropout_hidden,
            max_hidden_norm=args.max_hidden_norm,
        )
        return RNNLanguageModel(
            cell, int(vocab_size), dropout_embedding=args.dropout_embedding, dropout_output=args.dropout_output
        )
