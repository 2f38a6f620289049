"""The evaluator interface: architecture in, :class:`~nasforge.result.Result` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from ..arch import Architecture
from ..errors import ConfigError
from ..result import Result
from ..spaces.base import SearchSpace


@dataclass
class NoConfig:
    """An evaluator without parameters of its own."""


class Evaluator(ABC):
    """Base class of evaluators.

    Registered factories are called as ``factory(space, config, run)`` where ``config`` is the
    evaluator's own ``Config`` dataclass and ``run`` the :class:`~nasforge.config.RunConfig` (for the
    benchmark path, fidelity, data set...). Counters record what a search has spent.
    """

    Config: ClassVar[type] = NoConfig
    #: the metric reported for a search's best architecture (never shown to strategies)
    reported_metric: ClassVar[str] = "test_accuracy"

    def __init__(self, space: SearchSpace, config: Any = None) -> None:
        self.space = space
        self.config = config if config is not None else self.Config()
        self.queries = 0
        self.total_cost = 0.0

    @abstractmethod
    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        """Evaluate one architecture (subclasses)."""

    def evaluate(self, arch: Architecture, fidelity: float | None = None, seed: int = 0) -> Result:
        """Evaluate ``arch``; ``seed`` makes any randomness of the evaluation reproducible."""
        result = self._evaluate(arch, fidelity, seed)
        self.queries += 1
        self.total_cost += result.cost
        return result

    def optimum(self) -> tuple[Architecture, Result] | None:
        """The architecture with the best reward, for evaluators that know it (tables)."""
        return None

    def close(self) -> None:
        """Release files, processes or devices."""


def refuse_fidelity(name: str, run: Any) -> None:
    """Reject a run's ``fidelity`` for an evaluator that has none: a protocol never changes silently."""
    fidelity = getattr(run, "fidelity", None)
    if fidelity is not None:
        raise ConfigError(f"fidelity: the {name!r} evaluator has no fidelity (got {fidelity}); leave it unset")
