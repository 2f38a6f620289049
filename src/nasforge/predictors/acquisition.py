"""Acquisition functions and the storage of a candidate pool's posterior terms.

Expected improvement in a log form that stays finite far below the incumbent (Ament et al. 2023),
and :class:`GrowableMatrix`, which holds ``V = L^-1 K(X, C)`` of a candidate pool as observations
add rows and candidates come and go.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI_2 = 0.5 * math.log(math.pi / 2.0)
#: below this z the asymptotic form of log h(z) is exact to double precision
_Z_ASYMPTOTIC = -1.0 / math.sqrt(np.finfo(float).eps)


# --------------------------------------------------------------------------- expected improvement
def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Maechler 2012)."""
    return np.where(x > -math.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z Phi(z)), stable for very negative z (Ament et al. 2023, "LogEI")."""
    from scipy import special  # where used: see nasforge.predictors.gp

    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu**2 - _LOG_SQRT_2PI) + zu * special.ndtr(zu))
    middle = (z <= -1.0) & (z > _Z_ASYMPTOTIC)
    zm = z[middle]
    out[middle] = -0.5 * zm**2 - _LOG_SQRT_2PI + _log1mexp(np.log(special.erfcx(-zm / math.sqrt(2.0)) * -zm) + _LOG_SQRT_PI_2)
    lower = z <= _Z_ASYMPTOTIC
    zl = z[lower]
    out[lower] = -0.5 * zl**2 - _LOG_SQRT_2PI - 2.0 * np.log(-zl)
    return out


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """log E[max(f - best - xi, 0)] for f ~ N(mean, std^2); finite even where EI underflows to 0."""
    std = np.maximum(np.asarray(std, dtype=float), 1e-12)
    z = (np.asarray(mean, dtype=float) - best - xi) / std
    return _log_h(z) + np.log(std)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """E[max(f - best - xi, 0)] for f ~ N(mean, std^2) (maximisation)."""
    return np.exp(log_expected_improvement(mean, std, best, xi))


# --------------------------------------------------------------------------- growable matrix
class GrowableMatrix:
    """A matrix that gains rows and columns, and loses columns, without copying all of it each time.

    Capacity doubles when exceeded, so appending is amortised O(size of the new part); a column is
    removed by moving the last column into its place (the column order changes, O(rows)).
    """

    def __init__(self, rows: int = 0, cols: int = 0) -> None:
        self.data = np.zeros((max(rows, 8), max(cols, 8)))
        self.rows, self.cols = rows, cols

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.rows, : self.cols]

    def __getstate__(self) -> dict:
        # strategy states are saved after every ask and tell: leave the spare capacity out
        return {"data": self.view.copy(), "rows": self.rows, "cols": self.cols}

    def __setstate__(self, state: dict) -> None:
        vars(self).update(state)

    def _reserve(self, rows: int, cols: int) -> None:
        cap_r, cap_c = self.data.shape
        if rows > cap_r or cols > cap_c:
            new = np.zeros((max(rows, 2 * cap_r) if rows > cap_r else cap_r, max(cols, 2 * cap_c) if cols > cap_c else cap_c))
            new[: self.rows, : self.cols] = self.view
            self.data = new

    def assign(self, matrix: np.ndarray) -> None:
        self.rows = self.cols = 0
        self._reserve(*matrix.shape)
        self.rows, self.cols = matrix.shape
        self.data[: self.rows, : self.cols] = matrix

    def append_row(self, row: np.ndarray) -> None:
        self._reserve(self.rows + 1, self.cols)
        self.data[self.rows, : self.cols] = row
        self.rows += 1

    def append_cols(self, block: np.ndarray) -> None:
        self._reserve(self.rows, self.cols + block.shape[1])
        self.data[: self.rows, self.cols : self.cols + block.shape[1]] = block
        self.cols += block.shape[1]

    def remove_col(self, j: int) -> None:
        self.data[: self.rows, j] = self.data[: self.rows, self.cols - 1]
        self.cols -= 1

    def keep_cols(self, index: np.ndarray) -> None:
        self.assign(self.view[:, index])

    def truncate_rows(self, rows: int) -> None:
        self.rows = min(self.rows, rows)
