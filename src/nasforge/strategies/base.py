"""The strategy interface: ask / tell, with a state that can be saved and loaded exactly.

A strategy proposes architectures (``ask``) and learns from their results (``tell``). It may be
told results for architectures it did not ask for (a resumed or parallel run, a warm start), and it
must be deterministic given its seed: the same seed, asks and tells give the same trajectory (a run
store relies on it: it saves the state now and then and replays the asks and tells recorded since).

The state contract: a strategy's attributes (but ``space`` and ``config``, given at construction, and
what ``_not_state`` names) are its state, and they must be plain data that :mod:`nasforge.codec`
encodes: Python and NumPy values and containers, NumPy and torch generators, tensors, modules and
optimisers (restored into the ones the strategy built in ``__init__``), architectures, results and
objects of nasforge's own classes. :meth:`save_state` and :meth:`restore_state` use it;
:meth:`state_dict` / :meth:`load_state_dict` are the in-memory copy.

Failed results (``result.failed``) are told too; a strategy decides how to treat them, most simply by
ignoring them for learning (:func:`usable`).

Fidelities (multi-fidelity search): the run loop asks through :meth:`Strategy.ask_proposals`, which returns
:class:`Proposal` objects, an architecture and an optional fidelity (a table's epochs, the ``train``
evaluator's epochs). The default ``ask_proposals`` wraps :meth:`ask` with no fidelity, so a strategy that
only implements ``ask`` is evaluated at the run's fidelity (the evaluator's default) as always. A
strategy that chooses fidelities overrides ``ask_proposals`` (and keeps ``ask`` as the architectures of
``ask_proposals``); the run loop tells it, before the first ask, the fidelities the evaluator offers
(:meth:`use_fidelities`, ascending, or None for an evaluator without fidelities: super-networks), and
refuses a fidelity the evaluator does not have. ``tell`` is unchanged: results come back in the order
they arrived, each for one proposal (a strategy matches them to its proposals by architecture). The
run store records the fidelity and cost of every evaluation, and the search's incumbent is the best
reward among the results at the highest fidelity reached so far, never a comparison across fidelities.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..arch import Architecture
from ..codec import Encoded, decode, encode
from ..result import Result
from ..spaces.base import SearchSpace
from .common import UnseenSampler


@dataclass(frozen=True)
class Proposal:
    """An architecture to evaluate, at ``fidelity`` (None: the run's fidelity, the evaluator's default)."""

    arch: Architecture
    fidelity: float | None = None


@dataclass
class NoConfig:
    """A strategy without hyper-parameters."""


@dataclass
class Prior:
    """A cheap score of architectures (higher is better, for example a training-free proxy) with which a strategy
    chooses the samples of its random initial phase: each is the best by ``score`` of ``draws`` uniform unseen
    samples (:meth:`Strategy.initial_sample`). ``score`` must be deterministic: a resumed search replays it."""

    score: Callable[[Sequence[Architecture]], Sequence[float]]
    draws: int = 10


class Strategy(ABC):
    """Base class of search strategies.

    Subclasses declare their hyper-parameters as a nested ``Config`` dataclass (typed, with defaults
    that are good for any space and data set) and implement :meth:`ask` and :meth:`tell`.
    """

    Config: ClassVar[type] = NoConfig
    #: attributes left out of :meth:`state_dict` (the space and config are given at construction)
    _not_state: ClassVar[tuple[str, ...]] = ("space", "config")
    #: the prior of the initial samples, set by the factory (``--prior``); never part of the state
    prior: Prior | None = None

    def __init__(self, space: SearchSpace, config: Any = None, seed: int = 0) -> None:
        self.space = space
        self.config = config if config is not None else self.Config()
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)

    @abstractmethod
    def ask(self, n: int = 1) -> list[Architecture]:
        """Propose ``n`` architectures to evaluate (all may be evaluated in parallel)."""

    def ask_proposals(self, n: int = 1) -> list[Proposal]:
        """Propose ``n`` evaluations: architectures with an optional fidelity each (by default :meth:`ask`'s
        architectures at the run's fidelity); multi-fidelity strategies override it."""
        return [Proposal(a) for a in self.ask(n)]

    def use_fidelities(self, fidelities: Sequence[float] | None) -> None:
        """Learn the fidelities the evaluator offers (ascending; None: it has none). Called by the run loop
        before the first ask; strategies that do not choose fidelities ignore it."""

    @abstractmethod
    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        """Learn from evaluated architectures (in the order their results arrived)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; by default every attribute but space and config.

        The returned object is a deep copy (for saving to disk, see :meth:`save_state`).
        """
        return copy.deepcopy(self._attributes())

    def _attributes(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in self._not_state and k != "prior"}

    def initial_sample(self, sampler: UnseenSampler) -> Architecture:
        """A sample of the strategy's random initial phase, marked seen: uniform and unseen, or with a
        :attr:`prior` the best by the prior of ``prior.draws`` distinct unseen uniform samples."""
        if self.prior is None or self.prior.draws <= 1:
            return sampler.sample(self.rng)
        candidates: dict[Any, Architecture] = {}
        for _ in range(self.prior.draws * 20):  # a nearly exhausted space yields fewer new ones
            arch = self.space.sample(self.rng)
            if sampler.is_new(arch):
                candidates.setdefault(self.space.key(arch), arch)
            if len(candidates) == self.prior.draws:
                break
        if not candidates:
            return sampler.sample(self.rng)
        archs = list(candidates.values())
        best = archs[int(np.argmax(np.asarray(self.prior.score(archs), dtype=float)))]
        sampler.mark([best])
        return best

    def state_to_save(self) -> dict[str, Any]:
        """The state for immediate encoding (:meth:`save_state` reads it at once, so no copy is made)."""
        if type(self).state_dict is Strategy.state_dict:
            return self._attributes()
        return self.state_dict()

    def load_state_dict(self, state: dict[str, Any] | Encoded) -> None:
        """Continue from ``state``: a :meth:`state_dict`, or a saved :meth:`save_state` (see :meth:`restore_state`)."""
        if isinstance(state, Encoded):
            self.restore_state(state)
            return
        vars(self).update(copy.deepcopy(state))

    def _externals(self) -> dict[str, Any]:
        return {"space": self.space, "config": self.config}

    def save_state(self) -> Encoded:
        """The state as plain data (a JSON tree and arrays; ``.to_bytes()`` for storage), never pickle."""
        return encode(self.state_to_save(), self._externals())

    def restore_state(self, saved: Encoded) -> None:
        """Continue from a :meth:`save_state`: modules, optimisers and generators are loaded into this
        strategy's own (built by ``__init__`` from the same space and config), so references between them hold."""
        state = decode(saved, self._attributes(), self._externals())
        if type(self).load_state_dict is Strategy.load_state_dict:
            vars(self).update(state)
        else:  # a strategy with its own loading (caches to drop) sees a plain state, as from state_dict()
            self.load_state_dict(state)

    def status(self) -> dict[str, float]:
        """A few numbers for a progress display (a policy's baseline and entropy, for example); may be empty."""
        return {}

    def observe(self) -> dict[str, Any] | None:
        """A snapshot for plots (for example a policy's probability vectors), or None."""
        return None


def usable(results: Sequence[Result]) -> list[bool]:
    """Which results carry a reward a strategy can learn from."""
    return [not r.failed and np.isfinite(r.reward) for r in results]
