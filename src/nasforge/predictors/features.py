"""Features of architectures beyond the one-hot encoding, for the models that rank them.

:class:`OperationCounts` says how often each operation occurs in an architecture. On cell spaces this carries
what a one-hot model learns only from many observations: accuracy depends on the counts non-linearly. On
NAS-Bench-201, for example, one skip connection helps and two hurt. An additive per-edge model then concludes
from a few two-skip cells that a skip connection is bad on an edge where, alone, it is the best choice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..arch import Architecture
from ..spaces.base import OPERATION, SearchSpace


class OperationCounts:
    """One-hot histogram of operation counts: for every operation label of the space's operation decisions,
    which of 0, 1, ..., (the number of decisions offering it) is how often the architecture chose it.

    Only active decisions count. A space whose operation decisions have no labels has no features
    (``size`` 0).
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.decisions = [i for i, d in enumerate(space.decisions) if d.group == OPERATION and d.labels]
        labels = sorted({label for i in self.decisions for label in space.decisions[i].labels})
        self.index = {label: k for k, label in enumerate(labels)}
        most = [sum(label in space.decisions[i].labels for i in self.decisions) for label in labels]
        self.offsets = np.concatenate([[0], np.cumsum([m + 1 for m in most])]).astype(int)
        self.size = int(self.offsets[-1]) if labels else 0

    def __call__(self, arch: Architecture) -> np.ndarray:
        counts = np.zeros(len(self.index), dtype=int)
        active = self.space.active(arch.choices)
        for i in self.decisions:
            if active[i]:
                counts[self.index[self.space.decisions[i].label(arch.choices[i])]] += 1
        vec = np.zeros(self.size)
        vec[self.offsets[:-1] + counts] = 1.0
        return vec


@dataclass(frozen=True)
class FeatureBlock:
    """Features appended to an architecture's one-hot encoding, and the covariance terms a model puts on them:
    ``v * c ** power`` for each of ``powers`` (``c`` the normalised dot product of two architectures' features),
    with ``prior`` the prior median of each ``v`` (see :class:`~nasforge.predictors.gp.DotTerm`)."""

    features: Callable[[Architecture], np.ndarray]
    size: int
    powers: tuple[int, ...] = (1,)
    prior: float = 1.0
