"""The `bo` strategy: candidate pool, incremental updates, batches, speed (its GP and EI: test_predictors_*)."""

from __future__ import annotations

import numpy as np
import pytest

import nasforge as nf
from conftest import shared_file
from nasforge.predictors.acquisition import log_expected_improvement
from nasforge.result import Result
from nasforge.run.loop import run_search
from nasforge.strategies.bo import BayesianOptimisation, BOConfig
from nasforge.testing.toy import ToyEvaluator, toy_optimum


# ------------------------------------------------------------------ the strategy
def _toy_strategy(seed: int = 0, **config) -> tuple[BayesianOptimisation, ToyEvaluator]:
    space = nf.create_space("toy")
    return BayesianOptimisation(space, BOConfig(**config), seed), ToyEvaluator(space)


def _tell_all(strategy: BayesianOptimisation, evaluator: ToyEvaluator, archs) -> None:
    strategy.tell(archs, [evaluator.evaluate(a) for a in archs])


@pytest.mark.parametrize("batch", ["believer", "liar"])
def test_batch_proposals_are_distinct_and_new(batch: str) -> None:
    strategy, evaluator = _toy_strategy(batch=batch)
    _tell_all(strategy, evaluator, strategy.ask(12))
    assert strategy.fitted
    seen = set(strategy.obs_archs)
    n_obs = strategy.gp.n
    batch_archs = strategy.ask(8)
    assert len(set(batch_archs)) == 8 and not seen & set(batch_archs)
    assert strategy.gp.n == n_obs and strategy.pool_V.rows == n_obs  # fantasies were removed
    _tell_all(strategy, evaluator, batch_archs)
    assert strategy.gp.n == n_obs + 8


def test_batch_of_one_equals_single_ask() -> None:
    a, evaluator = _toy_strategy(seed=4)
    b, _ = _toy_strategy(seed=4)
    for strategy in (a, b):
        _tell_all(strategy, evaluator, strategy.ask(15))
    assert a.ask(1) == b.ask(3)[:1]


def test_never_repeats_while_unseen_architectures_exist() -> None:
    space = nf.create_space("toy")
    strategy = BayesianOptimisation(space, seed=1)
    record = run_search(space, strategy, ToyEvaluator(space), 120, seed=1)
    archs = [t.arch for t in record.trials]
    assert len(set(archs)) == len(archs)


def test_repeated_and_failed_results_do_not_break_the_model() -> None:
    strategy, evaluator = _toy_strategy()
    archs = strategy.ask(12)
    _tell_all(strategy, evaluator, archs)
    n = strategy.gp.n
    strategy.tell(archs[:2], [Result(evaluator.evaluate(a).reward + 1.0) for a in archs[:2]])
    strategy.tell(strategy.ask(2), [Result.failure("boom")] * 2)
    assert strategy.gp.n == n and strategy.obs_count[:2] == [2, 2]
    assert len(strategy.ask(3)) == 3


def test_results_for_unasked_architectures_leave_the_pool() -> None:
    strategy, evaluator = _toy_strategy(seed=3, exhaustive=0)
    _tell_all(strategy, evaluator, strategy.ask(12))
    strategy.ask(1)
    foreign = strategy.pool_archs[:3]
    _tell_all(strategy, evaluator, foreign)
    assert not set(foreign) & set(strategy.pool_archs)
    assert strategy.pool_V.view.shape == (strategy.gp.n, len(strategy.pool_archs))
    assert not set(foreign) & set(strategy.ask(10))


def test_pool_stays_bounded_and_consistent() -> None:
    space = nf.create_space("toy")
    strategy = BayesianOptimisation(space, BOConfig(pool_size=40, random=20, mutations=20, exhaustive=0), seed=2)
    run_search(space, strategy, ToyEvaluator(space), 60, seed=2)
    assert len(strategy.pool_archs) <= 40 + 40 // 4
    assert strategy.pool_V.view.shape == (strategy.gp.n, len(strategy.pool_archs))
    assert strategy.pool_keys == [space.key(a) for a in strategy.pool_archs]
    assert not set(strategy.pool_archs) & set(strategy.obs_archs)
    fresh = strategy.gp.solve_lower(strategy.gp.kernel(strategy.gp.X, strategy.pool_C))
    np.testing.assert_allclose(strategy.pool_V.view, fresh, atol=1e-6)  # incremental rows stay exact


def test_small_finite_space_is_scored_whole_and_proposes_the_best_unseen_by_ei() -> None:
    strategy, evaluator = _toy_strategy(seed=5)
    assert strategy.exhaustive and not _toy_strategy(exhaustive=100)[0].exhaustive
    _tell_all(strategy, evaluator, strategy.ask(12))
    for _ in range(3):  # past the first ask the candidates' V grows incrementally
        _tell_all(strategy, evaluator, strategy.ask(1))
    space = strategy.space
    unseen = [a for a in space.enumerate() if strategy.sampler.is_new(a)]
    z = strategy._targets()
    mean, std = strategy.gp.predict(z, strategy.encode(unseen))
    acq = log_expected_improvement(mean, std, float(z.max()), strategy.config.xi)
    expected = unseen[int(np.argmax(acq))]
    assert strategy.ask(1) == [expected]
    whole = strategy._all
    assert whole is not None and not whole.open[whole.index[space.key(expected)]]
    fresh = strategy.gp.solve_lower(strategy.gp.kernel(strategy.gp.X, whole.C))
    np.testing.assert_allclose(whole.V.view, fresh, atol=1e-6)
    assert whole.open.sum() == len(unseen) - 1 == space.size - len(strategy.sampler.seen)


def test_whole_space_batch_and_foreign_results() -> None:
    strategy, evaluator = _toy_strategy(seed=6)
    _tell_all(strategy, evaluator, strategy.ask(12))
    batch = strategy.ask(5)
    assert len(set(batch)) == 5 and not set(batch) & set(strategy.obs_archs)
    assert strategy.gp.n == 12 and strategy._all is not None and strategy._all.V.rows == 12
    foreign = [a for a in strategy.space.enumerate() if strategy.sampler.is_new(a)][:3]
    _tell_all(strategy, evaluator, batch + foreign)
    assert not set(foreign + batch) & set(strategy.ask(20))


def test_local_turns_propose_the_best_unseen_neighbour_of_the_incumbent_by_posterior_mean() -> None:
    strategy, evaluator = _toy_strategy(seed=7, local_every=1)
    _tell_all(strategy, evaluator, strategy.ask(12))
    space = strategy.space
    for _ in range(4):
        means = np.asarray(strategy.obs_sum) / np.asarray(strategy.obs_count)
        incumbent = strategy.obs_archs[int(np.argmax(means))]
        fresh = [a for a in space.neighbours(incumbent) if strategy.sampler.is_new(a)]
        mean, _ = strategy.gp.predict(strategy._targets(), strategy.encode(fresh))
        (arch,) = strategy.ask(1)
        assert arch == fresh[int(np.argmax(mean))]
        _tell_all(strategy, evaluator, [arch])
    # with a pool instead of the whole space too
    pooled, _ = _toy_strategy(seed=7, local_every=1, exhaustive=0)
    _tell_all(pooled, evaluator, pooled.ask(12))
    best = pooled.obs_archs[int(np.argmax(pooled.obs_sum))]
    assert pooled.ask(1)[0] in space.neighbours(best)


def test_finds_the_toy_optimum_much_sooner_than_random_search() -> None:
    space = nf.create_space("toy")
    best = toy_optimum(space)
    needed = []
    for seed in (0, 1):
        record = run_search(space, BayesianOptimisation(space, seed=seed), ToyEvaluator(space), 150, seed=seed)
        archs = [t.arch for t in record.trials]
        assert best in archs
        needed.append(archs.index(best) + 1)
    assert np.mean(needed) < 100  # random search needs ~1,500 on average


def test_median_overhead_stays_low_over_a_300_evaluation_run() -> None:
    space = nf.create_space("toy")
    record = run_search(space, BayesianOptimisation(space, seed=0), ToyEvaluator(space), 300, seed=0)
    overheads = np.array([t.overhead_s for t in record.trials])
    # typically ~3 ms; the bound is generous so that a loaded 2-core machine does not fail it
    assert np.median(overheads) < 0.05


def test_config_rejects_unknown_options() -> None:
    with pytest.raises(ValueError):
        BOConfig(kernel="linear")
    with pytest.raises(ValueError):
        BOConfig(batch="random")
    with pytest.raises(ValueError):
        BOConfig(initial=1)


def test_registered_with_typed_overrides() -> None:
    strategy = nf.create_strategy("bo", nf.create_space("toy"), 0, refit_every="5", kernel="rbf")
    assert isinstance(strategy, BayesianOptimisation)
    assert strategy.config.refit_every == 5 and strategy.gp.kind == "rbf"


def test_nb201_finds_a_top_architecture_within_100_evaluations() -> None:
    path = shared_file("nb201-cifar10.csv")
    cfg = nf.RunConfig(space="nb201", evaluator="tabular", strategy="bo", budget=100, seed=0, benchmark=str(path))
    _, res = nf.search(cfg)
    # random search averages ~93.6 after 100 evaluations; the optimum is 94.37
    assert res["history"][-1]["incumbent_test_accuracy"] > 94.2


def test_a_stalled_search_climbs_around_the_next_best_cells_in_turn() -> None:
    strategy, evaluator = _toy_strategy(seed=7, local_every=1, stall=15, niche=0)
    _tell_all(strategy, evaluator, strategy.ask(12))
    space, worst = strategy.space, min(strategy.obs_sum)

    def parents() -> list:
        means = np.asarray(strategy.obs_sum) / np.asarray(strategy.obs_count)
        ranked = [strategy.obs_archs[i] for i in np.argsort(-means, kind="stable")]
        return [a for a in ranked if any(strategy.sampler.is_new(b) for b in space.neighbours(a))]

    def best_fresh_neighbour(parent):
        fresh = [a for a in space.neighbours(parent) if strategy.sampler.is_new(a)]
        mean, _ = strategy.gp.predict(strategy._targets(), strategy.encode(fresh))
        return fresh[int(np.argmax(mean))]

    # results that never beat the incumbent: the first `stall` local steps still climb around it
    assert strategy.n_since_best < 12
    while strategy.n_since_best < 15:
        expected = best_fresh_neighbour(parents()[0])
        (arch,) = strategy.ask(1)
        assert arch == expected
        strategy.tell([arch], [Result(worst - 1.0)])
    # then around the 2nd, 3rd, ... best cells, one per local step
    for k in (1, 2, 3):
        expected = best_fresh_neighbour(parents()[k])
        (arch,) = strategy.ask(1)
        assert arch == expected and arch not in space.neighbours(parents()[0])
        strategy.tell([arch], [Result(worst - 1.0)])
    # an improvement ends the stall: back to the incumbent's neighbourhood
    (arch,) = strategy.ask(1)
    strategy.tell([arch], [Result(max(strategy.obs_sum) + 1.0)])
    assert strategy.n_since_best == 0
    expected = best_fresh_neighbour(parents()[0])
    assert strategy.ask(1)[0] == expected


def test_operation_counts_learn_that_one_skip_helps_and_two_hurt() -> None:
    """NB201 cells scored by how many skip connections they have (one: +1, two or more: -1) plus small per-edge
    effects: from 40 observations the model with count terms ranks 2,000 unseen cells far better (measured
    Spearman 0.91 / 0.96 against 0.51 / 0.46 without, seeds 0 and 1), and the non-linearity is what it learns."""
    from scipy import stats

    from nasforge.predictors.gp import normalise

    space = nf.create_space("nb201")
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        archs = list({a: None for a in (space.sample(rng) for _ in range(2100))})
        effects = 0.3 * rng.normal(size=(6, 5))
        skips = np.array([sum(c == 1 for c in a.choices) for a in archs])
        f = (skips == 1) - 1.0 * (skips >= 2) + np.array([effects[np.arange(6), a.choices].sum() for a in archs])
        rho = {}
        for prior in (0.0, 0.1):
            # the scores count skips on every edge, cut off or not: the terms alone, on the cells as written
            strategy = BayesianOptimisation(space, BOConfig(count_prior=prior, effective=False))
            gp, X, y = strategy.new_gp(), strategy.encode(archs), normalise(f[:40], "rank")
            gp.fit(X[:40], y)
            mean, _ = gp.predict(y, X[40:])
            rho[prior] = stats.spearmanr(mean, f[40:]).statistic
            if prior:
                assert X.shape[1] == space.encoding_size + 35
                assert mean[skips[40:] == 1].mean() > mean[skips[40:] == 2].mean() + 1.0
        print(f"seed {seed}: Spearman with the count terms {rho[0.1]:.2f}, without {rho[0.0]:.2f}")  # pytest -s
        assert rho[0.1] > 0.85 and rho[0.1] > rho[0.0] + 0.3, rho


def test_count_prior_zero_is_the_one_hot_model_and_a_negative_one_is_refused() -> None:
    space = nf.create_space("nb201")
    strategy = BayesianOptimisation(space, BOConfig(count_prior=0))
    assert strategy.blocks == [] and strategy.gp.n_extra == 2
    assert strategy.encode([space.sample(np.random.default_rng(0))]).shape == (1, space.encoding_size)
    with pytest.raises(ValueError, match="count_prior"):
        BOConfig(count_prior=-1)


def test_cells_of_one_effective_form_are_one_input_of_the_model() -> None:
    """NB201 cells that differ only in operations cut off from the output get the same encoding, so an unseen
    one is predicted as its observed twin, with no more uncertainty than the noise; without ``effective`` they
    are different inputs."""
    space = nf.create_space("nb201")
    seen = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    twin = space.parse("|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    rng = np.random.default_rng(0)
    others = [a for a in (space.sample(rng) for _ in range(30)) if space.effective(a) != space.effective(seen)]
    for effective in (True, False):
        strategy = BayesianOptimisation(space, BOConfig(effective=effective, initial=10), seed=0)
        X = strategy.encode([seen, twin])
        assert np.array_equal(X[0], X[1]) == effective
        strategy.tell([seen, *others], [Result(95.0), *(Result(float(r)) for r in rng.uniform(10, 90, len(others)))])
        mean, std = strategy.gp.predict(strategy._targets(), strategy.encode([seen, twin]))
        if effective:
            assert mean[1] == pytest.approx(mean[0]) and std[1] == pytest.approx(std[0])
        else:
            assert std[1] > std[0] + 0.05


def test_local_steps_skip_neighbours_that_compute_an_observed_cell() -> None:
    """A neighbour that differs from the incumbent only on a cut-off edge is the same network: with
    ``effective`` it has the incumbent's posterior mean, often the largest, yet says nothing new, so local
    steps take the best neighbour of another form."""
    space = nf.create_space("nb201")
    seen = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    rng = np.random.default_rng(0)
    others = [a for a in (space.sample(rng) for _ in range(30)) if space.effective(a) != space.effective(seen)]
    strategy = BayesianOptimisation(space, BOConfig(initial=10, local_every=1), seed=0)
    scores = [Result(float(r)) for r in rng.uniform(10, 90, len(others))]
    strategy.tell([*others, seen], [*scores, Result(95.0)])  # the incumbent last: no stall yet
    twins = [a for a in space.neighbours(seen) if space.effective(a) == space.effective(seen)]
    assert len(twins) == 4  # the other operations on edge 1<-0, which feeds nothing
    for _ in range(6):
        (arch,) = strategy.ask(1)
        assert arch in space.neighbours(seen) and arch not in twins
        strategy.tell([arch], [Result(50.0)])  # worse: the incumbent stays
    # the filter is the only thing between them and the local steps
    plain = BayesianOptimisation(space, BOConfig(initial=10, local_every=1), seed=0)
    plain.tell([*others, seen], [*scores, Result(95.0)])
    mean, _ = plain.gp.predict(plain._targets(), plain.encode(twins + [strategy.obs_archs[-6]]))
    assert mean[:4].max() > mean[4]


@pytest.mark.parametrize("niche", [0.5, 0.0])
def test_a_stalled_search_climbs_first_from_the_best_cell_of_another_region(niche: float) -> None:
    """The runners-up next to the incumbent lie in the region the stalled model favours; with ``niche`` the
    first stalled local step climbs from the best cell at least half of the decisions away instead."""
    space = nf.create_space("nb201")
    incumbent, far = space.make([3, 3, 3, 3, 3, 3]), space.make([1, 1, 1, 3, 3, 3])
    near = [space.make([2, 3, 3, 3, 3, 3]), space.make([3, 2, 3, 3, 3, 3]), space.make([3, 3, 2, 3, 3, 3])]
    rng = np.random.default_rng(0)
    named = {space.effective(a) for a in [incumbent, far, *near]}
    others = [a for a in (space.sample(rng) for _ in range(20)) if space.effective(a) not in named]
    strategy = BayesianOptimisation(space, BOConfig(initial=10, local_every=1, stall=4, niche=niche), seed=0)
    strategy.tell([*others, incumbent], [*(Result(float(r)) for r in rng.uniform(10, 60, len(others))), Result(95.0)])
    strategy.tell([*near, far], [Result(90.0), Result(89.0), Result(88.0), Result(80.0)])
    assert strategy.n_since_best == strategy.config.stall  # the first stalled local step comes next
    (arch,) = strategy.ask(1)
    parent = far if niche else near[0]
    assert arch in space.neighbours(parent)
    assert (arch in space.neighbours(near[0])) == (not niche)


def test_niche_is_a_share_of_the_decisions() -> None:
    with pytest.raises(ValueError, match="niche"):
        BOConfig(niche=1.5)
