"""Training-free proxies: the measures, their reference-rank ensemble, the ``zerocost`` evaluator, the prior of
strategies' initial samples (``--prior``) and the proxy in one-shot derivation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.proxies import FLOOR, PROXIES, ReferenceRanks, jacobian_score, measure
from nasforge.strategies.base import Prior
from nasforge.testing.tables import write_nb201_table
from nasforge.testing.toy import toy_reward

TINY = {"model_args": {"C": 4, "N": 1}, "resolution": 4, "batch_size": 8}
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
CUT = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def _config(**args) -> nf.RunConfig:
    return nf.RunConfig(space="nb201", evaluator="zerocost", dataset="digits", evaluator_args={**TINY, **args})


def test_nwot_is_the_log_determinant_of_the_activation_pattern_kernel() -> None:
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    codes = (x > 0).double()
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T
    got = measure(nn.Sequential(nn.ReLU(), nn.Linear(40, 3)), [(x, torch.zeros(6, dtype=torch.long))], ["nwot"])
    sign, logdet = np.linalg.slogdet(kernel.numpy())
    assert sign > 0 and got["nwot"] == pytest.approx(logdet)


def test_nwot_counts_the_relu_of_every_edge_as_the_reference_network_does() -> None:
    """A cell's inputs read by several edges get one shared ReLU call in training; NASWOT hooks ReLU modules and
    must still see one pattern per edge (the reference NB201 network's ReLUConvBN)."""
    from nasforge.ops.cell_ops import DAGCell

    space = nf.create_space("nb201")
    torch.manual_seed(0)
    model = space.build(space.parse(ALL_CONV), num_classes=10, in_channels=3, C=4, N=1)
    cells = [m for m in model.modules() if isinstance(m, DAGCell)]
    assert any(cell.shared_relu for cell in cells)
    batch = [(torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1)), torch.zeros(8, dtype=torch.long))]
    shared = measure(model, batch, ["nwot"])["nwot"]
    assert any(cell.shared_relu for cell in cells)  # training keeps sharing after the measure
    for cell in cells:
        cell.shared_relu = set()  # every edge runs its own nn.ReLU, as in the reference implementation
    assert shared == pytest.approx(measure(model, batch, ["nwot"])["nwot"], rel=1e-9)


def test_jacov_prefers_uncorrelated_jacobians_and_floors_constant_ones() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 50))
    correlated = base + 0.1 * rng.normal(size=(8, 50))
    assert jacobian_score(rng.normal(size=(8, 50))) > jacobian_score(correlated)
    assert jacobian_score(np.zeros((8, 50))) == FLOOR


def test_every_proxy_of_a_cell_is_finite_and_deterministic_and_a_cut_cell_scores_lowest() -> None:
    evaluator = nf.create_evaluator(_config(proxy="nwot"), nf.create_space("nb201"))
    space = evaluator.space
    conv = evaluator.proxies(space.parse(ALL_CONV), PROXIES)
    assert list(conv) == list(PROXIES) and all(np.isfinite(v) and v > FLOOR for v in conv.values())
    assert evaluator.proxies(space.parse(ALL_CONV), PROXIES) == conv  # seeded: the same numbers again
    cut = evaluator.proxies(space.parse(CUT), PROXIES)
    assert cut["synflow"] == FLOOR and cut["jacov"] == FLOOR and cut["nwot"] < conv["nwot"]
    assert cut["params"] < conv["params"] and cut["flops"] < conv["flops"]


def test_reference_ranks_interpolate_extrapolate_and_clip() -> None:
    ranks = ReferenceRanks({"p": [0.0, 1.0, 1.0, 2.0, 3.0, 4.0]})
    assert ranks.rank("p", 0.0) == 0.0 and ranks.rank("p", 4.0) == 1.0
    assert ranks.rank("p", 1.0) == pytest.approx(0.3)  # the tie shares positions 1 and 2 (of 0..5)
    assert ranks.rank("p", 1.5) == pytest.approx(0.45)  # halfway between 0.3 and 0.6
    above = [ranks.rank("p", v) for v in (4.5, 5.0, 100.0)]
    assert 1.0 < above[0] < above[1] < above[2] == 2.0  # better than the whole reference: still ordered
    assert ranks.rank("p", -100.0) == -1.0
    two = ReferenceRanks({"a": [0.0, 1.0], "b": [0.0, 10.0]})
    assert two.score({"a": 1.0, "b": 0.0}, ["a", "b"]) == pytest.approx(0.5)


def test_the_ensemble_scores_an_architecture_alone_whatever_the_trial_seed(tmp_path: Path) -> None:
    table = write_nb201_table(tmp_path / "t.csv", rows=[(ALL_CONV, 80.0, 90.5, 60.0, 70.0, 90.1, 70.0),
                                                         (CUT, 9.0, 10.0, 9.0, 10.0, 10.0, 10.0)])
    cfg = nf.RunConfig(**{**vars(_config(reference=6)), "benchmark": str(table)})
    evaluator = nf.create_evaluator(cfg, nf.create_space("nb201"))
    arch = evaluator.space.parse(ALL_CONV)
    first, again = evaluator.evaluate(arch, seed=1), evaluator.evaluate(arch, seed=99)
    assert first.reward == again.reward
    assert -1 <= first.reward <= 2 and {"nwot", "synflow", "jacov"} <= set(first.metrics)
    # the table's test accuracy is reported, never the reward
    assert first.metrics["test_accuracy"] == 90.5
    other = nf.create_evaluator(_config(reference=6), evaluator.space)  # a fresh evaluator agrees
    assert other.evaluate(arch).reward == first.reward


def test_bad_settings_are_named() -> None:
    space = nf.create_space("nb201")
    with pytest.raises(ConfigError, match="proxy must be one of"):
        nf.create_evaluator(_config(proxy="fisher"), space)
    with pytest.raises(ConfigError, match="members"):
        nf.create_evaluator(_config(members=["nwot", "grasp"]), space)
    with pytest.raises(ConfigError, match="width"):
        nf.create_evaluator(_config(model_args={"width": 3}), space)
    with pytest.raises(ConfigError, match="no fidelity"):
        nf.create_evaluator(nf.RunConfig(**{**vars(_config()), "fidelity": 12}), space)


def test_a_training_free_search_runs_from_the_command_line(tmp_path: Path) -> None:
    from nasforge.cli import main

    out = tmp_path / "run"
    code = main(["-q", "search", "--space", "nb201", "--evaluator", "zerocost", "--dataset", "digits", "--strategy", "re",
                 "--budget", "6", "--seed", "1", "--out", str(out), "--set", "evaluator.proxy=synflow",
                 "--set", "evaluator.model_args={C: 4, N: 1}", "--set", "evaluator.resolution=4"])
    assert code == 0
    record = nf.load_record(out)[1]
    assert len(record.trials) == 6 and all(np.isfinite(t.reward) for t in record.trials)


# ----------------------------------------------------------------------------------------------- the prior
def _toy_prior(space, draws: int = 8) -> Prior:
    calls: list[int] = []

    def score(archs):
        calls.append(len(archs))
        return [toy_reward(space, a.choices) for a in archs]

    prior = Prior(score, draws)
    prior.calls = calls  # type: ignore[attr-defined]
    return prior


@pytest.mark.parametrize("name", ["re", "bo", "lanas"])
def test_the_prior_chooses_the_initial_samples_and_stays_out_of_the_state(name: str) -> None:
    space = nf.create_space("toy")
    plain, guided = nf.create_strategy(name, space, seed=0), nf.create_strategy(name, space, seed=0)
    guided.prior = _toy_prior(space)
    first = [toy_reward(space, a.choices) for a in plain.ask(4)]
    chosen = [toy_reward(space, a.choices) for a in guided.ask(4)]
    assert guided.prior.calls == [8, 8, 8, 8]  # each initial sample is the best of 8 draws
    assert np.mean(chosen) > np.mean(first)
    assert "prior" not in guided.state_dict()
    guided.save_state()  # the scoring function is never encoded


def test_a_prior_is_built_from_the_run_config_and_checked() -> None:
    cfg = nf.make_run_config({"space": "nb201", "strategy": "re", "evaluator": "zerocost", "dataset": "digits",
                              "evaluator_args": TINY, "prior": "zerocost", "prior_draws": 3},
                             ["prior.proxy=synflow", "prior.model_args={C: 4, N: 1}", "prior.resolution=4"])
    assert cfg.prior_args["proxy"] == "synflow"
    parts = nf.build_components(cfg)
    assert parts.strategy.prior is not None and parts.strategy.prior.draws == 3
    archs = parts.strategy.ask(2)
    again = nf.build_components(cfg).strategy.ask(2)
    assert archs == again  # the prior's scores are deterministic: a resumed search replays them
    with pytest.raises(ConfigError, match="cannot serve as a prior"):
        nf.build_components(nf.RunConfig(**{**vars(cfg), "prior": "train"}))
    with pytest.raises(ConfigError, match="no random initial phase"):
        nf.build_components(nf.RunConfig(**{**vars(cfg), "strategy": "rs"}))


# ------------------------------------------------------------------------------------ one-shot derivation
def test_derivation_combines_the_shared_weights_rank_with_the_proxy_rank() -> None:
    cfg = nf.RunConfig(space="nb201", evaluator="supernet", strategy="ednas", budget=6, dataset="digits",
                       evaluator_args={"model_args": {"C": 4, "N": 1}, "resolution": 4, "derive_proxy": "synflow"})
    parts = nf.build_components(cfg)  # untrained weights and policy: the combination is what is checked
    derived = parts.evaluator.derive(parts.strategy, n_samples=8)
    best = derived["sampled_best"]
    assert {"supernet", "proxy"} <= set(best) and 0 <= best["score"] <= 1
    assert [r["score"] for r in derived["ranked"]] == sorted((r["score"] for r in derived["ranked"]), reverse=True)
    assert "proxy" in derived["most_likely"]
    with pytest.raises(ConfigError, match="proxy must be one of"):
        nf.build_components(nf.RunConfig(**{**vars(cfg), "evaluator_args": {"derive_proxy": "grasp"}}))
    with pytest.raises(ConfigError, match="derive_proxy_weight"):
        nf.build_components(nf.RunConfig(**{**vars(cfg), "evaluator_args": {"derive_proxy_weight": 1.5}}))


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0])
def test_the_proxy_weight_of_the_derivation_ranges_from_weights_alone_to_proxy_alone(weight: float) -> None:
    from scipy.stats import rankdata

    cfg = nf.RunConfig(space="nb201", evaluator="supernet", strategy="ednas", budget=6, dataset="digits",
                       evaluator_args={"model_args": {"C": 4, "N": 1}, "resolution": 4, "derive_proxy": "synflow",
                                       "derive_proxy_weight": weight})
    parts = nf.build_components(cfg)
    rng = np.random.default_rng(0)
    archs = list({parts.space.sample(rng) for _ in range(6)})
    weights_scores = list(rng.random(len(archs)))
    combined = parts.evaluator._proxy_rerank()(archs, weights_scores)
    proxy = [extra["proxy"] for _, extra in combined]
    n = len(archs) - 1
    expected = (1 - weight) * (rankdata(weights_scores) - 1) / n + weight * (rankdata(proxy) - 1) / n
    assert np.allclose([score for score, _ in combined], expected)
    assert [extra["supernet"] for _, extra in combined] == weights_scores


def test_bench_gives_the_strategies_their_prior(tmp_path: Path) -> None:
    """``nasforge bench --prior zerocost`` chooses each search's initial samples as ``nasforge search`` does (it was
    silently ignored): the bench's search records what the same search run alone records, and not what it records
    without the prior."""
    import json

    from nasforge.bench import make_spec, run_bench
    from nasforge.run.loop import run_search

    table = write_nb201_table(tmp_path / "table.csv")
    cfg = nf.make_run_config({"space": "nb201", "strategy": "re", "benchmark": str(table), "budget": 4,
                              "dataset": "digits", "prior": "zerocost", "prior_draws": 4},
                             ["prior.proxy=synflow", "prior.model_args={C: 4, N: 1}", "prior.resolution=4",
                              "prior.batch_size=8"])

    def bench(config: nf.RunConfig, name: str) -> list[float]:
        run_bench(make_spec(config, ["re"], [0]), tmp_path / name)
        job = json.loads(next((tmp_path / name / "runs").rglob("*.json")).read_text())
        return job["incumbent_reward"]

    parts = nf.build_components(cfg)
    alone = run_search(parts.space, parts.strategy, parts.evaluator, cfg.budget, seed=0)
    assert bench(cfg, "guided") == [inc.reward for inc in alone.incumbents()]
    assert bench(nf.RunConfig(**{**vars(cfg), "prior": None}), "plain") != [inc.reward for inc in alone.incumbents()]
