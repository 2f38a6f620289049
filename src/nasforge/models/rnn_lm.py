"""The ENAS recurrent cell and the word-level language model around it (Pham et al. 2018).

The cell has ``N`` nodes. Node 0 reads the input ``x_t`` and the previous hidden state ``h_{t-1}``;
every later node ``j`` reads one earlier node ``i``. Each node is a highway layer (Zilly et al. 2017)
as in ENAS::

    node 0:  c = sigmoid(x W_xc + h W_hc),  n_0 = c * f_0(x W_xh + h W_hh) + (1 - c) * h_{t-1}
    node j:  c = sigmoid(n_i W_c^{j,i}),    n_j = c * f_j(n_i W_h^{j,i}) + (1 - c) * n_i

with ``f`` one of tanh, ReLU, identity, sigmoid. The cell's output, which is also the next hidden
state, is the average of the loose ends (nodes no other node reads; ENAS) or of all nodes (EDNAS).

Weights are kept per candidate edge ``(j, i)`` so that a super-network can share them: a cell built
with every edge runs any architecture given at call time, and a fixed child is the same module built
with only its own edges and a fixed :class:`CellPlan` (its weights load from the super-network's by
name). There are no biases, as in ENAS' cell.

Regularisation follows ENAS' code and AWD-LSTM (Merity et al. 2018): embedding dropout (whole words),
and variational ("locked") dropout masks on the cell input, on every state fed to the cell's weights
(``h_{t-1}`` and the node inputs; the highway carries stay unmasked, as in ENAS' fixed-cell code), and
on the output; one mask per sequence, not per step. The masks draw from torch's generator, as
:class:`torch.nn.Dropout` does.

The hidden state's norm is capped (``max_hidden_norm``, per sequence and time step, as ENAS' PyTorch code
does at 25): a random cell with identity or ReLU nodes can otherwise let the state grow without bound
at a learning rate of 20, and its perplexity explodes before clipping of gradients can help.

Where this differs from ENAS' code: its search-time shared model keeps one weight per (edge, activation)
pair and adds batch normalisation; the paper describes one weight per edge (``W_{l,j}``), which is what
this cell keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

#: activation names in ENAS' numbering (its ``fixed_arc`` strings use these indices)
ACTIVATIONS: tuple[str, ...] = ("tanh", "relu", "identity", "sigmoid")
#: what the cell outputs: the average of the loose ends (ENAS) or of all nodes (EDNAS)
OUTPUTS: tuple[str, ...] = ("loose_ends", "all")

_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda x: x,
    "sigmoid": torch.sigmoid,
}


@dataclass(frozen=True)
class CellPlan:
    """One recurrent cell: each node's activation, each later node's input node, the output rule.

    Attributes:
        activations: activation name of nodes ``0..N-1``.
        inputs: ``inputs[j - 1]`` is the earlier node that node ``j`` reads (``N - 1`` entries).
        output: ``"loose_ends"`` or ``"all"``.
    """

    activations: tuple[str, ...]
    inputs: tuple[int, ...]
    output: str = "loose_ends"

    def __post_init__(self) -> None:
        if not self.activations:
            raise ValueError("a cell needs at least one node")
        if len(self.inputs) != len(self.activations) - 1:
            n = len(self.activations)
            raise ValueError(f"{n} nodes need {n - 1} inputs, got {len(self.inputs)}")
        unknown = [a for a in self.activations if a not in _FUNCTIONS]
        if unknown:
            raise ValueError(f"unknown activation {unknown[0]!r} (known: {', '.join(ACTIVATIONS)})")
        for j, i in enumerate(self.inputs, start=1):
            if not 0 <= i < j:
                raise ValueError(f"node {j} must read an earlier node, got {i}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")

    @property
    def nodes(self) -> int:
        return len(self.activations)

    def edges(self) -> list[tuple[int, int]]:
        """The ``(node, input)`` edges the cell uses."""
        return [(j, i) for j, i in enumerate(self.inputs, start=1)]

    def loose_ends(self) -> tuple[int, ...]:
        """Nodes that no other node reads."""
        read = set(self.inputs)
        return tuple(j for j in range(self.nodes) if j not in read)

    def output_nodes(self) -> tuple[int, ...]:
        """Nodes averaged into the cell's output."""
        return self.loose_ends() if self.output == "loose_ends" else tuple(range(self.nodes))


def all_edges(nodes: int) -> list[tuple[int, int]]:
    """Every candidate edge ``(j, i)``, ``i < j``, of an ``nodes``-node cell (a super-network's)."""
    return [(j, i) for j in range(1, nodes) for i in range(j)]


def edge_key(j: int, i: int) -> str:
    """Name of edge ``(j, i)``'s weight (the same in a super-network and in its children)."""
    return f"n{j}_from{i}"


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask for every time step of ``x`` (``(T, B, D)`` or ``(B, D)``)."""
    if not training or p == 0.0:
        return x
    shape = (1, *x.shape[1:]) if x.dim() == 3 else x.shape
    mask = x.new_empty(shape).bernoulli_(1.0 - p) / (1.0 - p)
    return x * mask


class EnasRNNCell(nn.Module):
    """The ENAS recurrent cell with weights for a set of candidate edges (all of them by default).

    ``forward(x, h, plan)`` runs any :class:`CellPlan` whose edges this cell holds; ``plan`` may be
    left out when the cell was given a fixed one.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nodes: int,
        *,
        edges: Iterable[tuple[int, int]] | None = None,
        plan: CellPlan | None = None,
        dropout_input: float = 0.0,
        dropout_hidden: float = 0.0,
        max_hidden_norm: float = 0.0,
    ) -> None:
        super().__init__()
        if max_hidden_norm < 0:
            raise ValueError(f"max_hidden_norm must be >= 0 (0: no cap), got {max_hidden_norm}")
        if nodes < 1 or input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"nodes, input_size and hidden_size must be positive, got {nodes}, {input_size}, {hidden_size}"
            )
        if plan is not None and plan.nodes != nodes:
            raise ValueError(f"plan has {plan.nodes} nodes, the cell {nodes}")
        self.input_size, self.hidden_size, self.nodes = input_size, hidden_size, nodes
        self.plan = plan
        self.dropout_input, self.dropout_hidden = dropout_input, dropout_hidden
        self.max_hidden_norm = max_hidden_norm
        # Gate and candidate pre-activations come from one matrix each, as in ENAS ([W_c | W_h]).
        self.w_x = nn.Parameter(torch.empty(input_size, 2 * hidden_size))
        self.w_h = nn.Parameter(torch.empty(hidden_size, 2 * hidden_size))
        chosen = all_edges(nodes) if edges is None else sorted(set(edges))
        for j, i in chosen:
            if not 0 <= i < j < nodes:
                raise ValueError(f"edge {j}<-{i} is not an edge of a {nodes}-node cell")
        self.w_edge = nn.ParameterDict(
            {edge_key(j, i): nn.Parameter(torch.empty(hidden_size, 2 * hidden_size)) for j, i in chosen}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The uniform range of torch's own recurrent layers: keeps every highway gate near 0.5 at start.
        bound = self.hidden_size ** -0.5
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _plan(self, plan: CellPlan | None) -> CellPlan:
        plan = plan if plan is not None else self.plan
        if plan is None:
            raise ValueError("this cell has no fixed architecture: pass a CellPlan to forward")
        if plan.nodes != self.nodes:
            raise ValueError(f"plan has {plan.nodes} nodes, the cell {self.nodes}")
        missing = [f"{j}<-{i}" for j, i in plan.edges() if edge_key(j, i) not in self.w_edge]
        if missing:
            raise ValueError(
                f"this cell has no weight for edge(s) {', '.join(missing)} (built for another architecture)"
            )
        return plan

    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor, plan: CellPlan | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the cell over ``x`` ``(T, B, input_size)`` from ``hidden`` ``(B, hidden_size)``.

        Returns the outputs ``(T, B, hidden_size)`` and the last hidden state ``(B, hidden_size)``.
        """
        plan = self._plan(plan)
        functions = [_FUNCTIONS[a] for a in plan.activations]
        weights = [self.w_edge[edge_key(j, i)] for j, i in plan.edges()]
        out_nodes = plan.output_nodes()
        # The input's share does not depend on the recurrence: one matrix product for the whole sequence.
        x_parts = locked_dropout(x, self.dropout_input, self.training) @ self.w_x
        h_mask = locked_dropout(hidden.new_ones(hidden.shape), self.dropout_hidden, self.training)
        outputs = []
        for t in range(x.shape[0]):
            hidden = self._cap(self._step(x_parts[t], hidden, h_mask, plan.inputs, functions, weights, out_nodes))
            outputs.append(hidden)
        return torch.stack(outputs), hidden

    def _cap(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.max_hidden_norm:
            return hidden
        norm = hidden.norm(dim=-1, keepdim=True)
        return hidden * (self.max_hidden_norm / norm.clamp(min=self.max_hidden_norm))

    def _step(
        self,
        x_part: torch.Tensor,
        h_prev: torch.Tensor,
        h_mask: torch.Tensor,
        inputs: Sequence[int],
        functions: Sequence[Callable[[torch.Tensor], torch.Tensor]],
        weights: Sequence[torch.Tensor],
        out_nodes: Sequence[int],
    ) -> torch.Tensor:
        # The state mask applies to what the weights see; the highway carry passes the state itself (ENAS' code).
        nodes = [_highway(x_part + (h_prev * h_mask) @ self.w_h, h_prev, functions[0])]
        for j, (i, w) in enumerate(zip(inputs, weights), start=1):
            nodes.append(_highway((nodes[i] * h_mask) @ w, nodes[i], functions[j]))
        return torch.stack([nodes[k] for k in out_nodes]).mean(0)


def _highway(pre: torch.Tensor, carry: torch.Tensor, f: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    gate_pre, candidate_pre = pre.chunk(2, dim=-1)
    gate = torch.sigmoid(gate_pre)
    return carry + gate * (f(candidate_pre) - carry)


class RNNLanguageModel(nn.Module):
    """Embedding, a recurrent cell, and a decoder tied to the embedding.

    ``forward(tokens (T, B), hidden (B, H), plan=None) -> (logits (T, B, V), new hidden (B, H))``;
    ``plan`` goes to the cell (a super-network's children), else the cell's fixed plan is used. When
    the cell's hidden size differs from the embedding size, a linear projection (no bias) maps the
    outputs to the embedding size before the tied decoder, as in AWD-LSTM's last layer.
    """

    def __init__(
        self,
        cell: EnasRNNCell,
        vocab_size: int,
        *,
        dropout_embedding: float = 0.0,
        dropout_output: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size < 1:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        self.vocab_size = vocab_size
        self.cell = cell
        self.dropout_embedding, self.dropout_output = dropout_embedding, dropout_output
        emb = cell.input_size
        self.encoder = nn.Embedding(vocab_size, emb)
        self.projection = None if cell.hidden_size == emb else nn.Linear(cell.hidden_size, emb, bias=False)
        self.decoder = nn.Linear(emb, vocab_size)
        self.decoder.weight = self.encoder.weight  # tied (Press & Wolf 2017; Inan et al. 2017)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)  # AWD-LSTM's initialisation
        nn.init.zeros_(self.decoder.bias)

    @property
    def hidden_size(self) -> int:
        return self.cell.hidden_size

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        """A zero hidden state ``(batch_size, hidden_size)`` on the model's device."""
        return self.encoder.weight.new_zeros(batch_size, self.cell.hidden_size)

    def forward(
        self, tokens: torch.Tensor, hidden: torch.Tensor, plan: CellPlan | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        emb = F.embedding(tokens, self._embedding_weight())
        out, hidden = self.cell(emb, hidden, plan)
        out = locked_dropout(out, self.dropout_output, self.training)
        if self.projection is not None:
            out = self.projection(out)
        return self.decoder(out), hidden

    def _embedding_weight(self) -> torch.Tensor:
        # Embedding dropout drops whole words (rows), the same for every occurrence in the batch.
        weight = self.encoder.weight
        if not self.training or self.dropout_embedding == 0.0:
            return weight
        p = self.dropout_embedding
        return weight * (weight.new_empty(weight.shape[0], 1).bernoulli_(1.0 - p) / (1.0 - p))
