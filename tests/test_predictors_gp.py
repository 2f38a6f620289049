"""The Gaussian process of `nasforge.predictors.gp`: posterior, marginal-likelihood gradient, incremental factor."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg, optimize, stats

import nasforge as nf
from nasforge.predictors.gp import GaussianProcess, encoding_groups, normalise
from nasforge.testing.toy import toy_reward


def _toy_data(n: int, seed: int = 0) -> tuple[nf.spaces.base.SearchSpace, np.ndarray, np.ndarray]:
    space = nf.create_space("toy")
    rng = np.random.default_rng(seed)
    archs = list({a: None for a in (space.sample(rng) for _ in range(3 * n))})[:n]
    X = np.array([space.encode(a) for a in archs], dtype=float)
    y = normalise(np.array([toy_reward(space, a.choices) for a in archs]), "standardize")
    return space, X, y


def _fitted_gp(n: int = 40, kind: str = "matern52") -> tuple[GaussianProcess, np.ndarray, np.ndarray]:
    space, X, y = _toy_data(n)
    gp = GaussianProcess(encoding_groups(space, ard=True), kind)
    gp.fit(X, y)
    return gp, X, y


@pytest.mark.parametrize("kind", ["matern52", "rbf"])
def test_gp_interpolates_observed_points_with_small_noise(kind: str) -> None:
    gp, X, y = _fitted_gp(kind=kind)
    assert gp.noise < 0.05  # the toy objective is noiseless: the fit must find a small noise
    mean, std = gp.predict(y, X)
    assert np.max(np.abs(mean - y)) < 0.15
    assert np.all(std < 0.3)


def test_gp_is_uncertain_away_from_data_and_predicts_unseen_points() -> None:
    gp, X, y = _fitted_gp(60)
    space, X_test, y_test = _toy_data(200, seed=1)
    seen = {tuple(r) for r in X}
    fresh = np.array([tuple(r) not in seen for r in X_test])
    mean, std = gp.predict(y, X_test[fresh])
    _, std_seen = gp.predict(y, X)
    assert std.mean() > 2 * std_seen.mean()
    # the toy reward is almost additive in the decisions: 60 points predict unseen ones well
    raw = np.array([toy_reward(space, c) for c in _choices(space, X_test[fresh])])
    assert stats.spearmanr(mean, raw).statistic > 0.8


def _choices(space, X: np.ndarray) -> list[tuple[int, ...]]:
    sizes = np.cumsum([0] + [d.n_choices for d in space.decisions])
    return [tuple(int(np.argmax(row[a:b])) for a, b in zip(sizes[:-1], sizes[1:])) for row in X]


@pytest.mark.parametrize("kind, ard, additive", [("matern52", True, False), ("rbf", True, False),
                                                 ("matern52", False, False), ("matern52", True, True)])
def test_marginal_likelihood_gradient_matches_finite_differences(kind: str, ard: bool, additive: bool) -> None:
    space, X, y = _toy_data(30)
    gp = GaussianProcess(encoding_groups(space, ard=ard), kind, additive=additive)
    D = gp._group_distances(X)
    gp._init_prior(D)
    theta = gp.prior_mean + np.random.default_rng(3).normal(0.0, 0.3, len(gp.prior_mean))
    value = lambda t: gp._neg_log_posterior(t, X, y)[0]  # noqa: E731
    grad = lambda t: gp._neg_log_posterior(t, X, y)[1]  # noqa: E731
    assert optimize.check_grad(value, grad, theta) < 1e-4 * max(1.0, np.linalg.norm(grad(theta)))


@pytest.mark.parametrize("additive", [False, True])
def test_rank_one_extension_equals_full_cholesky(additive: bool) -> None:
    space, X, y = _toy_data(30)
    gp = GaussianProcess(encoding_groups(space, ard=True), additive=additive)
    gp.fit(X, y)
    space, extra, _ = _toy_data(40, seed=5)
    seen = {tuple(r) for r in X}
    extra = np.array([r for r in extra if tuple(r) not in seen][:5])
    for x in extra:
        assert gp.extend(x) is not None
    full = linalg.cholesky(gp.kernel(gp.X, gp.X) + (gp.noise + 1e-8) * np.eye(gp.n), lower=True)
    np.testing.assert_allclose(gp.L, full, atol=1e-8)
    gp.truncate(30)
    np.testing.assert_allclose(gp.L, full[:30, :30], atol=1e-8)


def test_additive_terms_generalise_an_additive_objective_from_few_points() -> None:
    # NB201 cells scored by per-(edge, operation) effects: 15 observations, then rank 2,000 unseen cells
    space = nf.create_space("nb201")
    rng = np.random.default_rng(1)
    effects = rng.normal(size=(6, 5))
    archs = list({a: None for a in (space.sample(rng) for _ in range(2100))})
    X = np.array([space.encode(a) for a in archs], dtype=float)
    f = np.array([effects[np.arange(6), a.choices].sum() for a in archs])
    rho = {}
    for additive in (False, True):
        gp = GaussianProcess(encoding_groups(space, ard=True), additive=additive)
        gp.fit(X[:15], normalise(f[:15], "standardize"))
        mean, _ = gp.predict(normalise(f[:15], "standardize"), X[15:])
        rho[additive] = stats.spearmanr(mean, f[15:]).statistic
        assert gp.signal == pytest.approx(gp.kernel(X[:1], X[:1])[0, 0])  # the prior variance is the diagonal
    assert rho[True] > 0.75 and rho[True] > rho[False] + 0.3  # measured 0.81 against 0.37


def test_ard_gives_one_length_scale_per_decision() -> None:
    space = nf.create_space("toy")
    groups = encoding_groups(space, ard=True)
    assert len(groups) == space.encoding_size and groups.max() + 1 == len(space.decisions)
    assert set(encoding_groups(space, ard=False)) == {0}


def test_rank_normalisation_ignores_scale_and_outliers() -> None:
    y = np.array([91.0, 90.0, 10.0, 89.5, 91.5])
    np.testing.assert_allclose(normalise(y, "rank"), normalise(1000 * y - 7, "rank"))
    np.testing.assert_allclose(normalise(y, "standardize"), normalise(3 * y + 2, "standardize"))
    assert np.argmax(normalise(y, "rank")) == 4 and abs(normalise(y, "rank").mean()) < 1e-12


def _with_block(X: np.ndarray, seed: int = 0) -> np.ndarray:
    """X followed by a one-hot block of 3 columns (a feature beyond the one-hot encoding)."""
    return np.hstack([X, np.eye(3)[np.random.default_rng(seed).integers(0, 3, len(X))]])


def test_extra_terms_on_appended_columns_have_the_right_gradient_extension_and_prior() -> None:
    from nasforge.predictors.gp import DotTerm

    space, X, y = _toy_data(30)
    d = X.shape[1]
    terms = [DotTerm(d, d + 3, 1, prior=0.1), DotTerm(d, d + 3, 2, prior=0.1)]
    gp = GaussianProcess(encoding_groups(space, ard=True), additive=True, terms=terms)
    assert gp.n_extra == 4 and gp.width == d + 3
    Xb = _with_block(X)
    gp._init_prior(gp._group_distances(Xb))
    assert np.allclose(gp.prior_mean[gp.n_groups + 2 : gp.n_groups + 4], np.log(0.1))
    theta = gp.prior_mean + np.random.default_rng(3).normal(0.0, 0.3, len(gp.prior_mean))
    value = lambda t: gp._neg_log_posterior(t, Xb, y)[0]  # noqa: E731
    grad = lambda t: gp._neg_log_posterior(t, Xb, y)[1]  # noqa: E731
    assert optimize.check_grad(value, grad, theta) < 1e-4 * max(1.0, np.linalg.norm(grad(theta)))
    gp.fit(Xb[:25], y[:25])
    for x in Xb[25:]:
        assert gp.extend(x) is not None
    full = linalg.cholesky(gp.kernel(gp.X, gp.X) + (gp.noise + 1e-8) * np.eye(gp.n), lower=True)
    np.testing.assert_allclose(gp.L, full, atol=1e-8)
    assert gp.signal == pytest.approx(gp.kernel(Xb[:1], Xb[:1])[0, 0])


def test_an_extra_term_adds_its_block_covariance_and_nothing_else() -> None:
    """The stationary kernel and the one-hot terms see the one-hot columns only; a term on appended columns adds
    ``v * c`` of those columns, and the kernel is the plain one's plus exactly that."""
    from nasforge.predictors.gp import DotTerm, _cosine

    space, X, y = _toy_data(30)
    d = X.shape[1]
    Xb = _with_block(X, seed=4)
    gp = GaussianProcess(encoding_groups(space, ard=True), additive=True, terms=[DotTerm(d, d + 3, 1)])
    gp.fit(Xb, y)
    v = np.exp(gp.fitted_theta[gp.n_groups + 2])
    plain = GaussianProcess(encoding_groups(space, ard=True), additive=True)
    plain.theta = np.delete(gp.fitted_theta, gp.n_groups + 2)
    block = _cosine(Xb[:, d:], Xb[:, d:])
    assert block.min() == 0.0 and block.max() == 1.0  # the block separates some inputs and joins others
    np.testing.assert_allclose(gp.kernel(Xb, Xb), plain.kernel(X, X) + v * block, atol=1e-12)


def test_single_threaded_blas_also_limits_scipys_own_openblas_loaded_later() -> None:
    """SciPy is imported where used, after the first search step has set up the limit; its wheels bring their own
    OpenBLAS, which must be held to one thread too. In a fresh process, as a command starts."""
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import sys
        import nasforge
        from nasforge.predictors.gp import single_threaded_blas
        assert "scipy.linalg" not in sys.modules
        with single_threaded_blas():  # the first ask of a search
            pass
        import scipy.linalg  # the first fit
        from threadpoolctl import threadpool_info
        with single_threaded_blas():
            blas = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
        assert len(blas) >= 1, blas
        assert all(n == 1 for _, n in blas), blas
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
