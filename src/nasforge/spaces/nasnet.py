"""The NASNet cell space (Zoph et al. 2018), as NASNet, AmoebaNet, ENAS and PNAS define their cells.

A cell has two inputs (the outputs of the two previous cells, nodes 0 and 1) and ``B`` blocks, nodes
``2 .. B+1``. Each block takes the lecture's five steps: (1) a first input and (2) a second input among the
two inputs and the earlier blocks (**the same node may be picked twice**), (3, 4) an operation for each, and
(5) a combination: addition, or also concatenation along the channels with ``combine="add,concat"``. The cell's
output concatenates the *loose ends*, the blocks no other block of the cell uses (``concat="loose"``: NASNet,
AmoebaNet, ENAS), or every block (``concat="all"``: PNAS, DARTS). The network has a normal and a reduction cell,
or one cell used as both (``shared_cell=True``: PNAS, LaNAS' open-domain search).

Decisions, per cell (``normal`` then ``reduce``; ``cell`` when shared) and block node ``n``, in the order
above (ENAS' controller samples them so): ``in1_<cell>_<n>`` and ``in2_<cell>_<n>`` (structure, ``n``
options: the node numbers), ``op1_<cell>_<n>`` and ``op2_<cell>_<n>`` (operation), and ``comb_<cell>_<n>``
(structure; only with two combinations). A space created with ``min_blocks < blocks`` also represents smaller
cells (PNAS grows cells block by block): a first structure decision ``blocks`` (options ``min_blocks ..
blocks``, shared by both cells) holds the count and the decisions of absent blocks are inactive.

Operation sets (``ops``): ``nasnet`` (the 13 of NASNet), ``enas`` (5), ``pnas`` (the 8 of PNAS: identity,
3x3, 5x5 and 7x7 depthwise-separable convolutions, 3x3 average and max pooling, 3x3 dilated convolution,
1x7-then-7x1 convolution), ``darts`` (7) and ``lanas`` (8), with the implementations of the ``darts`` space
(:mod:`nasforge.ops.cell_ops`; NASNet's "3x3 dilated convolution" is DARTS' ``dil_conv_3x3``).

String form: DARTS' ``genotypes.py`` format, ``Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ...],
normal_concat=[2, 3, 4, 5, 6], reduce=[...], reduce_concat=[4, 5, 6])``: two ``(operation, input)`` pairs per
block, the concatenated nodes listed. :meth:`NasnetSpace.parse` reads it without ``eval`` (keywords or
positions, ``range(a, b)`` or lists, one line or the multi-line layout of ``genotypes.py``). A listed
concatenation must be the one the space's convention gives the cell (it is what the network is built with):
NASNet's, AmoebaNet's and ENAS' published cells are their loose ends, DARTS' and PNAS' every block, so that
each is read by a space of its convention (``concat="all"`` for the latter). With ``combine="add,concat"`` the
string has two more fields, ``normal_combine=['add', 'concat', ...]`` and ``reduce_combine=[...]``.

Model arguments of :meth:`NasnetSpace.build`: those of the ``darts`` space (``C``, ``layers``, ``auxiliary``,
``dropout``, ``stem_multiplier``, ``affine``); the network is DARTS' ``NetworkCIFAR``, with exactly its
parameter count for every published genotype (tests/test_spaces_nasnet.py).
"""

from __future__ import annotations

import ast
import itertools
import math
from dataclasses import dataclass
from typing import Any, Hashable, Iterator, Sequence

from torch import nn

from ..arch import Architecture
from ..config import build as build_config
from ..errors import InvalidArchitecture
from ..graph import ArchGraph, cell_part
from ..models.nasnet_net import COMBINES, N_INPUTS, Block, CellSpec, NasnetNetwork
from ..registry import SPACES
from .base import OPERATION, STRUCTURE, Decision, SearchSpace
from .darts import OP_SETS as DARTS_OP_SETS
from .darts import DartsModelArgs

OP_SETS: dict[str, tuple[str, ...]] = {
    **DARTS_OP_SETS,
    "pnas": (
        "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3", "max_pool_3x3",
        "dil_conv_3x3", "conv_7x1_1x7",
    ),
}

#: other names papers and code bases give operations of the sets above
OP_ALIASES = {
    "identity": "skip_connect",
    "conv_1x7_7x1": "conv_7x1_1x7",
    "conv_1x3_3x1": "conv_3x1_1x3",
    "nor_conv_1x1": "conv_1x1",
    "nor_conv_3x3": "conv_3x3",
}

CELLS = ("normal", "reduce")
CONCATS = ("loose", "all")
GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat", "normal_combine", "reduce_combine")


def _genotype(normal: str, normal_concat: str, reduce: str | None = None, reduce_concat: str | None = None) -> str:
    return (f"Genotype(normal={normal}, normal_concat={normal_concat}, reduce={reduce or normal}, "
            f"reduce_concat={reduce_concat or normal_concat})")


#: published cells in DARTS' genotypes.py format, with the space config that reads each: NASNet-A, AmoebaNet-A,
#: DARTS_V1 and DARTS_V2 as in DARTS' cnn/genotypes.py (quark0/darts), PNASNet-5 as in chenxi116/PNASNet.pytorch,
#: ENAS' micro cells as in D-X-Y/AutoDL-Projects (lib/nas_infer_model/DXYs/genotypes.py)
PUBLISHED: dict[str, tuple[str, dict[str, Any]]] = {
    "NASNet": (_genotype(
        "[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), "
        "('skip_connect', 0), ('avg_pool_3x3', 0), ('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 1)]",
        "[2, 3, 4, 5, 6]",
        "[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), ('max_pool_3x3', 1), ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), "
        "('sep_conv_5x5', 0), ('skip_connect', 3), ('avg_pool_3x3', 2), ('sep_conv_3x3', 2), ('max_pool_3x3', 1)]",
        "[4, 5, 6]"), {}),
    "AmoebaNet": (_genotype(
        "[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 2), ('sep_conv_3x3', 0), "
        "('avg_pool_3x3', 3), ('sep_conv_3x3', 1), ('skip_connect', 1), ('skip_connect', 0), ('avg_pool_3x3', 1)]",
        "[4, 5, 6]",
        "[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0), ('sep_conv_7x7', 2), ('sep_conv_7x7', 0), "
        "('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1), ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5)]",
        "[3, 4, 6]"), {}),
    "DARTS_V1": (_genotype(
        "[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)]",
        "[2, 3, 4, 5]",
        "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)]",
        "[2, 3, 4, 5]"), {"blocks": 4, "ops": "darts", "concat": "all"}),
    "DARTS_V2": (_genotype(
        "[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), "
        "('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)]",
        "[2, 3, 4, 5]",
        "[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
        "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)]",
        "[2, 3, 4, 5]"), {"blocks": 4, "ops": "darts", "concat": "all"}),
    "PNASNet": (_genotype(
        "[('sep_conv_5x5', 0), ('max_pool_3x3', 0), ('sep_conv_7x7', 1), ('max_pool_3x3', 1), ('sep_conv_5x5', 1), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 1)]",
        "[2, 3, 4, 5, 6]"), {"ops": "pnas", "concat": "all", "shared_cell": True}),
    "ENAS": (_genotype(
        "[('sep_conv_3x3', 1), ('skip_connect', 1), ('sep_conv_5x5', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), "
        "('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 1), ('avg_pool_3x3', 0)]",
        "[2, 3, 4, 5, 6]",
        "[('sep_conv_5x5', 0), ('avg_pool_3x3', 1), ('sep_conv_3x3', 1), ('avg_pool_3x3', 1), ('avg_pool_3x3', 1), "
        "('sep_conv_3x3', 1), ('sep_conv_5x5', 4), ('avg_pool_3x3', 1), ('sep_conv_3x3', 5), ('sep_conv_5x5', 0)]",
        "[2, 3, 6]"), {"ops": "enas"}),
}


@dataclass
class NasnetConfig:
    """Parameters of the NASNet cell space."""

    blocks: int = 5  # B: blocks of a full cell (5 in NASNet, ENAS, PNAS, AmoebaNet; 4 in DARTS)
    ops: str = "nasnet"  # operation set: nasnet, enas, pnas, darts or lanas
    combine: str = "add"  # combinations a block may take: "add" or "add,concat"
    concat: str = "loose"  # the cell's output: "loose" (blocks no block uses) or "all" blocks
    shared_cell: bool = False  # one cell for normal and reduction positions (PNAS)
    min_blocks: int | None = None  # smallest cell represented (default: blocks, every cell full)

    def __post_init__(self) -> None:
        if self.ops not in OP_SETS:
            raise ValueError(f"ops must be one of {', '.join(OP_SETS)}, got {self.ops!r}")
        if self.blocks < 1:
            raise ValueError(f"blocks must be at least 1, got {self.blocks}")
        if self.min_blocks is None:
            self.min_blocks = self.blocks
        if not 1 <= self.min_blocks <= self.blocks:
            raise ValueError(f"min_blocks must be in 1..blocks ({self.blocks}), got {self.min_blocks}")
        combines = self.combines
        if not combines or combines[0] != "add" or any(c not in COMBINES for c in combines) or len(set(combines)) != len(combines):
            raise ValueError(f"combine must be 'add' or 'add,concat', got {self.combine!r}")
        if self.concat not in CONCATS:
            raise ValueError(f"concat must be one of {', '.join(CONCATS)}, got {self.concat!r}")

    @property
    def combines(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.combine.split(",") if c.strip())


@dataclass(frozen=True)
class _Slots:
    """Decision indices of one block."""

    node: int
    in1: int
    in2: int
    op1: int
    op2: int
    comb: int | None


@SPACES.register("nasnet", finite=False, trainable=True, tabular=False, has_structure=True, growable=True)
class NasnetSpace(SearchSpace):
    """NASNet / AmoebaNet / ENAS / PNAS cell space: blocks with repeated inputs, loose-end or full concatenation."""

    name = "nasnet"
    model_args = DartsModelArgs
    Config = NasnetConfig

    def __init__(self, config: NasnetConfig | None = None) -> None:
        self.config = config or NasnetConfig()
        cfg = self.config
        self.ops = OP_SETS[cfg.ops]
        self.combines = cfg.combines
        self.max_blocks = cfg.blocks
        self.min_blocks = int(cfg.min_blocks or cfg.blocks)
        self.cells: tuple[str, ...] = ("cell",) if cfg.shared_cell else CELLS
        decisions: list[Decision] = []
        self.blocks_decision: int | None = None
        if self.min_blocks < self.max_blocks:
            self.blocks_decision = 0
            counts = tuple(str(b) for b in range(self.min_blocks, self.max_blocks + 1))
            decisions.append(Decision("blocks", len(counts), STRUCTURE, counts))
        self.layout: dict[str, list[_Slots]] = {}
        for cell in self.cells:
            slots = []
            for node in range(N_INPUTS, N_INPUTS + self.max_blocks):
                nodes = tuple(str(i) for i in range(node))
                base = len(decisions)
                decisions += [
                    Decision(f"in1_{cell}_{node}", node, STRUCTURE, nodes),
                    Decision(f"in2_{cell}_{node}", node, STRUCTURE, nodes),
                    Decision(f"op1_{cell}_{node}", len(self.ops), OPERATION, self.ops),
                    Decision(f"op2_{cell}_{node}", len(self.ops), OPERATION, self.ops),
                ]
                comb = None
                if len(self.combines) > 1:
                    comb = len(decisions)
                    decisions.append(Decision(f"comb_{cell}_{node}", len(self.combines), STRUCTURE, self.combines))
                slots.append(_Slots(node, base, base + 1, base + 2, base + 3, comb))
            self.layout[cell] = slots
        self.decisions = tuple(decisions)

    # ----------------------------------------------------------------- structure
    def _n_blocks(self, choices: Sequence[int]) -> int:
        if self.blocks_decision is None:
            return self.max_blocks
        return self.min_blocks + int(choices[self.blocks_decision])

    def blocks(self, arch: Architecture) -> int:
        """Blocks of ``arch``'s cells."""
        return self._n_blocks(arch.choices)

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        n = self.max_blocks
        if self.blocks_decision is not None and 0 <= choices[self.blocks_decision] < len(self.decisions[0].labels):
            n = self._n_blocks(choices)
        mask = [True] * len(self.decisions)
        for slots in self.layout.values():
            for k, s in enumerate(slots):
                if k >= n:
                    for index in (s.in1, s.in2, s.op1, s.op2, s.comb):
                        if index is not None:
                            mask[index] = False
        return tuple(mask)

    @property
    def log10_size(self) -> float:
        """Exact size: per block, its input pairs, operation pairs and combinations; summed over cell sizes."""
        def per_block(node: int) -> float:
            return math.log10(node * node * len(self.ops) ** 2 * len(self.combines)) * len(self.cells)

        totals = [sum(per_block(N_INPUTS + k) for k in range(b)) for b in range(self.min_blocks, self.max_blocks + 1)]
        top = max(totals)
        return top + math.log10(sum(10 ** (t - top) for t in totals))

    def cell_spec(self, arch: Architecture | Sequence[int], cell: str) -> CellSpec:
        """The :class:`CellSpec` of ``cell`` ("normal", "reduce"; either is the shared cell)."""
        choices = arch.choices if isinstance(arch, Architecture) else tuple(arch)
        slots = self.layout["cell" if self.config.shared_cell else cell]
        blocks = []
        for s in slots[: self._n_blocks(choices)]:
            comb = self.combines[choices[s.comb]] if s.comb is not None else "add"
            blocks.append(Block((self.ops[choices[s.op1]], choices[s.in1]), (self.ops[choices[s.op2]], choices[s.in2]),
                                comb))
        return CellSpec(tuple(blocks), self._concat(blocks))

    def _concat(self, blocks: Sequence[Block]) -> tuple[int, ...]:
        nodes = range(N_INPUTS, N_INPUTS + len(blocks))
        if self.config.concat == "all":
            return tuple(nodes)
        used = {src for b in blocks for _, src in (b.first, b.second)}
        return tuple(n for n in nodes if n not in used)

    def key(self, arch: Architecture) -> Hashable:
        """The network up to the order of a block's two inputs (``a + b`` is ``b + a``)."""
        out = []
        for cell in self.cells:
            spec = self.cell_spec(arch, cell)
            out.append(tuple((tuple(sorted((b.first, b.second))), b.combine) for b in spec.blocks))
        return tuple(out)

    # ----------------------------------------------------------------- growing (PNAS)
    def _block_options(self, node: int) -> Iterator[tuple[int, ...]]:
        """Choices of one new block (in1, in2, op1, op2[, comb]), one per network: ``(in1, op1) <= (in2, op2)``."""
        ops = range(len(self.ops))
        for i1, i2, o1, o2 in itertools.product(range(node), range(node), ops, ops):
            if (i1, o1) > (i2, o2):
                continue
            if len(self.combines) > 1:
                for c in range(len(self.combines)):
                    yield (i1, i2, o1, o2, c)
            else:
                yield (i1, i2, o1, o2)

    def _grow(self, choices: Sequence[int], n: int) -> Iterator[Architecture]:
        """Every cell of ``n + 1`` blocks whose first ``n`` blocks are those of ``choices``."""
        if n >= self.max_blocks:
            return
        node = N_INPUTS + n
        base = list(choices)
        if self.blocks_decision is not None:
            base[self.blocks_decision] = n + 1 - self.min_blocks
        per_cell = [self._block_options(node) for _ in self.cells]
        for combo in itertools.product(*(list(opts) for opts in per_cell)):
            new = list(base)
            for cell, values in zip(self.cells, combo):
                s = self.layout[cell][n]
                for index, value in zip((s.in1, s.in2, s.op1, s.op2, s.comb), values):
                    if index is not None:
                        new[index] = value
            yield self.make(new)

    def initial_cells(self) -> Iterator[Architecture]:
        """Every cell of exactly one block (one of the two input orders of a block; both cells at once)."""
        if self.min_blocks != 1:
            raise InvalidArchitecture(
                f"nasnet: cells of one block need space.min_blocks=1 (this space has min_blocks={self.min_blocks})"
            )
        yield from self._grow([0] * len(self.decisions), 0)

    def expand(self, arch: Architecture) -> Iterator[Architecture]:
        """Every cell with one block more than ``arch`` whose first blocks are ``arch``'s (both cells grow)."""
        self.validate(arch)
        yield from self._grow(arch.choices, self.blocks(arch))

    # ----------------------------------------------------------------- strings
    def to_string(self, choices: Sequence[int]) -> str:
        specs = {cell: self.cell_spec(choices, cell) for cell in CELLS}
        parts = []
        for cell in CELLS:
            pairs = [p for b in specs[cell].blocks for p in (b.first, b.second)]
            parts.append(f"{cell}={pairs!r}")
            parts.append(f"{cell}_concat={list(specs[cell].concat)!r}")
        if len(self.combines) > 1:
            for cell in CELLS:
                parts.append(f"{cell}_combine={[b.combine for b in specs[cell].blocks]!r}")
        return f"Genotype({', '.join(parts)})"

    def parse(self, text: str) -> Architecture:
        """Read DARTS' ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``."""
        fields = _genotype_fields(text.strip())
        for required in ("normal", "reduce"):
            if required not in fields:
                raise InvalidArchitecture(f"nasnet: Genotype has no {required!r} cell")
        cells = {cell: _pairs(fields[cell], cell) for cell in CELLS}
        return self.from_genotype(
            cells["normal"], cells["reduce"],
            _concat(fields.get("normal_concat"), "normal_concat"), _concat(fields.get("reduce_concat"), "reduce_concat"),
            _combines(fields.get("normal_combine"), "normal_combine"),
            _combines(fields.get("reduce_combine"), "reduce_combine"),
        )

    def from_genotype(
        self,
        normal: Sequence[Sequence[Any]],
        reduce: Sequence[Sequence[Any]],
        normal_concat: Sequence[int] | None = None,
        reduce_concat: Sequence[int] | None = None,
        normal_combine: Sequence[str] | None = None,
        reduce_combine: Sequence[str] | None = None,
    ) -> Architecture:
        """Architecture from DARTS-convention cells: lists of ``(operation, input node)``, two per block."""
        counts = {cell: len(pairs) for cell, pairs in (("normal", normal), ("reduce", reduce))}
        for cell, count in counts.items():
            if count % 2 or not self.min_blocks <= count // 2 <= self.max_blocks:
                sizes = (f"{self.max_blocks} blocks" if self.min_blocks == self.max_blocks
                         else f"{self.min_blocks} to {self.max_blocks} blocks")
                raise InvalidArchitecture(
                    f"nasnet: {cell} cell has {count} (operation, input) pairs; this space's cells have {sizes}, "
                    "two pairs each (set space.blocks or space.min_blocks)"
                )
        if counts["normal"] != counts["reduce"]:
            raise InvalidArchitecture(
                f"nasnet: the normal cell has {counts['normal'] // 2} blocks and the reduction cell "
                f"{counts['reduce'] // 2}; both cells of an architecture have the same number"
            )
        n = counts["normal"] // 2
        choices = [0] * len(self.decisions)
        if self.blocks_decision is not None:
            choices[self.blocks_decision] = n - self.min_blocks
        given = {
            "normal": (normal, normal_concat, normal_combine),
            "reduce": (reduce, reduce_concat, reduce_combine),
        }
        if self.config.shared_cell:
            if [tuple(p) for p in normal] != [tuple(p) for p in reduce] or list(normal_combine or []) != list(
                reduce_combine or []
            ):
                raise InvalidArchitecture(
                    "nasnet: the normal and reduction cells differ; this space has one shared cell "
                    "(space.shared_cell=true): read it with space.shared_cell=false"
                )
        for cell, (pairs, _, combines) in given.items():
            if combines is not None and len(combines) != n:
                raise InvalidArchitecture(f"nasnet: {cell}_combine lists {len(combines)} combinations for {n} blocks")
            if cell in self.layout:
                self._read_cell(cell, pairs, combines, choices)
        if self.config.shared_cell:
            self._read_cell("cell", normal, normal_combine, choices)
        canonical = self.canonical(choices)
        for cell, (_, concat, _) in given.items():
            expected = self.cell_spec(canonical, cell).concat
            if concat is not None and tuple(concat) != expected:
                other = "all" if self.config.concat == "loose" else "loose"
                what = "loose ends" if self.config.concat == "loose" else "blocks"
                raise InvalidArchitecture(
                    f"nasnet: {cell}_concat {list(concat)} is not this cell's {what} {list(expected)} "
                    f"(space.concat={self.config.concat}); a cell of the other convention is read with "
                    f"space.concat={other}"
                )
        return self.make(canonical)

    def _read_cell(self, cell: str, pairs: Sequence[Sequence[Any]], combines: Sequence[str] | None,
                   choices: list[int]) -> None:
        for k, s in enumerate(self.layout[cell][: len(pairs) // 2]):
            where = f"nasnet: {cell} cell, block {s.node}"
            for slot_in, slot_op, item in ((s.in1, s.op1, pairs[2 * k]), (s.in2, s.op2, pairs[2 * k + 1])):
                op, src = OP_ALIASES.get(item[0], item[0]), item[1]
                if op not in self.ops:
                    sets = [name for name, ops in OP_SETS.items() if op in ops]
                    hint = f"; it is in space.ops={'|'.join(sets)}" if sets else ""
                    raise InvalidArchitecture(
                        f"{where}: operation {item[0]!r} is not in the {self.config.ops!r} operation set "
                        f"({', '.join(self.ops)}){hint}"
                    )
                if not 0 <= src < s.node:
                    raise InvalidArchitecture(f"{where}: input {src} is not an earlier node (0..{s.node - 1})")
                choices[slot_in] = src
                choices[slot_op] = self.ops.index(op)
            how = combines[k] if combines is not None else "add"
            if how not in self.combines:
                raise InvalidArchitecture(
                    f"{where}: combination {how!r} is not allowed (space.combine={self.config.combine})"
                )
            if s.comb is not None:
                choices[s.comb] = self.combines.index(how)

    # ----------------------------------------------------------------- models
    def graph(self, arch: Architecture) -> ArchGraph:
        """The cells in NASNet's picture: inputs ``c_{k-2}``, ``c_{k-1}``, blocks ``0..B-1`` (block node ``n`` is
        ``n - 2``) with an operation on each of their two incoming edges (twice the same input draws two edges),
        and the output concatenating the loose ends (or every block); a shared cell is drawn once."""
        inputs = [("c_{k-2}", "c_{k-2}"), ("c_{k-1}", "c_{k-1}")]

        def source(src: int) -> str:
            return inputs[src][0] if src < N_INPUTS else str(src - N_INPUTS)

        cells = ("cell",) if self.config.shared_cell else CELLS
        parts = []
        for cell in cells:
            spec = self.cell_spec(arch, "normal" if cell == "cell" else cell)
            parts.append(cell_part(cell, inputs, [[(op, source(src)) for op, src in (b.first, b.second)]
                                                  for b in spec.blocks],
                                   ("c_{k}", "c_{k}"), [str(n - N_INPUTS) for n in spec.concat]))
        return ArchGraph(self.name, "cell", tuple(parts), f"NASNet cells ({self.config.ops} operations, "
                                                            f"{self.blocks(arch)} blocks)")

    def build(self, arch: Architecture, *, num_classes: int, in_channels: int = 3, **model_args: Any) -> nn.Module:
        """DARTS' CIFAR network of ``arch``'s cells (model arguments as the ``darts`` space's)."""
        args = build_config(DartsModelArgs, model_args, "model")
        self.validate(arch)
        return NasnetNetwork(
            self.cell_spec(arch, "normal"), self.cell_spec(arch, "reduce"), num_classes, in_channels,
            C=args.C, layers=args.layers, auxiliary=args.auxiliary, dropout=args.dropout,
            stem_multiplier=args.stem_multiplier, affine=args.affine,
        )


# ---------------------------------------------------------------------- parsing helpers
def _genotype_fields(text: str) -> dict[str, ast.expr]:
    """The arguments of ``Genotype(...)`` by field name (keywords, or positions in DARTS' field order)."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError:
        tree = None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name) and tree.func.id == "Genotype"):
        raise InvalidArchitecture(f"nasnet: {text[:60]!r} must be 'Genotype(normal=[...], normal_concat=[...], ...)'")
    if len(tree.args) > len(GENOTYPE_FIELDS):
        raise InvalidArchitecture(f"nasnet: Genotype takes at most {len(GENOTYPE_FIELDS)} fields")
    fields = dict(zip(GENOTYPE_FIELDS, tree.args))
    for kw in tree.keywords:
        if kw.arg not in GENOTYPE_FIELDS:
            raise InvalidArchitecture(
                f"nasnet: unknown Genotype field {kw.arg!r} (fields: {', '.join(GENOTYPE_FIELDS)})"
            )
        if kw.arg in fields:
            raise InvalidArchitecture(f"nasnet: Genotype field {kw.arg!r} given twice")
        fields[kw.arg] = kw.value
    return fields


def _literal(node: ast.expr, name: str, what: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        raise InvalidArchitecture(f"nasnet: Genotype {name}={ast.unparse(node)[:60]!r} is not {what}") from None


def _pairs(node: ast.expr, name: str) -> list[tuple[str, int]]:
    what = "a list of (operation, input) pairs"
    value = _literal(node, name, what)
    if not isinstance(value, (list, tuple)):
        raise InvalidArchitecture(f"nasnet: Genotype {name} must be {what}")
    out = []
    for item in value:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], int) and not isinstance(item[1], bool)):
            raise InvalidArchitecture(f"nasnet: {name} cell: {item!r} is not an (operation, input node) pair")
        out.append((item[0], item[1]))
    return out


def _concat(node: ast.expr | None, name: str) -> list[int] | None:
    if node is None:
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        bounds = [_literal(a, name, "range(a, b) or a list of node numbers") for a in node.args]
        if len(bounds) in (1, 2) and all(isinstance(b, int) for b in bounds) and not node.keywords:
            return list(range(*bounds))
    value = _literal(node, name, "range(a, b) or a list of node numbers")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
        raise InvalidArchitecture(f"nasnet: Genotype {name} must be range(a, b) or a list of node numbers")
    return list(value)


def _combines(node: ast.expr | None, name: str) -> list[str] | None:
    if node is None:
        return None
    value = _literal(node, name, "a list of 'add' / 'concat'")
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InvalidArchitecture(f"nasnet: Genotype {name} must be a list of 'add' / 'concat'")
    return list(value)
