"""The `nasnet` super-network: ENAS' micro search with shared weights, children that inherit them exactly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.supernet import SUPERNETS, build_supernet, extract_child
from nasforge.testing import conformance
from nasforge.testing.supernets import assert_child_matches

ENAS_MICRO = {"ops": "enas", "blocks": 5}  # ENAS: 5 operations, B = 5, repeated inputs, loose ends
MODEL = {"C": 4, "layers": 5, "auxiliary": True}


def _net(options: dict | None = None, **space_args):
    space = nf.create_space("nasnet", **{**ENAS_MICRO, **space_args})
    torch.manual_seed(0)
    return space, build_supernet(space, num_classes=3, in_channels=1, **MODEL, **(options or {}))


def _train_a_little(space, net, x, y) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        sum(nn.functional.cross_entropy(o, y) for o in net(x, space.sample(rng))).backward()
        opt.step()


def test_registered_for_cells_of_any_size() -> None:
    assert "nasnet" in SUPERNETS.names() and SUPERNETS.get("nasnet").capabilities["any_blocks"]
    assert "nasnet" in nf.registry.EVALUATORS.get("supernet").capabilities["spaces"]


@pytest.mark.parametrize("space_args,options", [
    ({}, {}),
    ({"min_blocks": 1}, {"running_stats": True, "shared_affine": True}),
    ({"ops": "pnas", "concat": "all", "shared_cell": True}, {}),
], ids=["enas", "any-blocks-stats", "pnas-shared"])
def test_child_with_inherited_weights_computes_the_same(space_args: dict, options: dict) -> None:
    space, net = _net(options, **space_args)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    _train_a_little(space, net, x, y)
    rng = np.random.default_rng(2)
    for arch in [space.sample(rng) for _ in range(2)]:
        child = extract_child(net, arch)
        assert type(child) is type(space.build(arch, num_classes=3, in_channels=1, **MODEL))
        assert_child_matches(net, child, arch, x)


def test_a_step_runs_and_trains_only_the_child() -> None:
    space, net = _net()
    # NASNet's reduction cell (ENAS' operations): blocks 2 and 3 are used, so the cell outputs blocks 4, 5, 6
    arch = space.parse(
        "Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 1), ('sep_conv_5x5', 1), ('skip_connect', 0), "
        "('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 1), "
        "('avg_pool_3x3', 0)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), "
        "('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 0), ('skip_connect', 3), "
        "('avg_pool_3x3', 2), ('sep_conv_3x3', 2), ('max_pool_3x3', 1)], reduce_concat=[4, 5, 6])")
    candidates = {n for n, _ in net.named_modules() if re.fullmatch(r"cells\.\d+\.dag\.edges\.\d+\.\w+", n)}
    chosen = {f"{path}.edges.{e}.{op}" for path, spec in net.descriptions(arch).items()
              for e, op in net.shared[path].path(spec)}
    assert len(chosen) == 2 * 5 * 5 and chosen < candidates  # two operations per block in each of 5 cells
    ran = set()
    hooks = [net.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: ran.add(n)) for n in candidates]
    logits, aux = net.train()(torch.randn(4, 1, 8, 8), arch)
    for h in hooks:
        h.remove()
    assert ran == chosen
    (logits.square().mean() + aux.square().mean()).backward()
    for name in candidates - chosen:
        assert all(p.grad is None for p in net.get_submodule(name).parameters()), name
    # the classifier reads the last (normal) cell's 5 blocks; cell 3 (a reduction) is read through blocks 4..6 only
    C = net.cells[3].dag.C
    grad = net.cells[4].preprocess1.op[1].weight.grad.abs().sum(dim=(0, 2, 3))
    assert grad[: 2 * C].sum() == 0 and (grad[2 * C :].reshape(3, C).sum(1) > 0).all()
    assert net.classifier.weight.grad.abs().sum(0).reshape(5, -1).sum(1).gt(0).all()
    child = extract_child(net, arch)
    assert child.cells[4].preprocess1.op[1].weight.shape[1] == 3 * C


def test_concatenation_combination_is_refused() -> None:
    with pytest.raises(ConfigError, match="by addition only"):
        _net(combine="add,concat")


def test_enas_micro_search_resumes_and_derives(tmp_path: Path) -> None:
    config = nf.RunConfig(space="nasnet", space_args=ENAS_MICRO, evaluator="supernet", strategy="enas", budget=9,
                          seed=0, dataset="digits", evaluator_args={
                              "model_args": {"C": 2, "layers": 3}, "batch_size": 256, "reward_batch": 32,
                              "derive_batch": 64})
    assert nf.build_components(config).evaluator.checkpoint_every == 5
    conformance.check_checkpoint_resume(config, tmp_path / "run")
    derived = nf.derive(tmp_path / "run", n_samples=8)
    space = nf.create_space("nasnet", **ENAS_MICRO)
    assert space.parse(derived["sampled_best"]["arch"]).space == "nasnet"
    assert derived["train_command"].startswith("nasforge train --space nasnet --arch ")
    assert "space.ops=enas" in derived["train_command"]


def test_ednas_searches_cells_of_any_size_one_shot() -> None:
    config = nf.RunConfig(space="nasnet", space_args={**ENAS_MICRO, "min_blocks": 1}, evaluator="supernet",
                          strategy="ednas", budget=6, seed=0, dataset="digits",
                          evaluator_args={"model_args": {"C": 2, "layers": 3}, "reward_batch": 32, "derive_batch": 32})
    record, result = nf.search(config)
    assert record.n_evaluations == 6 and not any(t.outcome.failed for t in record.trials)
    assert len({nf.create_space("nasnet", **ENAS_MICRO, min_blocks=1).blocks(t.arch) for t in record.trials}) > 1
