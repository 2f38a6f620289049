"""The NASNet / ENAS / DARTS / EDNAS cell space: a normal and a reduction cell of ``B`` nodes.

Each cell has two input nodes (the outputs of the two previous cells, nodes 0 and 1) and ``B``
intermediate nodes ``2 .. B+1``. Intermediate node ``n`` takes two different earlier nodes as inputs,
applies one operation to each and sums them; the cell's output is the concatenation of all
intermediate nodes (DARTS' ``concat=range(2, B+2)``).

Decisions, per cell (``normal`` then ``reduce``) and per intermediate node ``n``:

- ``inputs_node_<cell>_<n>`` ("structure"): which unordered pair of the ``n`` earlier nodes it takes,
  ``C(n, 2)`` options labelled ``"0_1", "0_2", ...`` (node 2 has the single option ``"0_1"``);
- ``edge_<cell>_<e>`` ("operation"), one per possible edge: the operation on the edge from each
  earlier node. Edges are numbered as in NAS-Bench-301: node 2 from nodes 0, 1 is edges 0, 1;
  node 3 from 0, 1, 2 is edges 2..4; and so on (14 edges per cell for ``B = 4``). Only the edges of
  the chosen pair are active.

Separating the pair from the operations is what EDNAS samples (structure and operation policies).

String forms: ``str(arch)`` is the DARTS ``Genotype(normal=[('sep_conv_3x3', 0), ...],
normal_concat=range(2, 6), reduce=[...], reduce_concat=range(2, 6))``, which :meth:`DartsSpace.parse`
reads (without ``eval``), together with a compact form of two NAS-Bench-201-like cells joined by
``//``: ``|sep_conv_3x3~0|sep_conv_3x3~1|+|skip_connect~0|sep_conv_3x3~2|+...//|...|``.

Operation sets (``Config.ops``):

- ``darts``: the 7 operations of DARTS without "none", used by EDNAS and NAS-Bench-301;
- ``enas``: the 5 of ENAS; its "identity" is written ``skip_connect`` as in DARTS' genotypes (the
  parser accepts ``identity`` too);
- ``lanas``: the 8 of LaNAS (3x3, 5x5, 7x7 max pooling; 3x3, 5x5, 7x7 separable convolutions; 1x1
  convolution; identity);
- ``nasnet``: the 13 of NASNet. Its "3x3 dilated convolution" is DARTS' ``dil_conv_3x3`` (a
  depthwise-separable dilated convolution), so that the spaces share operations.

ENAS and NASNet let a node take the same input twice and concatenate only the unused nodes; this
space follows the DARTS convention (two different inputs, all nodes concatenated), which is how
cells of all these papers are shared in DARTS' ``genotypes.py``.

Model arguments of :meth:`DartsSpace.build` (the DARTS CIFAR network): ``C`` (initial channels, 16),
``layers`` (cells, 8; reduction cells at 1/3 and 2/3 of the depth), ``auxiliary`` (auxiliary head,
False), ``dropout`` (before the classifier, 0.0), ``stem_multiplier`` (3), ``affine`` (learnable
batch-norm scale and shift in the operations, True as in DARTS' evaluation network; NAS-Bench-301
trained its networks with False: with ``C=32, layers=8, affine=False`` the parameter counts of its
real cells are reproduced exactly). The model's ``drop_path_prob`` attribute sets the drop-path
probability of non-identity edges.
"""

from __future__ import annotations

import ast
import itertools
import math
import re
from collections import namedtuple
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, cell_part
from ..models.darts_net import DartsNetwork
from ..registry import SPACES
from .base import BLOCKS, OPERATION, STRUCTURE, Decision, SearchSpace

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
"""A pair of cells in the DARTS convention (the same fields and ``repr`` as DARTS' ``genotypes.py``)."""

OP_SETS: dict[str, tuple[str, ...]] = {
    "darts": (
        "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5",
    ),
    "enas": ("skip_connect", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3"),
    "lanas": (
        "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
        "conv_1x1", "skip_connect",
    ),
    "nasnet": (
        "skip_connect", "conv_7x1_1x7", "avg_pool_3x3", "max_pool_5x5", "conv_1x1", "sep_conv_3x3",
        "sep_conv_7x7", "conv_3x1_1x3", "dil_conv_3x3", "max_pool_3x3", "max_pool_7x7", "conv_3x3",
        "sep_conv_5x5",
    ),
}

#: other names papers use for an operation of the sets above
OP_ALIASES = {"identity": "skip_connect"}

CELLS = ("normal", "reduce")
N_INPUTS = 2

Cell = list[tuple[str, int]]


@dataclass
class DartsConfig:
    """Parameters of the DARTS cell space."""

    ops: str = "darts"  # operation set: darts, enas, lanas or nasnet
    nodes: int = 4  # intermediate nodes per cell (B): 4 in DARTS and EDNAS, 5 in ENAS
    # smallest cells held (None: nodes, full cells only); below nodes a 'blocks' decision holds the count (PNAS)
    min_blocks: int | None = None  # smallest cells held, for growing ones (None: every cell has `nodes` nodes)

    def __post_init__(self) -> None:
        if self.ops not in OP_SETS:
            raise ValueError(f"ops must be one of {', '.join(OP_SETS)}, got {self.ops!r}")
        if self.nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {self.nodes}")
        if self.min_blocks is not None and not 1 <= self.min_blocks <= self.nodes:
            raise ValueError(f"min_blocks must be in 1..nodes ({self.nodes}), got {self.min_blocks}")


@dataclass
class DartsModelArgs:
    """Size of the network built by :meth:`DartsSpace.build`."""

    C: int = 16  # channels of the first cells (doubled at each reduction)
    layers: int = 8  # number of cells
    auxiliary: bool = False  # auxiliary head at 2/3 of the depth
    dropout: float = 0.0  # dropout before the classifier
    stem_multiplier: int = 3  # the stem has stem_multiplier * C channels
    affine: bool = True  # learnable batch-norm scale/shift in the operations (NAS-Bench-301 used False)

    def __post_init__(self) -> None:
        if self.C < 1 or self.layers < 1 or self.stem_multiplier < 1:
            raise ValueError("C, layers and stem_multiplier must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class _Node:
    """Where a node's decisions are: its pair decision, the pairs, and the decision of each edge."""

    node: int
    structure: int
    pairs: tuple[tuple[int, int], ...]
    edges: dict[int, int] = field(hash=False)  # input node -> decision index


@SPACES.register("darts", finite=False, trainable=True, tabular=False, has_structure=True, growable=True)
class DartsSpace(SearchSpace):
    """DARTS / EDNAS / ENAS / NASNet cell space: normal and reduction cells of B nodes (not enumerable).

    Growable (:class:`~nasforge.spaces.base.GrowableSpace`): a block is a node, ``max_blocks`` is ``nodes``; with
    ``min_blocks`` < ``nodes`` the last decision, ``blocks``, holds how many nodes both cells have, and the
    decisions of the nodes after them are inactive. A smaller cell's string form lists its nodes only.
    """

    name = "darts"
    model_args = DartsModelArgs
    Config = DartsConfig

    def __init__(self, config: DartsConfig | None = None) -> None:
        self.config = config or DartsConfig()
        self.ops = OP_SETS[self.config.ops]
        decisions: list[Decision] = []
        self.layout: dict[str, list[_Node]] = {}
        for cell in CELLS:
            nodes, edge = [], 0
            for node in range(N_INPUTS, N_INPUTS + self.config.nodes):
                pairs = tuple(itertools.combinations(range(node), 2))
                structure = len(decisions)
                labels = tuple(f"{a}_{b}" for a, b in pairs)
                decisions.append(Decision(f"inputs_node_{cell}_{node}", len(pairs), STRUCTURE, labels))
                edges = {}
                for src in range(node):
                    edges[src] = len(decisions)
                    decisions.append(Decision(f"edge_{cell}_{edge}", len(self.ops), OPERATION, self.ops))
                    edge += 1
                nodes.append(_Node(node, structure, pairs, edges))
            self.layout[cell] = nodes
        self.max_blocks = self.config.nodes
        self.min_blocks = self.config.nodes if self.config.min_blocks is None else self.config.min_blocks
        self.blocks_index: int | None = None
        if self.min_blocks < self.max_blocks:
            self.blocks_index = len(decisions)
            counts = range(self.min_blocks, self.max_blocks + 1)
            decisions.append(Decision(BLOCKS, len(counts), STRUCTURE, tuple(str(b) for b in counts)))
        self.decisions = tuple(decisions)

    @property
    def log10_size(self) -> float:
        """Exact size: per node, its input pairs times an operation for each of its two edges (summed over the
        cell sizes held)."""
        ops = math.log10(len(self.ops))
        per_node = [math.log10(len(n.pairs)) + 2 * ops for n in self.layout["normal"]]
        sizes = [len(CELLS) * sum(per_node[:b]) for b in range(self.min_blocks, self.max_blocks + 1)]
        top = max(sizes)
        return top + math.log10(sum(10 ** (x - top) for x in sizes))

    def n_blocks(self, choices: Sequence[int]) -> int:
        """Nodes per cell of a choice tuple."""
        if self.blocks_index is None:
            return self.max_blocks
        return self.min_blocks + int(choices[self.blocks_index])

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        mask = [True] * len(self.decisions)
        count = self.n_blocks(choices) if self.blocks_index is None or 0 <= choices[self.blocks_index] < \
            self.decisions[self.blocks_index].n_choices else self.max_blocks
        for nodes in self.layout.values():
            for k, n in enumerate(nodes):
                chosen = n.pairs[choices[n.structure]] if 0 <= choices[n.structure] < len(n.pairs) else ()
                mask[n.structure] = k < count
                for src, index in n.edges.items():
                    mask[index] = k < count and src in chosen
        return tuple(mask)

    # ----------------------------------------------------------------- growing (PNAS)
    def blocks(self, arch: Architecture) -> int:
        """Nodes per cell of ``arch``."""
        return self.n_blocks(arch.choices)

    def initial_cells(self) -> Iterator[Architecture]:
        """Every pair of one-node cells (node 2 takes nodes 0 and 1; an operation on each edge, in both cells)."""
        if self.min_blocks > 1:
            raise ValueError(f"darts: cells of one node need the space's min_blocks=1 (it is {self.min_blocks})")
        base = [0] * len(self.decisions)
        if self.blocks_index is not None:
            base[self.blocks_index] = 1 - self.min_blocks
        yield from self._grown(base, 0)

    def expand(self, arch: Architecture) -> Iterator[Architecture]:
        """Every cell with one more node in both cells whose first nodes are ``arch``'s."""
        count = self.blocks(arch)
        if count >= self.max_blocks or self.blocks_index is None:
            return
        base = list(arch.choices)
        base[self.blocks_index] = count + 1 - self.min_blocks
        yield from self._grown(base, count)

    def _grown(self, base: list[int], k: int) -> Iterator[Architecture]:
        """``base`` with node ``k`` of both cells set in every way (inputs, then an operation per edge)."""
        nodes = [self.layout[cell][k] for cell in CELLS]
        ops = range(len(self.ops))
        per_cell = [[(p, a, b) for p in range(len(n.pairs)) for a in ops for b in ops] for n in nodes]
        for normal, reduce in itertools.product(*per_cell):
            choices = list(base)
            for n, (p, a, b) in zip(nodes, (normal, reduce)):
                choices[n.structure] = p
                first, second = n.pairs[p]
                choices[n.edges[first]], choices[n.edges[second]] = a, b
            yield self.make(choices)

    # ----------------------------------------------------------------- genotypes
    def genotype(self, arch: Architecture) -> Genotype:
        """The DARTS genotype: per cell, two ``(operation, input node)`` pairs per node, in node order."""
        concat = range(N_INPUTS, N_INPUTS + self.n_blocks(arch.choices))
        cells = {cell: self._cell(arch.choices, cell) for cell in CELLS}
        return Genotype(cells["normal"], concat, cells["reduce"], concat)

    def _cell(self, choices: Sequence[int], cell: str) -> Cell:
        out = []
        for n in self.layout[cell][: self.n_blocks(choices)]:
            for src in n.pairs[choices[n.structure]]:
                out.append((self.ops[choices[n.edges[src]]], src))
        return out

    def cell_nodes(self, arch: Architecture, cell: str) -> list[Cell]:
        """One cell as per-node incoming edges ``(operation, input node)`` (the model's description)."""
        flat = self._cell(arch.choices, cell)
        return [flat[i : i + 2] for i in range(0, len(flat), 2)]

    def from_genotype(
        self,
        normal: Sequence[Sequence[Any]],
        reduce: Sequence[Sequence[Any]],
        normal_concat: Sequence[int] | None = None,
        reduce_concat: Sequence[int] | None = None,
    ) -> Architecture:
        """Architecture from DARTS-convention cells: lists of ``(operation, input node)``, two per node."""
        choices = [0] * len(self.decisions)
        count = self._count(normal, reduce)
        if self.blocks_index is not None:
            choices[self.blocks_index] = count - self.min_blocks
        for cell, pairs, concat in (("normal", normal, normal_concat), ("reduce", reduce, reduce_concat)):
            self._check_concat(cell, concat, count)
            self._read_cell(cell, pairs, choices, count)
        return self.make(choices)

    def _count(self, normal: Sequence[Any], reduce: Sequence[Any]) -> int:
        """Nodes per cell of a genotype: the space's only size, or any size it holds (the same in both cells)."""
        if self.blocks_index is None or len(normal) % 2:
            return self.max_blocks  # _read_cell names the mismatch
        count = len(normal) // 2
        if not self.min_blocks <= count <= self.max_blocks:
            raise InvalidArchitecture(
                f"darts: normal cell has {len(normal)} (operation, input) pairs; cells of {self.min_blocks}.."
                f"{self.max_blocks} nodes need {2 * self.min_blocks}..{2 * self.max_blocks} (two per node)"
            )
        if len(reduce) != len(normal):
            raise InvalidArchitecture(
                f"darts: reduce cell has {len(reduce)} (operation, input) pairs and normal cell {len(normal)}; "
                "both cells have the same number of nodes"
            )
        return count

    def _check_concat(self, cell: str, concat: Sequence[int] | None, count: int) -> None:
        expected = list(range(N_INPUTS, N_INPUTS + count))
        if concat is not None and list(concat) != expected:
            raise InvalidArchitecture(
                f"darts: {cell}_concat {list(concat)} is not supported; this space concatenates all "
                f"intermediate nodes, range({expected[0]}, {expected[-1] + 1})"
            )

    def _read_cell(self, cell: str, pairs: Sequence[Sequence[Any]], choices: list[int], B: int) -> None:
        if len(pairs) != 2 * B:
            raise InvalidArchitecture(
                f"darts: {cell} cell has {len(pairs)} (operation, input) pairs; "
                f"{B} nodes need {2 * B} (two per node)"
            )
        for n, edges in zip(self.layout[cell], (pairs[i : i + 2] for i in range(0, 2 * B, 2))):
            sources = []
            for item in edges:
                if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                        and isinstance(item[1], int)):
                    raise InvalidArchitecture(
                        f"darts: {cell} cell: {item!r} is not an (operation, input node) pair"
                    )
                op, src = OP_ALIASES.get(item[0], item[0]), item[1]
                if op not in self.ops:
                    raise InvalidArchitecture(
                        f"darts: {cell} cell, node {n.node}: operation {item[0]!r} is not in the "
                        f"{self.config.ops!r} operation set ({', '.join(self.ops)})"
                    )
                if not 0 <= src < n.node:
                    raise InvalidArchitecture(
                        f"darts: {cell} cell, node {n.node}: input {src} is not an earlier node "
                        f"(0..{n.node - 1})"
                    )
                choices[n.edges[src]] = self.ops.index(op)
                sources.append(src)
            if sources[0] == sources[1]:
                raise InvalidArchitecture(
                    f"darts: {cell} cell, node {n.node} takes both inputs from node {sources[0]}; "
                    "this space needs two different input nodes"
                )
            choices[n.structure] = n.pairs.index(tuple(sorted(sources)))

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        concat = range(N_INPUTS, N_INPUTS + self.n_blocks(choices))
        return repr(Genotype(self._cell(choices, "normal"), concat, self._cell(choices, "reduce"), concat))

    def compact(self, arch: Architecture) -> str:
        """The compact string form: ``|op~i|op~j|+...`` per cell, normal and reduce joined by ``//``."""
        def cell_text(cell: str) -> str:
            nodes = self.cell_nodes(arch, cell)
            return "+".join("|" + "|".join(f"{op}~{src}" for op, src in node) + "|" for node in nodes)

        return cell_text("normal") + "//" + cell_text("reduce")

    def parse(self, text: str) -> Architecture:
        """Read the DARTS ``Genotype(...)`` form or the compact form."""
        text = text.strip()
        if text.startswith("Genotype"):
            return self._parse_genotype(text)
        return self._parse_compact(text)

    def _parse_genotype(self, text: str) -> Architecture:
        match = re.fullmatch(r"Genotype\s*\((.*)\)", text, flags=re.DOTALL)
        if not match:
            raise InvalidArchitecture(f"darts: {text[:60]!r}... must be 'Genotype(normal=[...], ...)'")
        fields = _keyword_arguments(match.group(1))
        unknown = sorted(set(fields) - set(Genotype._fields))
        if unknown:
            raise InvalidArchitecture(
                f"darts: unknown Genotype field {unknown[0]!r} (fields: {', '.join(Genotype._fields)})"
            )
        for required in ("normal", "reduce"):
            if required not in fields:
                raise InvalidArchitecture(f"darts: Genotype has no {required!r} cell")
        values: dict[str, Any] = {
            k: _concat_value(v, k) if k.endswith("concat") else _pairs_value(v, k) for k, v in fields.items()
        }
        return self.from_genotype(
            values["normal"], values["reduce"], values.get("normal_concat"), values.get("reduce_concat")
        )

    def _parse_compact(self, text: str) -> Architecture:
        cells = text.split("//")
        if len(cells) != 2:
            raise InvalidArchitecture(
                f"darts: {text!r} is neither 'Genotype(...)' nor the compact form "
                "'<normal cell>//<reduce cell>'"
            )
        normal, reduce = (_compact_cell(cell, part) for cell, part in zip(CELLS, cells))
        return self.from_genotype(normal, reduce)

    def graph(self, arch: Architecture) -> ArchGraph:
        """Normal and reduction cell in the DARTS paper's style: inputs ``c_{k-2}``, ``c_{k-1}``, intermediate
        nodes ``0..B-1`` (node ``n`` of the genotype is ``n - 2``), operations on the edges, output ``c_{k}``
        concatenating every intermediate node."""
        inputs = [("c_{k-2}", "c_{k-2}"), ("c_{k-1}", "c_{k-1}")]

        def source(src: int) -> str:
            return inputs[src][0] if src < N_INPUTS else str(src - N_INPUTS)

        parts = tuple(
            cell_part(cell, inputs, [[(op, source(src)) for op, src in node] for node in self.cell_nodes(arch, cell)],
                      ("c_{k}", "c_{k}"), [str(k) for k in range(self.config.nodes)])
            for cell in CELLS
        )
        return ArchGraph(self.name, "cell", parts, f"DARTS cells ({self.config.ops} operations)")

    # ----------------------------------------------------------------- models
    def build(
        self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any
    ) -> nn.Module:
        """The DARTS network of ``arch``; model arguments as in the module docstring."""
        args = build_config(DartsModelArgs, model_args, "model")
        self.validate(arch)
        return DartsNetwork(
            self.cell_nodes(arch, "normal"),
            self.cell_nodes(arch, "reduce"),
            num_classes,
            in_channels,
            C=args.C,
            layers=args.layers,
            auxiliary=args.auxiliary,
            dropout=args.dropout,
            stem_multiplier=args.stem_multiplier,
            affine=args.affine,
        )


# ---------------------------------------------------------------------- parsing helpers
def _keyword_arguments(body: str) -> dict[str, str]:
    """Split ``a=[...], b=range(2, 6)`` at top-level commas into ``{name: value text}``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    out = {}
    for part in filter(str.strip, parts):
        name, eq, value = part.partition("=")
        if not eq or not name.strip().isidentifier():
            raise InvalidArchitecture(f"darts: Genotype argument {part.strip()!r} must be 'name=value'")
        out[name.strip()] = value.strip()
    return out


def _pairs_value(text: str, name: str) -> list[tuple[str, int]]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise InvalidArchitecture(
            f"darts: Genotype {name}={text[:60]!r} is not a list of (operation, input) pairs"
        ) from None
    if not isinstance(value, (list, tuple)):
        raise InvalidArchitecture(f"darts: Genotype {name} must be a list of (operation, input) pairs")
    return [tuple(item) if isinstance(item, (list, tuple)) else item for item in value]


def _concat_value(text: str, name: str) -> list[int]:
    match = re.fullmatch(r"range\(\s*(\d+)\s*,\s*(\d+)\s*\)", text)
    if match:
        return list(range(int(match.group(1)), int(match.group(2))))
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise InvalidArchitecture(
            f"darts: Genotype {name}={text!r} must be range(a, b) or a list of node numbers"
        )
    return list(value)


def _compact_cell(cell: str, text: str) -> Cell:
    """``|op~i|op~j|+|...|`` as a flat list of ``(operation, input node)`` pairs, two per node."""
    pairs = []
    for group in text.strip().split("+"):
        if not (len(group) >= 2 and group.startswith("|") and group.endswith("|")):
            raise InvalidArchitecture(f"darts: {cell} cell: node group {group!r} must be '|op~i|op~j|'")
        items = group[1:-1].split("|")
        if len(items) != 2:
            raise InvalidArchitecture(f"darts: {cell} cell: node group {group!r} must have two edges")
        for item in items:
            op, tilde, src = item.partition("~")
            if not tilde or not src.isdigit():
                raise InvalidArchitecture(f"darts: {cell} cell: edge {item!r} must be 'op~<input node>'")
            pairs.append((op, int(src)))
    return pairs
