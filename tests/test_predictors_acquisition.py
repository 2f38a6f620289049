"""Expected improvement and the candidate pool's growable matrix (`nasforge.predictors.acquisition`)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from nasforge.predictors.acquisition import (
    GrowableMatrix,
    expected_improvement,
    log_expected_improvement,
)


def test_expected_improvement_is_positive_and_grows_with_the_mean() -> None:
    means = np.linspace(-3.0, 3.0, 13)
    ei = expected_improvement(means, np.full(13, 0.5), best=1.0)
    assert np.all(ei > 0)
    assert np.all(np.diff(ei) > 0)
    # at equal mean below the incumbent, more uncertainty means more expected improvement
    assert np.all(np.diff(expected_improvement(np.zeros(5), np.linspace(0.1, 2.0, 5), best=1.0)) > 0)


def test_expected_improvement_matches_the_closed_form_and_monte_carlo() -> None:
    mean, std, best = np.array([0.3, 0.2, 2.0]), np.array([1.0, 0.4, 0.7]), 0.8
    z = (mean - best) / std
    closed = (mean - best) * stats.norm.cdf(z) + std * stats.norm.pdf(z)
    np.testing.assert_allclose(expected_improvement(mean, std, best), closed, rtol=1e-10)
    draws = np.random.default_rng(0).normal(mean, std, size=(200_000, 3))
    np.testing.assert_allclose(np.maximum(draws - best, 0).mean(0), closed, rtol=0.03)


def test_log_expected_improvement_stays_finite_and_ordered_far_below_the_incumbent() -> None:
    # plain EI underflows to 0 here; the log form still ranks candidates
    log_ei = log_expected_improvement(np.array([-60.0, -50.0, -40.0, -2.0]), np.ones(4), best=0.0)
    assert np.all(np.isfinite(log_ei)) and np.all(np.diff(log_ei) > 0)
    z = np.linspace(-30.0, -1.0, 30)  # continuity across the branches of the stable formula
    assert np.all(np.diff(log_expected_improvement(z, np.ones(30), best=0.0)) > 0)


def test_growable_matrix_appends_removes_and_pickles_only_its_content() -> None:
    import copy
    import pickle

    m = GrowableMatrix()
    m.assign(np.arange(6.0).reshape(2, 3))
    m.append_cols(np.array([[10.0] * 20, [20.0] * 20]))
    m.append_row(np.arange(23.0))
    m.remove_col(0)  # the last column moves into its place
    expected = np.vstack([np.hstack([np.arange(6.0).reshape(2, 3), [[10.0] * 20, [20.0] * 20]]), np.arange(23.0)])
    expected[:, 0] = expected[:, -1]
    np.testing.assert_array_equal(m.view, expected[:, :-1])
    restored = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(restored.view, m.view)
    assert restored.data.size == m.view.size < m.data.size
    restored.append_row(np.ones(22))  # a restored matrix keeps growing
    assert copy.deepcopy(restored).view.shape == (4, 22)
