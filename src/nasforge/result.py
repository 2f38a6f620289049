"""What an evaluator returns for one architecture."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    """The outcome of one evaluation.

    Attributes:
        reward: what the strategy sees and maximises (for example validation accuracy).
        metrics: further numbers, reported but never shown to strategies (``test_accuracy``, ``params``...).
        cost: the evaluator's cost unit (simulated or real training epochs).
        failed: the evaluation did not produce a usable reward (``reward`` is then ``nan``).
        error: why it failed.
    """

    reward: float
    metrics: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    failed: bool = False
    error: str | None = None

    @classmethod
    def failure(cls, error: str, cost: float = 0.0, **metrics: Any) -> Result:
        return cls(math.nan, dict(metrics), cost, True, error)

    @property
    def test_accuracy(self) -> float | None:
        value = self.metrics.get("test_accuracy")
        return None if value is None else float(value)
