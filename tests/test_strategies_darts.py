"""Differentiable one-shot search (DARTS, GDAS): the relaxed super-network, the architecture weights, the search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.run.rundir import open_store
from nasforge.strategies.darts import Darts
from nasforge.strategies.gdas import Gdas
from nasforge.supernet import Relaxed, build_supernet
from nasforge.testing.unrolled import UnrolledReference


def _config(strategy: str = "darts", budget: int = 30, space: str = "nb201") -> nf.RunConfig:
    model_args = {"nb201": {"C": 4, "N": 1}, "darts": {"C": 4, "layers": 3}, "nasnet": {"C": 4, "layers": 3}}[space]
    space_args = {"blocks": 2, "ops": "enas"} if space == "nasnet" else {}
    return nf.RunConfig(space=space, space_args=space_args, evaluator="supernet", strategy=strategy, budget=budget,
                        seed=0, dataset="digits",
                        evaluator_args={"model_args": model_args, "lr": 0.05, "derive_batch": 64,
                                                    "resolution": 4})


def _one_hot(space, arch) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(d.n_choices for d in space.decisions)
    index = torch.tensor(arch.choices)
    return torch.zeros(len(space.decisions), width).scatter_(1, index[:, None], 1.0), index


def test_a_one_hot_relaxation_computes_the_child() -> None:
    space = nf.create_space("nb201")
    torch.manual_seed(0)
    net = build_supernet(space, num_classes=10, C=4, N=1).eval()
    x = torch.randn(8, 3, 8, 8)
    arch = space.sample(np.random.default_rng(3))
    weights, index = _one_hot(space, arch)
    expected = net(x, arch)
    assert torch.allclose(net(x, Relaxed(weights)), expected, atol=1e-5)  # every operation run, weighted 0 or 1
    assert torch.equal(net(x, Relaxed(weights, index)), expected)  # GDAS: only the chosen ones run


@pytest.mark.parametrize("shared_cell", [False, True])
def test_a_one_hot_relaxation_computes_the_nasnet_child(shared_cell: bool) -> None:
    # a relaxed NASNet cell concatenates all its blocks, so the child to compare is one of a space that does too
    space = nf.create_space("nasnet", blocks=3, ops="enas", concat="all", shared_cell=shared_cell)
    torch.manual_seed(0)
    net = build_supernet(space, num_classes=10, C=4, layers=3).eval()
    x = torch.randn(8, 3, 8, 8)
    for seed in range(3):
        arch = space.sample(np.random.default_rng(seed))
        weights, index = _one_hot(space, arch)
        expected = net(x, arch)
        assert torch.allclose(net(x, Relaxed(weights)), expected, atol=1e-5)
        assert torch.equal(net(x, Relaxed(weights, index)), expected)  # GDAS: only the sampled source and operation


def test_a_relaxed_nasnet_cell_learns_its_inputs_and_operations() -> None:
    space = nf.create_space("nasnet", blocks=3, ops="enas")
    net = build_supernet(space, num_classes=10, C=2, layers=3)
    for strategy in (Darts(space), Gdas(space)):
        assert strategy.policy.governed == {}  # a block's input is a row of its own, not derived from edges
        out = net(torch.randn(2, 3, 4, 4), strategy.relaxed(0.5))
        (grad,) = torch.autograd.grad(out.pow(2).sum(), [strategy.policy.logits])
        rows = grad.abs().sum(1)
        assert (rows[[d for d, dec in enumerate(space.decisions) if dec.n_choices > 1]] > 0).all()
    assert net.relaxed_decisions() == list(range(len(space.decisions)))  # inputs and operations, both cells


def test_the_mixed_forward_reaches_every_edge_weight_and_no_structure_row() -> None:
    space = nf.create_space("darts")
    net = build_supernet(space, num_classes=10, C=2, layers=3)
    strategy = Darts(space)
    out = net(torch.randn(2, 3, 4, 4), strategy.relaxed(0.0))
    (grad,) = torch.autograd.grad(out.pow(2).sum(), [strategy.policy.logits])
    operation = [i for i, d in enumerate(space.decisions) if d.group == "operation"]
    structure = [i for i, d in enumerate(space.decisions) if d.group == "structure"]
    assert (grad[operation].abs().sum(1) > 0).all()  # every edge of both cell kinds is weighed
    assert (grad[structure] == 0).all()  # a relaxed node sums all its edges: no structure choice is made


def test_darts_derives_each_node_from_its_strongest_edges() -> None:
    space = nf.create_space("darts")
    strategy = Darts(space)
    node = space.layout["normal"][2]  # node 4: inputs from nodes 0..3
    with torch.no_grad():
        strategy.policy.logits[node.edges[1], 3] = 4.0  # edge 1 -> 4 strongly prefers sep_conv_3x3
        strategy.policy.logits[node.edges[3], 0] = 2.0  # edge 3 -> 4, max_pool_3x3, a little less strong
        strategy.policy.logits[node.edges[0], 5] = 1.0
    arch = strategy.ask(1)[0]
    cell = space.cell_nodes(arch, "normal")[2]
    assert sorted(cell, key=lambda e: e[1]) == [("sep_conv_3x3", 1), ("max_pool_3x3", 3)]


def test_gdas_samples_one_hot_weights_with_the_soft_gradient() -> None:
    space = nf.create_space("nb201")
    strategy = Gdas(space, seed=1)
    relaxed = strategy.relaxed(0.5)
    assert relaxed.index is not None
    assert torch.allclose(relaxed.weights, _one_hot(space, space.make(relaxed.index.tolist()))[0], atol=1e-6)
    (grad,) = torch.autograd.grad((relaxed.weights * torch.arange(5.0)).sum(), [strategy.policy.logits])
    assert grad.abs().sum() > 0  # straight-through: the soft sample's gradient
    assert strategy.temperature(0.0) == 10.0 and strategy.temperature(1.0) == pytest.approx(0.1)
    assert Gdas(space, seed=1).relaxed(0.5).index.tolist() == relaxed.index.tolist()  # seeded


@pytest.mark.parametrize("strategy", ["darts", "gdas"])
def test_a_search_learns_architecture_weights_records_them_and_derives(strategy: str, tmp_path: Path) -> None:
    cfg = _config(strategy, budget=16)
    parts = nf.build_components(cfg)
    assert parts.strategy.config.warmup == 4  # the one-shot warm-up: a quarter of the budget
    _, result = nf.search(cfg, tmp_path / "run", components=parts)
    logits = parts.strategy.policy.logits.detach()
    assert parts.strategy.steps == 12 and logits.abs().sum() > 0  # learnt after the warm-up only
    derived = result["derived"]
    for key in ("sampled_best", "most_likely"):
        parts.space.parse(derived[key]["arch"])
    assert derived["most_likely"]["arch"] == str(parts.strategy.ask(1)[0])  # DARTS' derivation: the argmax
    with open_store(tmp_path / "run", readonly=True) as store:
        snapshots = store.snapshots()
    assert snapshots and set(snapshots[-1][1]["operation"]) == {d.name for d in parts.space.decisions}


@pytest.mark.parametrize("strategy", ["darts", "gdas"])
def test_a_nasnet_search_learns_inputs_and_operations_and_derives(strategy: str, tmp_path: Path) -> None:
    cfg = _config(strategy, budget=8, space="nasnet")
    parts = nf.build_components(cfg)
    _, result = nf.search(cfg, tmp_path / "run", components=parts)
    logits = parts.strategy.policy.logits.detach()
    structure = [i for i, d in enumerate(parts.space.decisions) if d.group == "structure" and d.n_choices > 1]
    assert (logits[structure].abs().sum(1) > 0).all()  # the inputs learnt too
    derived = result["derived"]
    assert ("perturbed" in derived) == (strategy == "darts")
    if strategy == "darts":  # perturbation decides every input and every operation, each once
        decided = sorted(step["decision"] for step in derived["perturbed"]["steps"])
        assert decided == sorted(d.name for d in parts.space.decisions if d.n_choices > 1)
    for key in ("sampled_best", "most_likely", *(("perturbed",) if strategy == "darts" else ())):
        parts.space.parse(derived[key]["arch"])
    assert derived["most_likely"]["arch"] == str(parts.strategy.ask(1)[0])


def test_a_killed_differentiable_search_resumes_to_the_same_weights(tmp_path: Path) -> None:
    cfg = _config("gdas", budget=30)
    every = nf.build_components(cfg).evaluator.checkpoint_every
    assert every < 25

    class Killed(Exception):
        pass

    def kill(trial, record) -> None:
        if record.n_evaluations == every + 3:
            raise Killed

    with pytest.raises(Killed):
        nf.search(cfg, tmp_path / "a", callbacks=[kill])
    resumed, _ = nf.resume(tmp_path / "a")
    straight, _ = nf.search(cfg, tmp_path / "b")
    assert [t.reward for t in resumed.trials] == [t.reward for t in straight.trials]
    states = []
    for run in ("a", "b"):
        with open_store(tmp_path / run, readonly=True) as store:
            n, state = store.load_checkpoint()
        parts = nf.build_components(cfg)
        parts.strategy.load_state_dict(state["strategy"])
        parts.evaluator.load_state_dict(state["evaluator"])
        states.append((n, parts.strategy.policy.logits.detach().clone(), parts.evaluator.supernet.state_dict()))
    (na, la, wa), (nb, lb, wb) = states
    assert na == nb == 30 and torch.equal(la, lb) and la.abs().sum() > 0
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_the_darts_space_runs_relaxed() -> None:
    parts = nf.build_components(_config("darts", budget=8, space="darts"))
    arch = parts.strategy.ask(1)[0]
    parts.strategy.told = parts.strategy.config.warmup  # past the warm-up: the architecture weights learn
    results = [parts.evaluator.evaluate(arch) for _ in range(2)]
    assert not any(r.failed for r in results) and parts.strategy.steps == 2
    assert str(parts.strategy.ask(1)[0]).startswith("Genotype(")


def test_a_black_box_evaluator_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    cfg = nf.RunConfig(space="toy", evaluator="toy", strategy="gdas")
    with pytest.raises(ConfigError, match="gdas.*gradient.*--evaluator supernet"):
        nf.build_components(cfg)


def test_a_super_network_without_cells_is_refused() -> None:
    cfg = nf.RunConfig(space="enas-macro", space_args={"layers": 3}, evaluator="supernet", strategy="darts",
                       dataset="digits", evaluator_args={"model_args": {"C": 4}})
    with pytest.raises(ConfigError, match="cell super-network.*nb201"):
        nf.build_components(cfg)


@pytest.mark.parametrize("strategy", ["darts", "gdas"])
@pytest.mark.parametrize("space", ["darts", "nasnet"])
def test_a_space_of_growing_cells_is_refused(strategy: str, space: str) -> None:
    # every block runs in the mixture, and a block count's options differ in how many edges they weigh
    with pytest.raises(ConfigError, match=f"{strategy} relaxes cells of a fixed size.*without min_blocks"):
        nf.create_strategy(strategy, nf.create_space(space, min_blocks=1))
    nf.create_strategy(strategy, nf.create_space(space))  # full cells: the default


@pytest.mark.parametrize("strategy", ["darts", "gdas"])
def test_the_second_order_gradient_is_darts_unrolled_approximation(strategy: str) -> None:
    cfg = _config(strategy, budget=8)
    cfg.strategy_args = {"order": 2}
    parts = nf.build_components(cfg)
    ev, space = parts.evaluator, parts.space
    rng = np.random.default_rng(0)
    for _ in range(2):  # mid-search: the optimiser has momentum buffers
        ev.train_step(space.sample(rng))
    relaxed = parts.strategy.relaxed(0.5)
    x, y = ev._batch(ev.splits.val, 32)
    xt, yt = ev._batch(ev.splits.train, 32)
    before = {k: v.clone() for k, v in ev.supernet.state_dict().items()}
    grad, loss, _ = ev.second_order_gradient(relaxed, x, y, (xt, yt))
    assert all(torch.equal(before[k], v) for k, v in ev.supernet.state_dict().items())  # weights put back

    # DARTS' eqs. 6-8 written out with functional calls: the virtual step w' (rate, momentum, weight decay), the
    # validation gradient at w', and the Hessian-vector product by central differences at r = 0.01
    ref = UnrolledReference(ev, relaxed, (x, y), (xt, yt))
    assert any(b.abs().sum() > 0 for b in ref.buffers)
    direct, v, val_loss = ref.validation_gradients()
    expected = direct - ref.group["lr"] * ref.finite_difference(v, r=0.01)
    assert loss == pytest.approx(val_loss, rel=1e-5)
    assert float((grad - expected).norm()) < 1e-3 * float(expected.norm())
    assert float((expected - direct).norm()) > 0.05 * float(direct.norm())  # the second-order term is there


def test_the_exact_hessian_vector_product_is_double_backpropagation() -> None:
    cfg = _config("darts", budget=8)
    cfg.strategy_args = {"order": 2, "hvp": "exact"}
    parts = nf.build_components(cfg)
    ev, space = parts.evaluator, parts.space
    rng = np.random.default_rng(1)
    for _ in range(2):
        ev.train_step(space.sample(rng))
    relaxed = parts.strategy.relaxed(0.5)
    x, y = ev._batch(ev.splits.val, 32)
    xt, yt = ev._batch(ev.splits.train, 32)
    before = {k: v.clone() for k, v in ev.supernet.state_dict().items()}
    grad, _, _ = ev.second_order_gradient(relaxed, x, y, (xt, yt), exact=True)
    assert all(torch.equal(before[k], v) for k, v in ev.supernet.state_dict().items())
    ref = UnrolledReference(ev, relaxed, (x, y), (xt, yt))
    direct, v, _ = ref.validation_gradients()
    expected = direct - ref.group["lr"] * ref.exact(v)
    assert float((grad - expected).norm()) < 1e-4 * float(expected.norm())
    difference = ev.second_order_gradient(relaxed, x, y, (xt, yt))[0]
    assert not torch.allclose(grad, difference)  # the option changes what is computed
    with pytest.raises(ConfigError, match="strategy: hvp must be .difference. or .exact., got .exakt."):
        nf.create_strategy("darts", space, order=2, hvp="exakt")
    with pytest.raises(ConfigError, match="hvp='exact' needs order=2"):  # not silently the first order
        nf.create_strategy("darts", space, hvp="exact")


def test_a_search_takes_the_exact_product_from_the_strategy(tmp_path: Path) -> None:
    cfg = _config("darts", budget=8)
    cfg.strategy_args = {"order": 2, "hvp": "exact"}
    parts = nf.build_components(cfg)
    ev, calls = parts.evaluator, []
    original = ev.second_order_gradient
    ev.second_order_gradient = lambda *a, **k: calls.append(k.get("exact")) or original(*a, **k)  # type: ignore[method-assign]
    nf.search(cfg, tmp_path / "run", components=parts)
    assert parts.strategy.steps == 6 and calls == [True] * 6


def test_a_second_order_search_runs_and_learns(tmp_path: Path) -> None:
    cfg = _config("darts", budget=8)
    cfg.strategy_args = {"order": 2}
    parts = nf.build_components(cfg)
    nf.search(cfg, tmp_path / "run", components=parts)
    assert parts.strategy.steps == 6 and parts.strategy.policy.logits.detach().abs().sum() > 0
    bad = _config("darts", budget=8)
    bad.strategy_args = {"order": 3}
    bad.dataset, bad.data = "cifar10", str(tmp_path / "absent.tar.gz")
    with pytest.raises(ConfigError, match="order must be 1"):  # before the evaluator looks for its data
        nf.build_components(bad)
