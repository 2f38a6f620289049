"""Perturbation-based selection: operations by the score lost when each is removed, inputs by their edges' loss."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.evaluators.perturbation import select_inputs, select_operations
from nasforge.report.policy import policy_report
from nasforge.run.rundir import derived_pick
from nasforge.strategies.darts import Darts


def _config(strategy: str, space: str = "nb201", budget: int = 16, **evaluator_args) -> nf.RunConfig:
    model_args = {"nb201": {"C": 4, "N": 1}, "darts": {"C": 4, "layers": 3}}[space]
    space_args = {"darts": {"nodes": 3, "ops": "enas"}}.get(space, {})  # small cells: every selection step runs
    return nf.RunConfig(space=space, space_args=space_args, evaluator="supernet", strategy=strategy, budget=budget,
                        seed=0, dataset="digits",
                        evaluator_args={"model_args": model_args, "lr": 0.05, "derive_batch": 64, "resolution": 4,
                                        **evaluator_args})


def _each(score: Callable[[torch.Tensor], float]) -> Callable[[list[torch.Tensor]], list[float]]:
    """The selections' scorer of several weightings at once, from a scorer of one."""
    return lambda ws: [score(w) for w in ws]


def test_each_edge_keeps_the_operation_whose_removal_costs_most() -> None:
    space = nf.create_space("nb201")
    rng = np.random.default_rng(0)
    weights = torch.softmax(torch.tensor(rng.normal(size=(6, 5)), dtype=torch.float32), dim=-1)
    value = torch.tensor(rng.uniform(0, 1, size=(6, 5)), dtype=torch.float32)
    value[:, 0] = 0.0  # "none" computes nothing: removing it costs nothing
    seen: list[torch.Tensor] = []

    def score(w: torch.Tensor) -> float:  # additive: removing (d, k) costs w[d, k] * value[d, k]
        seen.append(w.clone())
        return float((w * value).sum())

    fixed, steps = select_operations(space, weights, range(6), _each(score), np.random.default_rng(1))
    expected = (weights * value).argmax(1)
    assert fixed.argmax(1).tolist() == expected.tolist() and torch.equal(fixed.sum(1), torch.ones(6))
    index = {d.name: i for i, d in enumerate(space.decisions)}
    order = [index[str(s["decision"])] for s in steps]
    assert [s["kept"] for s in steps] == [space.decisions[d].label(int(expected[d])) for d in order]
    assert sorted(order) == list(range(6)) and order == np.random.default_rng(1).permutation(6).tolist()
    # the edges decided before are one-hot when a later edge is scored (its removals see the discrete choices)
    first, second = order[0], order[1]
    later = seen[6 + 1]  # the first removal of the second edge (each edge: its base score, then 5 removals)
    assert torch.equal(later[first], torch.nn.functional.one_hot(expected[first], 5).float())
    assert torch.equal(later[second, 1:], weights[second, 1:]) and later[second, 0] == 0
    # removing "none" (value 0) leaves the score before the edge; every other removal lowers it
    assert all(s["removed"][0] == pytest.approx(s["base"]) and max(s["removed"][1:]) < s["base"] for s in steps)
    again, _ = select_operations(space, weights, range(6), _each(score), np.random.default_rng(1))
    assert torch.equal(again, fixed)


def test_none_is_kept_only_where_every_other_operation_hurts() -> None:
    space = nf.create_space("nb201")
    weights = torch.full((6, 5), 0.2)
    value = torch.ones(6, 5)
    value[:, 0] = 0.0  # "none" adds nothing to the mixture
    value[2, 1:] = -1.0  # on edge 2 every real operation lowers the score

    fixed, _ = select_operations(space, weights, range(6), _each(lambda w: float((w * value).sum())),
                                 np.random.default_rng(0))
    labels = [space.decisions[d].label(int(k)) for d, k in enumerate(fixed.argmax(1))]
    assert labels[2] == "none" and "none" not in labels[:2] + labels[3:]


def test_each_node_keeps_the_inputs_whose_edges_cost_most_to_remove() -> None:
    space = nf.create_space("darts")
    governed = Darts(space).policy.governed
    rng = np.random.default_rng(0)
    weights = torch.rand(len(space.decisions), max(d.n_choices for d in space.decisions), generator=torch.Generator().manual_seed(0))
    strength = torch.tensor(rng.uniform(0, 1, size=len(space.decisions)), dtype=torch.float32)

    def score(w: torch.Tensor) -> float:  # additive over edges: removing an edge costs its strength x its row's sum
        return float((w.sum(1) * strength).sum())

    chosen, pruned, steps = select_inputs(space, weights, governed, _each(score))
    assert set(chosen) == set(governed) and len(steps) == sum(len(options) > 1 for options in governed.values())
    for s, options in governed.items():
        cost = [float(sum(strength[e] * weights[e].sum() for e in edges)) for edges in options]
        assert chosen[s] == int(np.argmax(cost))
        dropped = {e for edges in options for e in edges} - set(options[chosen[s]])
        assert all(pruned[e].sum() == 0 for e in dropped) and all(pruned[e].sum() > 0 for e in options[chosen[s]])


def test_a_darts_search_derives_by_perturbation_and_picks_it(tmp_path: Path) -> None:
    cfg = _config("darts")
    parts = nf.build_components(cfg)
    _, result = nf.search(cfg, tmp_path / "run", components=parts)
    derived = result["derived"]
    perturbed = derived["perturbed"]
    arch = parts.space.parse(perturbed["arch"])
    assert len(perturbed["steps"]) == 6 and all(len(s["removed"]) == 5 for s in perturbed["steps"])
    kept = {s["decision"]: s["kept"] for s in perturbed["steps"]}
    assert kept == {d.name: d.label(c) for d, c in zip(parts.space.decisions, arch.choices)}
    for s in perturbed["steps"]:  # the kept operation is the one whose removal scored lowest
        d = next(d for d in parts.space.decisions if d.name == s["decision"])
        assert s["kept"] == d.label(int(np.argmin(s["removed"])))
    assert 0 <= perturbed["score"] <= 100
    assert derived_pick(derived) == perturbed and "sampled_best" in derived and "most_likely" in derived
    written = [p.name for p in policy_report(tmp_path / "run", tmp_path / "plots")]
    assert "perturbation.png" in written and (tmp_path / "plots" / "perturbation.png").stat().st_size > 0


def test_gdas_derives_by_sampling_unless_told_and_black_box_strategies_are_refused() -> None:
    gdas = nf.build_components(_config("gdas", budget=8))
    assert not gdas.evaluator.perturbs(gdas.strategy)
    told = nf.build_components(_config("gdas", budget=8, derive_method="perturb"))
    assert told.evaluator.perturbs(told.strategy)
    sample = nf.build_components(_config("darts", budget=8, derive_method="sample"))
    assert not sample.evaluator.perturbs(sample.strategy)
    with pytest.raises(ConfigError, match="evaluator.derive_method: perturb.*'enas'.*darts, gdas"):
        nf.build_components(_config("enas", budget=8, derive_method="perturb"))
    with pytest.raises(ConfigError, match="derive_method must be one of auto, sample, perturb"):
        nf.build_components(_config("darts", budget=8, derive_method="greedy"))


def test_the_darts_space_selects_operations_then_inputs() -> None:
    parts = nf.build_components(_config("darts", space="darts", budget=8, derive_batch=16))
    evaluator, space = parts.evaluator, parts.space
    batches = evaluator.derive_batches()
    out = evaluator.perturbation_derive(parts.strategy, batches, seed=0)
    arch = space.parse(out["arch"])
    edges = {d for rows in evaluator.supernet.edge_decisions().values() for d in rows}  # cells of a kind share them
    governed = parts.strategy.policy.governed
    choosing = [s for s, options in governed.items() if len(options) > 1]
    assert len(out["steps"]) == len(edges) + len(choosing)
    kept = {s["decision"]: s["kept"] for s in out["steps"]}
    for s in choosing:  # every node's inputs are the pair its step kept
        d = space.decisions[s]
        assert d.label(arch.choices[s]) == kept[d.name]


def test_fine_tuning_between_decisions_trains_the_fixed_mixture_and_puts_the_weights_back() -> None:
    parts = nf.build_components(_config("darts", budget=8, derive_tune_steps=3))
    evaluator = parts.evaluator
    before = {k: v.clone() for k, v in evaluator.supernet.state_dict().items()}
    trained: list[torch.Tensor] = []
    step = evaluator._tuner  # count the weight steps and see which mixture they train

    def counting(decisions: int):
        tune = step(decisions)

        def wrapped(weights: torch.Tensor) -> None:
            trained.append(weights.clone())
            tune(weights)
        return wrapped

    evaluator._tuner = counting  # type: ignore[method-assign]
    batches = evaluator.derive_batches()
    generator = evaluator.generator.get_state()
    out = evaluator.perturbation_derive(parts.strategy, batches, seed=0)
    assert out["tune_steps"] == 3 and len(trained) == 6  # after each of the 6 edges is fixed
    assert [int((w.max(1).values == 1).sum()) for w in trained] == list(range(1, 7))  # one more edge each time
    after = evaluator.supernet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # deriving leaves the search's weights alone
    assert torch.equal(evaluator.generator.get_state(), generator)
    again = evaluator.perturbation_derive(parts.strategy, batches, seed=0)
    assert again["arch"] == out["arch"] and again["steps"] == out["steps"]  # and repeats itself


def test_fine_tuning_moves_the_weights_it_trains() -> None:
    parts = nf.build_components(_config("darts", budget=8, derive_tune_steps=2))
    evaluator = parts.evaluator
    tune = evaluator._tuner(3)
    assert tune is not None
    weights = parts.strategy.policy.weights().detach()
    before = {k: v.clone() for k, v in evaluator.supernet.state_dict().items()}
    tune(weights)
    assert not all(torch.equal(before[k], v) for k, v in evaluator.supernet.state_dict().items())
    assert nf.build_components(_config("darts", budget=8)).evaluator._tuner(3) is None  # off by default
    with pytest.raises(ConfigError, match="derive_tune_steps must be >= 0"):
        nf.build_components(_config("darts", budget=8, derive_tune_steps=-1))
