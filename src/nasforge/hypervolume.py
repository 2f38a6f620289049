"""Hypervolume over evaluations for a bench of multi-objective searches (``nasforge bench --objective ...``).

Every search's objective values (one row per evaluation, maximisation form, ``None`` for failed or
infeasible ones) are kept in its job file. The hypervolume needs a common scale and reference point: each
objective is scaled to [0, 1] between the worst and best value any search of the bench saw, and the
reference point lies 10% of that range beyond the worst, so that the extreme points of a front count too.
Hypervolumes are therefore comparable within one bench (and :func:`hypervolume_of` takes explicit bounds,
such as a whole table's, to compare with an exact front).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .objectives import hypervolume_curve

#: the reference point's distance beyond the worst value, as a fraction of each objective's range
MARGIN = 0.1


def values_matrix(rows: Sequence[Sequence[float | None] | None], m: int) -> np.ndarray:
    """Rows of objective values (None: no usable result) as an n x m array with nan rows."""
    out = np.full((len(rows), m), np.nan)
    for i, row in enumerate(rows):
        if row is not None and all(v is not None for v in row):
            out[i] = [float(v) for v in row]  # type: ignore[arg-type]
    return out


def bounds(mats: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Worst and best value of each objective over every finite row of ``mats``."""
    rows = np.vstack([m[np.all(np.isfinite(m), axis=1)] for m in mats if len(m)])
    return rows.min(axis=0), rows.max(axis=0)


def hypervolume_of(mat: np.ndarray, lo: np.ndarray, hi: np.ndarray, at: Sequence[int] | None = None) -> np.ndarray:
    """Hypervolume after each evaluation (or each count in ``at``) of ``mat``'s rows, scaled by ``lo``/``hi``
    and measured from the reference point ``MARGIN`` beyond ``lo`` (the whole box: ``(1 + MARGIN) ** m``)."""
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (mat - lo) / span
    return hypervolume_curve(scaled, np.full(mat.shape[1], -MARGIN), at)


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values)),
            "q25": float(np.quantile(values, 0.25)), "q75": float(np.quantile(values, 0.75))}


def summarise_hypervolume(results: dict[str, list[dict[str, Any]]], objectives: Sequence[str],
                          budgets: Sequence[int]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``summary.json``'s ``hypervolume`` entry (per strategy, the hypervolume's quartiles at each budget) and
    each strategy's seeds x evaluations matrix of hypervolume curves (for :func:`plot_hypervolume`)."""
    m = len(objectives)
    mats = {name: [values_matrix(r.get("objective_values") or [], m) for r in runs] for name, runs in results.items()}
    everything = [x for ms in mats.values() for x in ms]
    if not any(np.isfinite(x).all(axis=1).any() for x in everything):
        return {"objectives": list(objectives), "note": "no evaluation had every objective"}, {}
    lo, hi = bounds(everything)
    curves: dict[str, np.ndarray] = {}
    out: dict[str, Any] = {"objectives": list(objectives), "worst": lo.tolist(), "best": hi.tolist(),
                           "reference": "each objective scaled to [0, 1] between the worst and best value seen by "
                                        f"any search, reference point {MARGIN} beyond the worst",
                           "strategies": {}}
    for name, ms in mats.items():
        n = max(len(x) for x in ms)
        curve = np.full((len(ms), n), np.nan)
        for i, x in enumerate(ms):
            if len(x):
                c = hypervolume_of(x, lo, hi)
                curve[i, : len(c)] = c
                curve[i, len(c):] = c[-1]
        curves[name] = curve
        out["strategies"][name] = {str(b): _stats(curve[:, b - 1]) for b in budgets if b <= n}
    return out, curves


def plot_hypervolume(curves: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Median hypervolume against evaluations with the interquartile band, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    lows, highs = [], []
    for name, mat in curves.items():
        x = np.arange(1, mat.shape[1] + 1)
        with np.errstate(all="ignore"):
            med = np.nanmedian(mat, axis=0)
            q25, q75 = np.nanquantile(mat, 0.25, axis=0), np.nanquantile(mat, 0.75, axis=0)
        ax.plot(x, med, label=name, lw=1.6)
        ax.fill_between(x, q25, q75, alpha=0.15)
        lows.append(med[max(len(med) // 10 - 1, 0)])
        highs.append(np.nanmax(q75))
    if lows and np.all(np.isfinite(lows + highs)):  # the curves' second half, where strategies differ
        span = max(highs) - min(lows)
        ax.set_ylim(min(lows) - 0.05 * span, max(highs) + 0.05 * span)
    ax.set_xscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("hypervolume (median, IQR band; scaled objectives)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
