"""Gaussian-process regression on architecture encodings, with an incrementally grown Cholesky factor.

The model of the ``bo`` strategy (:mod:`nasforge.strategies.bo`): a zero-mean GP with a Matern 5/2
or RBF kernel, one length-scale per decision (ARD) or one shared, hyper-parameters fitted by maximum
a posteriori marginal likelihood. Between fits the Cholesky factor of the kernel matrix grows by one
row per observation (rank-one extension), so that a query stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

from ..spaces.base import SearchSpace

# SciPy is imported inside the functions that use it: at module level it adds about a second to the start of
# every command and worker process, most of which never fit a GP (tests/test_layers.py)

KERNELS = ("matern52", "rbf")
TARGETS = ("rank", "standardize")

_SQRT5 = math.sqrt(5.0)


@functools.lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    # SciPy is imported where used, and its wheels bring their own OpenBLAS: load it before the scan, which sees only
    # the libraries loaded so far, or SciPy's Cholesky factors would stay multi-threaded (2.6x the CPU time of a
    # search on 2 cores, more with parallel workers)
    import scipy.linalg  # noqa: F401

    return ThreadpoolController()  # scanning the loaded libraries takes milliseconds: do it once


def single_threaded_blas() -> AbstractContextManager:
    """Run BLAS/LAPACK on one thread for the duration of a block.

    The GP's matrices are a few hundred rows: threads cannot speed them up, and on a loaded machine
    a multi-threaded OpenBLAS Cholesky is measured 100x slower (50 ms instead of 0.4 ms at n = 300).
    """
    try:
        return _blas_controller().limit(limits=1, user_api="blas")
    except Exception:  # an unusual BLAS setup must not stop a search
        return contextlib.nullcontext()


# --------------------------------------------------------------------------- kernels
def _kernel_and_slope(r2: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit-variance stationary kernel k(r^2) and its derivative dk/d(r^2)."""
    if kind == "rbf":
        k = np.exp(-0.5 * r2)
        return k, -0.5 * k
    r = np.sqrt(r2)
    e = np.exp(-_SQRT5 * r)
    k = (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * e
    return k, -(5.0 / 6.0) * (1.0 + _SQRT5 * r) * e


def _sqdist(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted squared distances sum_j w_j (a_ij - b_kj)^2 between the rows of a and b."""
    aw = a * w
    d = (aw * a).sum(1)[:, None] + (b * b * w).sum(1)[None, :] - 2.0 * aw @ b.T
    return np.maximum(d, 0.0)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised dot products of the rows of a and b: for one-hot encodings, the share of decisions that agree."""
    na = np.sqrt((a * a).sum(1))
    nb = np.sqrt((b * b).sum(1))
    return (a @ b.T) / np.maximum(na[:, None] * nb[None, :], 1e-12)


def encoding_groups(space: SearchSpace, ard: bool) -> np.ndarray:
    """Which length-scale each encoding column uses: one per decision (ARD) or one shared.

    Per-decision length-scales need the default one-hot layout; a space with its own encoding gets
    a single shared length-scale.
    """
    size = len(space.encode(space.sample(np.random.default_rng(0))))
    if ard and size == sum(d.n_choices for d in space.decisions):
        return np.repeat(np.arange(len(space.decisions)), [d.n_choices for d in space.decisions])
    return np.zeros(size, dtype=int)


@dataclass(frozen=True)
class DotTerm:
    """A covariance term ``v * c ** power`` with a fitted variance ``v``: ``c`` is the normalised dot product of
    the encodings' columns ``start:stop``, and ``prior`` the prior median of ``v``."""

    start: int
    stop: int
    power: int = 1
    prior: float = 1.0


# --------------------------------------------------------------------------- Gaussian process
class GaussianProcess:
    """Zero-mean GP regression on encoded architectures, with an incrementally grown Cholesky factor.

    Hyper-parameters (log length-scale per column group, log signal variance, log noise variance)
    are fitted by maximum a posteriori marginal likelihood with L-BFGS-B, warm-started from the last
    fit. Targets are expected to be normalised (zero mean, unit scale), which the priors assume.

    With ``additive`` the covariance also has a first- and a second-order term in the normalised dot
    product ``c`` of the encodings (``s1 c + s2 c^2``, two more variances in ``theta`` before the
    signal's): on one-hot encodings ``c`` is the share of decisions two architectures agree on, so
    these are the covariances of additive per-decision effects and of pairwise interactions. They
    generalise from few observations where the stationary kernel stays local (an architecture far from
    every observation but made of options that were good elsewhere is predicted good).

    ``terms`` adds more such terms (:class:`DotTerm`) on feature columns appended after the one-hot ones
    (``groups`` covers the one-hot columns only; the stationary kernel sees nothing else), for example on
    how often each operation occurs (:class:`~nasforge.predictors.features.OperationCounts`).
    """

    #: prior standard deviations of log length-scales, log signal and log noise variance (weak)
    PRIOR_STD = (1.5, 1.0, 2.0)

    def __init__(self, groups: np.ndarray, kind: str = "matern52", max_iter: int = 50, additive: bool = False,
                 terms: Sequence[DotTerm] = ()) -> None:
        if kind not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kind!r}")
        self.groups = np.asarray(groups, dtype=int)
        self.n_groups = int(self.groups.max()) + 1
        self.kind = kind
        self.max_iter = max_iter
        d = len(self.groups)
        # the first- and second-order terms of the one-hot columns, then the extra ones
        self.terms = [DotTerm(0, d, 1), DotTerm(0, d, 2)] if additive else []
        self.terms += list(terms)
        self.n_extra = len(self.terms)  # their variances sit in theta between the length-scales and the signal's
        self.width = max([d] + [t.stop for t in self.terms])  # columns of an input
        self.theta: np.ndarray | None = None  # [log l_g..., log v_t..., log s2, log noise]
        self.prior_mean: np.ndarray | None = None
        self.X = np.zeros((0, self.width))
        self.L = np.zeros((0, 0))

    # ---------------------------------------------------------------- hyper-parameters
    @property
    def n(self) -> int:
        return len(self.X)

    @property
    def fitted_theta(self) -> np.ndarray:
        """The hyper-parameters ``theta`` once the GP has been fitted."""
        assert self.theta is not None, "the GP's hyper-parameters are set by its first fit"
        return self.theta

    @property
    def signal(self) -> float:
        """Prior variance of f at any point (the kernel's diagonal)."""
        return float(np.exp(self.fitted_theta[self.n_groups :-1]).sum())

    @property
    def noise(self) -> float:
        return float(np.exp(self.fitted_theta[-1]))

    def _weights(self, theta: np.ndarray) -> np.ndarray:
        return np.exp(-2.0 * theta[: self.n_groups])[self.groups]

    def kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Signal covariance between the rows of a and b (no noise)."""
        theta = self.fitted_theta
        d = len(self.groups)
        k, _ = _kernel_and_slope(_sqdist(a[:, :d], b[:, :d], self._weights(theta)), self.kind)
        k = math.exp(theta[-2]) * k
        if self.terms:
            k += sum(self._scaled_terms(self._variances(theta), self._cosines(a, b)))
        return k

    def _variances(self, theta: np.ndarray) -> list[float]:
        return [math.exp(t) for t in theta[self.n_groups : self.n_groups + self.n_extra]]

    def _cosines(self, a: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
        """Each term's ``c`` between the rows of a and b (computed once per block of columns)."""
        blocks: dict[tuple[int, int], np.ndarray] = {}
        for t in self.terms:
            if (t.start, t.stop) not in blocks:
                blocks[t.start, t.stop] = _cosine(a[:, t.start : t.stop], b[:, t.start : t.stop])
        return [blocks[t.start, t.stop] for t in self.terms]

    def _scaled_terms(self, v: list[float], cosines: list[np.ndarray]) -> list[np.ndarray]:
        """``v * c ** power`` of each term."""
        out = []
        for t, vi, c in zip(self.terms, v, cosines):
            term = vi * c
            for _ in range(t.power - 1):
                term = term * c
            out.append(term)
        return out

    def _group_distances(self, X: np.ndarray) -> np.ndarray:
        X = X[:, : len(self.groups)]
        return np.stack([_sqdist(X, X, (self.groups == g).astype(float)) for g in range(self.n_groups)])

    def _init_prior(self, D: np.ndarray) -> None:
        # Median heuristic per group, scaled so that all groups together give r^2 ~ 1 between
        # typical points: no assumption about the encoding's scale or the number of decisions.
        med = [np.median(d[d > 0]) if np.any(d > 0) else 1.0 for d in D]
        log_ls = 0.5 * np.log(np.asarray(med) * self.n_groups)
        # Unit signal variance (targets are normalised) and a small noise: tabular and trained
        # rewards are both close to deterministic, and the fit lets noise grow where the data say so.
        # The additive terms start at their prior median (the stationary kernel's variance unless a term says
        # otherwise): the fit decides the mix.
        extra = [math.log(t.prior) for t in self.terms]
        self.prior_mean = np.concatenate([log_ls, extra, [0.0, math.log(1e-2)]])
        if self.theta is None:
            self.theta = self.prior_mean.copy()

    def _bounds(self) -> list[tuple[float, float]]:
        assert self.prior_mean is not None, "the prior is set by the first fit, before any bounds are needed"
        ls = [(m - 3.0, m + 4.0) for m in self.prior_mean[: self.n_groups]]
        extra = [(math.log(1e-4), math.log(20.0))] * self.n_extra
        return ls + extra + [(math.log(0.05), math.log(20.0)), (math.log(1e-6), math.log(1.0))]

    def _neg_log_posterior(self, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative log marginal likelihood plus log prior of ``theta``, and its gradient."""
        from scipy import linalg
        w = np.exp(-2.0 * theta[: self.n_groups])
        terms = self._scaled_terms(self._variances(theta), self._cosines(X, X))
        X = X[:, : len(self.groups)]  # the stationary kernel's columns
        k, slope = _kernel_and_slope(_sqdist(X, X, w[self.groups]), self.kind)
        s2, noise = math.exp(theta[-2]), math.exp(theta[-1])
        K = s2 * k + (noise + 1e-8) * np.eye(len(y))
        if terms:
            K += sum(terms)
        try:
            factor = linalg.cho_factor(K, lower=True, check_finite=False)
        except linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = linalg.cho_solve(factor, y, check_finite=False)
        nll = 0.5 * y @ alpha + np.log(np.diag(factor[0])).sum() + 0.5 * len(y) * math.log(2 * math.pi)
        inv, info = linalg.lapack.dpotri(factor[0], lower=True)
        if info != 0:
            return 1e10, np.zeros_like(theta)
        inv = np.tril(inv) + np.tril(inv, -1).T  # dpotri fills one triangle only
        W = np.outer(alpha, alpha) - inv
        grad = np.empty_like(theta)
        # d nll / d log l_g = -0.5 tr(W dK), dK = s2 k'(r2) (-2 w_g D_g) with D_g the group's squared
        # distances; sum(M * D_g) is expanded so that no n x n matrix per group is ever formed.
        M = W * (s2 * slope)
        per_column = 2.0 * (M.sum(1) @ (X * X)) - 2.0 * np.einsum("ij,ij->j", X, M @ X)
        grad[: self.n_groups] = w * np.bincount(self.groups, per_column, minlength=self.n_groups)
        grad[-2] = -0.5 * np.sum(W * (s2 * k))
        for i, term in enumerate(terms):
            grad[self.n_groups + i] = -0.5 * np.sum(W * term)
        grad[-1] = -0.5 * noise * np.trace(W)
        sd = np.repeat((*self.PRIOR_STD[:2], *self.PRIOR_STD[1:]), [self.n_groups, self.n_extra, 1, 1])
        diff = (theta - self.prior_mean) / sd
        return nll + 0.5 * diff @ diff, grad + diff / sd

    #: points used to set the length-scale priors (the median heuristic needs few)
    PRIOR_POINTS = 100

    def fit(self, X: np.ndarray, y: np.ndarray) -> None:
        """Fit the hyper-parameters to (X, y) (warm-started) and factorise the kernel matrix."""
        from scipy import optimize
        X = np.asarray(X, dtype=float)
        if self.prior_mean is None:
            self._init_prior(self._group_distances(X[: self.PRIOR_POINTS]))
        res = optimize.minimize(
            self._neg_log_posterior, self.theta, args=(X, np.asarray(y, dtype=float)), jac=True,
            method="L-BFGS-B", bounds=self._bounds(), options={"maxiter": self.max_iter},
        )
        if np.all(np.isfinite(res.x)):
            self.theta = res.x
        self.factorise(X)

    def factorise(self, X: np.ndarray) -> None:
        """Cholesky factor of K(X, X) + noise I from scratch, with jitter if it is not positive definite."""
        from scipy import linalg
        self.X = np.asarray(X, dtype=float)
        K = self.kernel(self.X, self.X)
        for jitter in 10.0 ** np.arange(-8, 1):
            try:
                self.L = linalg.cholesky(K + (self.noise + jitter) * np.eye(self.n), lower=True, check_finite=False)
                return
            except linalg.LinAlgError:
                continue
        raise linalg.LinAlgError(f"kernel matrix of {self.n} points is not positive definite even with jitter")

    # ---------------------------------------------------------------- incremental updates
    def extend(self, x: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Add one input by a rank-one extension of L; returns the new row (l, d), or None if unstable."""
        from scipy import linalg
        x = np.asarray(x, dtype=float)[None, :]
        k = self.kernel(self.X, x)[:, 0]
        l = linalg.solve_triangular(self.L, k, lower=True, check_finite=False) if self.n else k
        d2 = self.signal + self.noise + 1e-8 - l @ l
        if d2 <= 1e-10 * self.signal:
            return None
        d = math.sqrt(d2)
        n = self.n
        L = np.zeros((n + 1, n + 1))
        L[:n, :n] = self.L
        L[n, :n] = l
        L[n, n] = d
        self.L, self.X = L, np.vstack([self.X, x])
        return l, d

    def truncate(self, n: int) -> None:
        """Forget every input after the first n (the factor's leading block is still exact)."""
        self.L, self.X = self.L[:n, :n].copy(), self.X[:n].copy()

    def solve_lower(self, b: np.ndarray) -> np.ndarray:
        """L^-1 b."""
        from scipy import linalg
        return linalg.solve_triangular(self.L, b, lower=True, check_finite=False)

    def cross(self, C: np.ndarray) -> np.ndarray:
        """V = L^-1 K(X, C): the cross terms of candidates C that :meth:`posterior` takes."""
        return self.solve_lower(self.kernel(self.X, C))

    def cross_row(self, x: np.ndarray, C: np.ndarray, row: tuple[np.ndarray, float], V: np.ndarray) -> np.ndarray:
        """The row that input ``x``, just added by :meth:`extend` (which returned ``row``), adds to
        V = L^-1 K(X, C), given V's rows for the inputs before it."""
        l, d = row
        return (self.kernel(x[None, :], C)[0] - l @ V[: len(l)]) / d

    def posterior(self, beta: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation at points whose cross terms are V = L^-1 K(X, C), with beta = L^-1 y."""
        mean = V.T @ beta
        var = np.maximum(self.signal - np.einsum("ij,ij->j", V, V), 1e-12)
        return mean, np.sqrt(var)

    def predict(self, y: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of f at the rows of C (convenience, O(n^2) per point)."""
        V = self.cross(np.asarray(C, dtype=float))
        return self.posterior(self.solve_lower(np.asarray(y, dtype=float)), V)


def normalise(y: np.ndarray, how: str) -> np.ndarray:
    """Targets on a unit scale: Gaussian scores of the ranks, or standardised values."""
    from scipy import special, stats
    y = np.asarray(y, dtype=float)
    if len(y) < 2:
        return np.zeros_like(y)
    if how == "rank":
        return special.ndtri((stats.rankdata(y) - 0.5) / len(y))
    std = y.std()
    return (y - y.mean()) / (std if std > 0 else 1.0)
