"""A rank ensemble of proxies whose score of one architecture is defined on its own.

Proxies live on unrelated scales (a log-determinant, a log saliency, a parameter count), so the ensemble
averages ranks. Ranking among the architectures a search happens to have seen would make a score depend on
the search's history; instead every proxy value is ranked against a fixed *reference sample* of architectures
(drawn and scored once, seeded): its rank is its position among the reference's sorted values, interpolated
linearly between them, as a fraction in [0, 1]. Values beyond the reference's extremes continue the slope of
its outer tenth (clipped to [-1, 2]), so that the architectures better than every reference one are still
ordered, which is where a search needs it. The ensemble score is the mean of its members' ranks: a pure
function of the architecture's proxy values and the reference.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

#: how far beyond the reference's range a rank may be extrapolated (fractions of the range)
RANK_CLIP = (-1.0, 2.0)
#: the share of the reference at each end whose slope extends the ranks beyond it
TAIL = 0.1


class ReferenceRanks:
    """Ranks of proxy values against one reference sample of each proxy (see the module docstring)."""

    def __init__(self, reference: Mapping[str, Sequence[float]]) -> None:
        self.values: dict[str, np.ndarray] = {}
        self.positions: dict[str, np.ndarray] = {}
        for name, values in reference.items():
            v = np.sort(np.asarray(values, dtype=np.float64))
            if len(v) < 2:
                raise ValueError(f"the reference of {name!r} needs at least 2 values, got {len(v)}")
            # tied values share their average position, so the map stays a function of the value
            unique, first, counts = np.unique(v, return_index=True, return_counts=True)
            self.values[name] = unique
            self.positions[name] = (first + (counts - 1) / 2.0) / (len(v) - 1)

    def rank(self, name: str, value: float) -> float:
        """The rank (a fraction, 0 = the reference's lowest, 1 = its highest) of ``value`` of proxy ``name``."""
        xs, ps = self.values[name], self.positions[name]
        if len(xs) == 1:  # a proxy constant over the reference ranks nothing
            return 0.5
        if xs[0] <= value <= xs[-1]:
            return float(np.interp(value, xs, ps))
        k = max(1, int(round(TAIL * (len(xs) - 1))))
        if value > xs[-1]:
            slope = (ps[-1] - ps[-1 - k]) / (xs[-1] - xs[-1 - k])
            r = ps[-1] + slope * (value - xs[-1])
        else:
            slope = (ps[k] - ps[0]) / (xs[k] - xs[0])
            r = ps[0] + slope * (value - xs[0])
        return float(np.clip(r, *RANK_CLIP))

    def score(self, values: Mapping[str, float], members: Sequence[str]) -> float:
        """The ensemble score: the mean rank of ``members``' values."""
        return float(np.mean([self.rank(m, values[m]) for m in members]))
