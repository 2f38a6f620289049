"""The search-space interface: every strategy works on any space through it alone.

A space is a list of categorical :class:`Decision` s. An architecture is the tuple of the options
chosen (see :class:`~nasforge.arch.Architecture`). A space may declare some decisions inactive
for some choices (a DARTS edge that no node takes has no operation): inactive decisions are set
to 0 in the canonical form, ignored by :meth:`encode` and never mutated, so that one network has
one architecture value.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Hashable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from ..arch import Architecture
from ..errors import InvalidArchitecture
from ..graph import ArchGraph

STRUCTURE = "structure"
OPERATION = "operation"

#: the structure decision of a growable space that holds its cells' block count (see :class:`GrowableSpace`)
BLOCKS = "blocks"

#: how many rejected samples :meth:`SearchSpace.sample` tolerates before it gives up
MAX_SAMPLE_TRIES = 10_000


@dataclass(frozen=True)
class Decision:
    """One categorical choice of a space: its name, its options and its group."""

    name: str
    n_choices: int
    group: str = OPERATION
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n_choices < 1:
            raise ValueError(f"decision {self.name!r} needs at least one choice")
        if self.group not in (STRUCTURE, OPERATION):
            raise ValueError(f"decision {self.name!r}: group must be {STRUCTURE!r} or {OPERATION!r}")
        if self.labels and len(self.labels) != self.n_choices:
            raise ValueError(f"decision {self.name!r}: {len(self.labels)} labels for {self.n_choices} choices")

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)


class SearchSpace(ABC):
    """Base class of search spaces.

    Subclasses set :attr:`name` (the registry name) and :attr:`decisions`, and implement
    :meth:`to_string` and :meth:`parse`. They override :meth:`check` for constraints beyond the
    option ranges, :meth:`active` for conditional decisions, :meth:`key` for identity up to
    isomorphism, and :meth:`build` when architectures can be turned into PyTorch models.
    """

    name: str = ""
    decisions: tuple[Decision, ...] = ()
    #: the dataclass of :meth:`build`'s model arguments (``evaluator.model_args``), None if it builds no model
    model_args: type | None = None

    # ----------------------------------------------------------------- strings and values
    @abstractmethod
    def to_string(self, choices: Sequence[int]) -> str:
        """Readable string form of a (valid, canonical) choice tuple."""

    @abstractmethod
    def parse(self, text: str) -> Architecture:
        """Architecture from its string form; :class:`InvalidArchitecture` says what is wrong."""

    def make(self, choices: Sequence[int]) -> Architecture:
        """Validated, canonical :class:`Architecture` from a choice tuple."""
        choices = tuple(int(c) for c in choices)
        reason = self.check(choices)
        if reason:
            raise InvalidArchitecture(f"{self.name}: {reason}")
        choices = self.canonical(choices)
        return Architecture(self.name, choices, self.to_string(choices))

    def from_dict(self, data: dict[str, Any]) -> Architecture:
        """Read :meth:`Architecture.to_dict` output (the string form is authoritative)."""
        if data.get("space", self.name) != self.name:
            raise InvalidArchitecture(f"architecture of space {data.get('space')!r}, expected {self.name!r}")
        if "arch" in data:
            return self.parse(str(data["arch"]))
        return self.make(data["choices"])

    def validate(self, arch: Architecture) -> Architecture:
        """Return ``arch`` if it belongs to this space, else raise :class:`InvalidArchitecture`."""
        if arch.space != self.name:
            raise InvalidArchitecture(f"architecture of space {arch.space!r} given to space {self.name!r}")
        reason = self.check(arch.choices)
        if reason:
            raise InvalidArchitecture(f"{self.name}: {reason}")
        if self.canonical(arch.choices) != arch.choices:
            raise InvalidArchitecture(f"{self.name}: inactive decisions must be 0 (use space.make)")
        return arch

    def check(self, choices: Sequence[int]) -> str | None:
        """Why ``choices`` is not an architecture of this space, or None if it is."""
        if len(choices) != len(self.decisions):
            return f"expected {len(self.decisions)} choices, got {len(choices)}"
        for d, c in zip(self.decisions, choices):
            if not 0 <= c < d.n_choices:
                return f"decision {d.name!r}: choice {c} not in 0..{d.n_choices - 1}"
        return None

    def is_valid(self, choices: Sequence[int]) -> bool:
        return self.check(tuple(int(c) for c in choices)) is None

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        """Which decisions matter for these choices (all, unless a space says otherwise)."""
        return (True,) * len(self.decisions)

    def canonical(self, choices: Sequence[int]) -> tuple[int, ...]:
        mask = self.active(choices)
        return tuple(int(c) if m else 0 for c, m in zip(choices, mask))

    def skip_links(self) -> dict[int, tuple[int, int]]:
        """Binary decisions that are skip connections, as ``{decision index: (to_layer, from_layer)}``.

        Macro spaces declare them so that a controller can choose them by anchor-point attention
        (Zoph & Le 2017); other strategies treat them as ordinary two-option decisions.
        """
        return {}

    def key(self, arch: Architecture) -> Hashable:
        """Identity of the network (spaces with isomorphic encodings override this)."""
        return arch.choices

    def effective(self, arch: Architecture) -> Architecture:
        """``arch`` as it computes: operations whose result cannot reach the output, or that no input reaches,
        set to the space's no-op. Architectures with the same effective form are the same function (their
        accuracies in a benchmark differ only by training noise), so a model of accuracy may pool them; the
        identity (:meth:`key`) stays the architecture itself. Spaces where every operation always counts
        return ``arch``."""
        return arch

    # ----------------------------------------------------------------- sampling and moves
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random valid architecture (by rejection over independent decisions)."""
        for _ in range(MAX_SAMPLE_TRIES):
            choices = tuple(int(rng.integers(d.n_choices)) for d in self.decisions)
            if self.check(choices) is None:
                return self.make(choices)
        raise RuntimeError(f"{self.name}: no valid sample in {MAX_SAMPLE_TRIES} tries")

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """Change one active decision to another option; newly activated decisions are drawn anew."""
        mask = self.active(arch.choices)
        candidates = [i for i, (d, m) in enumerate(zip(self.decisions, mask)) if m and d.n_choices > 1]
        if not candidates:
            return arch
        for _ in range(MAX_SAMPLE_TRIES):
            i = candidates[int(rng.integers(len(candidates)))]
            new = list(arch.choices)
            step = 1 + int(rng.integers(self.decisions[i].n_choices - 1))
            new[i] = (new[i] + step) % self.decisions[i].n_choices
            new_mask = self.active(new)
            for j, (was, now) in enumerate(zip(mask, new_mask)):
                if now and not was:
                    new[j] = int(rng.integers(self.decisions[j].n_choices))
            if self.check(new) is None:
                return self.make(new)
        return arch

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Every valid architecture that differs from ``arch`` in exactly one active decision."""
        out = []
        mask = self.active(arch.choices)
        for i, (d, m) in enumerate(zip(self.decisions, mask)):
            if not m:
                continue
            for c in range(d.n_choices):
                if c == arch.choices[i]:
                    continue
                new = list(arch.choices)
                new[i] = c
                if self.check(new) is None:
                    out.append(self.make(new))
        return out

    # ----------------------------------------------------------------- numbers
    @property
    def encoding_size(self) -> int:
        return sum(d.n_choices for d in self.decisions)

    def encode(self, arch: Architecture) -> np.ndarray:
        """Fixed-length float vector: the concatenated one-hot options of the active decisions."""
        vec = np.zeros(self.encoding_size, dtype=np.float32)
        offset = 0
        for d, c, m in zip(self.decisions, arch.choices, self.active(arch.choices)):
            if m:
                vec[offset + c] = 1.0
            offset += d.n_choices
        return vec

    @property
    def size(self) -> int | None:
        """Number of architectures for finite, fully enumerable spaces, else None."""
        return None

    def enumerate(self) -> Iterator[Architecture]:
        """Every architecture of a finite space, in a fixed order."""
        if self.size is None:
            raise TypeError(f"space {self.name!r} is not enumerable")
        seen = set()
        for choices in itertools.product(*(range(d.n_choices) for d in self.decisions)):
            if self.check(choices) is None:
                canon = self.canonical(choices)
                if canon not in seen:
                    seen.add(canon)
                    yield self.make(canon)

    @property
    def log10_size(self) -> float:
        """Upper bound of the space's size as a power of ten (product of the option counts)."""
        return sum(math.log10(d.n_choices) for d in self.decisions)

    def groups(self) -> dict[str, list[int]]:
        """Decision indices by group ("structure", "operation")."""
        out: dict[str, list[int]] = {STRUCTURE: [], OPERATION: []}
        for i, d in enumerate(self.decisions):
            out[d.group].append(i)
        return out

    # ----------------------------------------------------------------- models
    def build(self, arch: Architecture, *args: Any, **kwargs: Any) -> Any:
        """A PyTorch model of ``arch`` (spaces registered with ``trainable=True``)."""
        raise NotImplementedError(f"space {self.name!r} does not build models")

    def graph(self, arch: Architecture) -> ArchGraph:
        """The architecture as plain-data graphs (:mod:`nasforge.graph`) that ``nasforge draw`` and reports draw.

        Every space implements it (the conformance suite draws every registered space): cell spaces return
        their cells as DAGs with operations on the edges, macro spaces the layer chain with its skips.
        """
        raise NotImplementedError(
            f"space {self.name!r} ({type(self).__qualname__}) does not implement graph(arch): every space must "
            "describe its architectures as a nasforge.graph.ArchGraph so that they can be drawn"
        )

    def describe(self, arch: Architecture) -> str:
        """Multi-line human description: one decision a line."""
        return "\n".join(
            f"{d.name}: {d.label(c)}" + ("" if m else " (inactive)")
            for d, c, m in zip(self.decisions, arch.choices, self.active(arch.choices))
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.decisions)} decisions>"


# --------------------------------------------------------------------------- growing cells
@runtime_checkable
class GrowableSpace(Protocol):
    """A cell space that can grow a cell block by block (registry capability ``growable=True``), as PNAS needs.

    Such a space represents cells of fewer than :attr:`max_blocks` blocks only when created with the config field
    ``min_blocks`` < ``max_blocks``; then a structure decision named :data:`BLOCKS` holds the count (option ``i`` is
    ``min_blocks + i`` blocks), the choice tuple keeps its full length and the decisions of absent blocks are
    inactive. A space with separate normal and reduction cells grows both together.
    """

    max_blocks: int

    def blocks(self, arch: Architecture) -> int:
        """Blocks of ``arch``'s cell(s)."""
        ...

    def initial_cells(self) -> Iterator[Architecture]:
        """Every cell of exactly one block."""
        ...

    def expand(self, arch: Architecture) -> Iterator[Architecture]:
        """Every cell with one more block than ``arch`` whose first blocks are ``arch``'s."""
        ...


def is_growable(space: SearchSpace) -> bool:
    """Whether ``space`` implements :class:`GrowableSpace` and represents cells smaller than full ones."""
    return isinstance(space, GrowableSpace) and blocks_decision(space) is not None


def blocks_decision(space: SearchSpace) -> int | None:
    """Index of the :data:`BLOCKS` decision, or None when the space holds full cells only."""
    return next((i for i, d in enumerate(space.decisions) if d.name == BLOCKS), None)


def random_expansion(space: SearchSpace, arch: Architecture, rng: np.random.Generator) -> Architecture | None:
    """A uniformly random cell of ``space.expand(arch)``, drawn without enumerating them (None at full size).

    Adds one to the :data:`BLOCKS` decision and draws every decision that this activates uniformly (again for
    decisions activated by those draws, such as a new block's edges once its inputs are drawn); for spaces whose
    block decisions are independent options, as the cell spaces', that is uniform over the expansions.
    """
    index = blocks_decision(space)
    if index is None or arch.choices[index] + 1 >= space.decisions[index].n_choices:
        return None
    drawn = {i for i, m in enumerate(space.active(arch.choices)) if m}
    new = list(arch.choices)
    new[index] += 1
    return _draw_activated(space, new, drawn, rng)


def random_cell(space: SearchSpace, blocks: int, rng: np.random.Generator) -> Architecture | None:
    """A uniformly random cell of ``blocks`` blocks of a growable space (None if it holds no such cells)."""
    index = blocks_decision(space)
    if index is None:
        return None
    smallest = int(space.decisions[index].labels[0]) if space.decisions[index].labels else 1
    if not 0 <= blocks - smallest < space.decisions[index].n_choices:
        return None
    new = [0] * len(space.decisions)
    new[index] = blocks - smallest
    return _draw_activated(space, new, set(), rng)


def _draw_activated(space: SearchSpace, template: list[int], drawn: set[int], rng: np.random.Generator
                    ) -> Architecture | None:
    """``template`` with every active decision not in ``drawn`` (nor the blocks decision) drawn uniformly."""
    index = blocks_decision(space)
    for _ in range(MAX_SAMPLE_TRIES):
        new, done = list(template), set(drawn) | {index}
        while True:
            fresh = [i for i, m in enumerate(space.active(new)) if m and i not in done]
            if not fresh:
                break
            for i in fresh:
                new[i] = int(rng.integers(space.decisions[i].n_choices))
                done.add(i)
        if space.check(new) is None:
            return space.make(new)
    return None
