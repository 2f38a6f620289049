"""The `darts` super-network scores cells of any node count (PNAS grows them): a child of fewer nodes computes what
the fixed network of its smaller cell computes, trains only its own nodes, and full-size children are unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nasforge as nf
from nasforge.cli import main
from nasforge.models.darts_net import DartsNetwork
from nasforge.registry import EVALUATORS
from nasforge.spaces.nb201 import NB201_OPS
from nasforge.supernet import SUPERNETS, SharedDAGCell, build_supernet, extract_child
from nasforge.supernet.cells import placeholder
from nasforge.testing.supernets import assert_child_matches

MODEL = {"C": 4, "layers": 3, "auxiliary": True}  # reductions at cells 1 and 2; the head reads cell 2


def _net(options: dict | None = None, **space_args):
    space = nf.create_space("darts", nodes=3, **space_args)
    torch.manual_seed(0)
    return space, build_supernet(space, num_classes=3, in_channels=1, **MODEL, **(options or {}))


def _of_size(space, k: int, seed: int) -> nf.Architecture:
    """A random cell pair of exactly ``k`` nodes."""
    rng = np.random.default_rng(seed)
    while True:
        arch = space.sample(rng)
        if space.blocks(arch) == k:
            return arch


def test_registered_for_cells_of_any_size() -> None:
    assert SUPERNETS.get("darts").capabilities["any_blocks"]
    assert "darts" in EVALUATORS.get("supernet").capabilities["any_blocks"]
    nf.build_components(nf.RunConfig(space="darts", strategy="pnas", evaluator="supernet"))  # no longer refused


@pytest.mark.parametrize("options", [{}, {"running_stats": True, "shared_affine": True}], ids=["default", "stats"])
def test_smaller_child_with_inherited_weights_computes_the_same(options: dict) -> None:
    space, net = _net(options, min_blocks=1)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    for k in (1, 3, 2):  # shared weights trained through cells of every size
        opt.zero_grad()
        sum(nn.functional.cross_entropy(o, y) for o in net(x, _of_size(space, k, k))).backward()
        opt.step()
    for k in (1, 2, 3):
        arch = _of_size(space, k, 10 + k)
        child = extract_child(net, arch)
        assert [len(c.dag.sources) for c in child.cells] == [k] * 3
        assert child.classifier.in_features == k * 16  # the last cell (C=16 after two reductions) has k nodes
        assert_child_matches(net, child, arch, x)


def test_a_smaller_child_trains_only_its_nodes() -> None:
    space, net = _net(min_blocks=1)
    arch = _of_size(space, 2, 0)
    candidates = {n for n, _ in net.named_modules() if re.fullmatch(r"cells\.\d+\.dag\.edges\.\d+\.\w+", n)}
    chosen = {f"{path}.edges.{e}.{op}" for path, nodes in net.descriptions(arch).items()
              for e, op in net.shared[path].path(nodes)}
    assert len(chosen) == 3 * 2 * 2  # two operations per node, two nodes, three cells
    logits, aux = net.train()(torch.randn(4, 1, 8, 8), arch)
    (logits.square().mean() + aux.square().mean()).backward()
    for name in candidates:
        grads = [p.grad for p in net.get_submodule(name).parameters()]
        edge = int(name.split(".")[4])
        if name in chosen:
            assert edge < 5 and all(g is not None for g in grads), name  # edges 0..4 lead to nodes 2 and 3
        else:
            assert all(g is None for g in grads), name
    # the layers reading a cell use the rows of its two nodes only
    for reader, C in [("cells.1.preprocess1.op.1", 4), ("cells.2.preprocess0.conv_1", 4),
                      ("cells.2.preprocess1.op.1", 8), ("auxiliary_head.features.2", 16), ("classifier", 16)]:
        grad = net.get_submodule(reader).weight.grad.abs().flatten(2).sum(dim=(0, 2)) if reader != "classifier" \
            else net.classifier.weight.grad.abs().sum(0)
        assert grad.shape == (3 * C,)
        assert (grad[: 2 * C].reshape(2, C).sum(1) > 0).all() and grad[2 * C :].sum() == 0, reader


def test_full_size_layout_and_children_are_unchanged() -> None:
    space, net = _net()
    _, growing = _net(min_blocks=1)
    shapes = {k: v.shape for k, v in net.named_parameters()}
    assert list(shapes.items()) == [(k, v.shape) for k, v in growing.named_parameters()]
    # outside the cells' candidate operations, the parameters of the fixed network of full cells
    frame = DartsNetwork(placeholder(3, 2), placeholder(3, 2), 3, 1, **MODEL)
    assert [(k, v) for k, v in shapes.items() if ".dag." not in k] == [
        (k, v.shape) for k, v in frame.named_parameters() if ".dag." not in k]
    full = _of_size(space, 3, 0)
    assert net._rows(full) == {}  # full cells read every row, as before
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(net.train()(x, full)[0], extract_child(net, full).train()(x)[0], atol=1e-5, rtol=0)


def test_only_concatenating_cells_run_smaller_descriptions() -> None:
    cell = SharedDAGCell(2, n_inputs=1, n_nodes=3, ops=NB201_OPS, output=[3])  # NAS-Bench-201: the last node
    cell.selected = [[("skip_connect", 0)]]
    with pytest.raises(ValueError, match="description of 1 nodes given to a cell of 3 nodes"):
        cell(torch.randn(1, 2, 4, 4))


def test_pnas_searches_darts_cells_one_shot(tmp_path: Path) -> None:
    run = tmp_path / "pnas"
    argv = ["search", "--space", "darts", "--strategy", "pnas", "--evaluator", "supernet", "--dataset", "digits",
            "--budget", "8", "--out", str(run), "--set", "space.nodes=3",
            "--set", "evaluator.model_args={C: 2, layers: 3}", "--set", "evaluator.reward_batch=32",
            "--set", "evaluator.derive_batch=32", "--set", "strategy.initial=4", "--set", "strategy.beam=2"]
    assert main(argv) == 0
    assert json.loads((run / "result.json").read_text())["n_evaluations"] == 8
    config, record, _ = nf.api.load_record(run)
    space = nf.create_space("darts", **config.space_args)
    assert [space.blocks(t.arch) for t in record.trials] == [1] * 4 + [2] * 2 + [3] * 2
    assert not any(t.outcome.failed for t in record.trials)
