"""Super-networks: every candidate once, single-path steps, children that inherit the weights exactly."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from nasforge import create_space
from nasforge.errors import ConfigError, InvalidArchitecture, NasforgeError
from nasforge.spaces.darts import OP_SETS
from nasforge.spaces.enas_macro import OP_LABELS
from nasforge.spaces.nb201 import NB201_OPS
from nasforge.supernet import (
    SUPERNETS,
    SharedDAGCell,
    build_supernet,
    child_state_dict,
    extract_child,
    recalibrate_batch_norm,
)

# (space name, space config, model arguments): tiny, but with reductions, all operations and the
# darts auxiliary head
CASES = {
    **{
        f"darts-{ops}": ("darts", {"ops": ops}, {"C": 4, "layers": 3, "auxiliary": True})
        for ops in OP_SETS
    },
    "nb201": ("nb201", {}, {"C": 4, "N": 1}),
    "enas-macro": ("enas-macro", {"layers": 6}, {"C": 4}),
}
OPTIONS = [
    {"running_stats": False, "shared_affine": False},
    {"running_stats": True, "shared_affine": False},
    {"running_stats": True, "shared_affine": True},
]
ATOL = 1e-5


def make(case: str, **options):
    name, config, model_args = CASES[case]
    space = create_space(name, **config)
    torch.manual_seed(0)
    return space, build_supernet(space, num_classes=3, in_channels=1, **model_args, **options)


def logits(out):
    return out[0] if isinstance(out, tuple) else out


def train_a_little(space, net, x, y, seed: int = 0, steps: int = 3) -> None:
    """A few SGD steps on random children, so that weights, affine parameters and running
    statistics are no longer at their initial values."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        out = net(x, space.sample(rng))
        loss = sum(nn.functional.cross_entropy(o, y) for o in (out if isinstance(out, tuple) else (out,)))
        loss.backward()
        opt.step()


def chosen_candidates(space, net, arch) -> set[str]:
    """Module names of the candidate operations (and ENAS skip blocks) that ``arch`` uses."""
    if space.name == "enas-macro":
        names = set()
        for i, (op, sources) in enumerate(space.layer_plan(arch.choices)):
            names.add(f"layers.{i}.ops.{op}")
            if i > 0:
                names |= {f"layers.{i}.combine.proj.{j}" for j in (*sources, "out")}
        return names
    return {
        f"{path}.edges.{edge}.{op}"
        for path, nodes in net.descriptions(arch).items()
        for edge, op in net.shared[path].path(nodes)
    }


# ---------------------------------------------------------------------- structure
def test_registry_names_the_three_spaces() -> None:
    assert SUPERNETS.names() == ["darts", "enas-macro", "nasnet", "nb201"]


@pytest.mark.parametrize("ops", list(OP_SETS))
def test_darts_cells_hold_14_edges_of_every_operation(ops: str) -> None:
    space, net = make(f"darts-{ops}")
    cells = [m for m in net.modules() if isinstance(m, SharedDAGCell)]
    assert cells == [c.dag for c in net.cells]  # one per network cell, each with its own weights
    assert [c.reduction for c in net.cells] == [False, True, True]
    for cell in cells:
        assert len(cell.edges) == 14
        assert all(tuple(edge.keys()) == OP_SETS[ops] for edge in cell.edges)


def test_nb201_cells_hold_6_edges_of_5_operations() -> None:
    space, net = make("nb201")
    cells = [m for m in net.modules() if isinstance(m, SharedDAGCell)]
    assert len(cells) == 3  # N=1 cell in each of the three stages
    assert all(len(c.edges) == 6 and tuple(e.keys()) == NB201_OPS for c in cells for e in c.edges)


def test_enas_layers_hold_six_operations_and_a_projection_per_source() -> None:
    space, net = make("enas-macro")
    for i, layer in enumerate(net.layers):
        assert tuple(layer.ops.keys()) == OP_LABELS
        if i == 0:
            assert layer.combine is None
        else:
            assert sorted(layer.combine.proj.keys()) == sorted([*map(str, range(i)), "out"])
    # every node that may be read after a reduction has its own reduction
    assert {k: len(v) for k, v in net.reductions.items()} == {"1": 3, "3": 5}


# ---------------------------------------------------------------------- equivalence with the fixed child
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(k for k, v in o.items() if v) or "default")
@pytest.mark.parametrize("case", list(CASES))
def test_child_with_inherited_weights_computes_the_same(case: str, options: dict) -> None:
    space, net = make(case, **options)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
    train_a_little(space, net, x, y)
    for arch in space.sample(np.random.default_rng(2)), space.sample(np.random.default_rng(3)):
        child = extract_child(net, arch)
        assert type(child) is type(space.build(arch, num_classes=3, in_channels=1, **CASES[case][2]))
        # training mode (batch statistics, auxiliary head): always the same computation
        net.train(), child.train()
        for a, b in zip(*(o if isinstance(o, tuple) else (o,) for o in (net(x, arch), child(x)))):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
        # evaluation: a batch-statistics super-network matches the child's batch-statistics mode
        net.eval()
        child.train(not options["running_stats"])
        with torch.no_grad():
            torch.testing.assert_close(logits(net(x, arch)), logits(child(x)), atol=ATOL, rtol=0)


def test_running_statistics_are_inherited() -> None:
    space, net = make("nb201", running_stats=True)
    x = torch.randn(16, 1, 8, 8) * 3 + 1
    arch = space.sample(np.random.default_rng(0))
    net.train()
    with torch.no_grad():
        net(x, arch)
    state = child_state_dict(net, arch)
    means = [v for k, v in state.items() if k.endswith("running_mean")]
    assert means and all(m.abs().sum() > 0 for m in means[:3])  # moved away from the initial zeros
    assert any(k.endswith("num_batches_tracked") and v.item() == 1 for k, v in state.items())


def test_drop_path_draws_the_same_masks_as_the_child() -> None:
    space, net = make("darts-darts")
    arch = space.sample(np.random.default_rng(4))
    child = extract_child(net, arch)
    x = torch.randn(8, 1, 8, 8)
    net.drop_path_prob = child.drop_path_prob = 0.3
    net.train(), child.train()
    torch.manual_seed(5)
    a = logits(net(x, arch))
    torch.manual_seed(5)
    b = logits(child(x))
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_recalibrated_child_evaluates_like_the_supernet() -> None:
    space, net = make("darts-darts")  # batch statistics only
    net.drop_path_prob = 0.2  # must not disturb the recalibration
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 16, 16, generator=g) * 2 + 0.5
    arch = space.sample(np.random.default_rng(6))
    net.eval()
    with torch.no_grad():
        target = net(x, arch)
        child = extract_child(net, arch).eval()
        child.drop_path_prob = 0.2
        before = (child(x) - target).abs().max()
        recalibrate_batch_norm(child, [x[:32], x[32:]])
        after = (child(x) - target).abs().max()
    assert not child.training
    assert after < 0.1 * before
    torch.testing.assert_close(child(x), target, atol=0.05, rtol=0.05)  # running variance is unbiased


# ---------------------------------------------------------------------- single path
@pytest.mark.parametrize("case", ["darts-darts", "darts-nasnet", "nb201", "enas-macro"])
def test_only_the_chosen_candidates_run_and_get_gradients(case: str) -> None:
    space, net = make(case)
    arch = space.sample(np.random.default_rng(7))
    chosen = chosen_candidates(space, net, arch)
    candidates = {n for n, _ in net.named_modules() if n in chosen or _is_candidate(n)}
    assert chosen < candidates
    # ENAS' projection blocks are weights of one convolution, not called modules: gradients only
    called = {n for n in candidates if ".proj." not in n}
    ran = set()
    hooks = [net.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: ran.add(n)) for n in called]
    out = net(torch.randn(4, 1, 8, 8), arch)
    for h in hooks:
        h.remove()
    assert ran == chosen & called
    sum(o.square().mean() for o in (out if isinstance(out, tuple) else (out,))).backward()
    for name in candidates:
        grads = [p.grad for p in net.get_submodule(name).parameters()]
        if name in chosen:
            assert all(g is not None for g in grads)
            assert not grads or any(g.abs().sum() > 0 for g in grads), name
        else:
            assert all(g is None or not g.any() for g in grads), name


def _is_candidate(name: str) -> bool:
    return bool(
        re.fullmatch(r".*\.edges\.\d+\.[a-z]\w*", name)
        or re.fullmatch(r"layers\.\d+\.ops\.\w+", name)
        or re.fullmatch(r"layers\.\d+\.combine\.proj\.\w+", name)
    )


def test_unused_reductions_do_not_run() -> None:
    space, net = make("enas-macro")
    # no skips at all: after each reduction only the previous layer's output is read
    arch = space.make([0] * len(space.decisions))
    out = net(torch.randn(2, 1, 8, 8), arch)
    out.sum().backward()
    for i, reduce in net.reductions.items():
        for k, module in reduce.items():
            used = int(k) == int(i) + 1
            assert all((p.grad is not None) == used for p in module.parameters()), (i, k)


# ---------------------------------------------------------------------- options and errors
def test_batch_statistics_only_by_default() -> None:
    space, net = make("nb201")
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.running_mean is None and not m.track_running_stats for m in norms)
    assert not any(k.startswith("running") for k in net.state_dict())
    # no stale averages: evaluation normalises each batch with its own statistics, as training does
    x = torch.randn(8, 1, 8, 8)
    arch = space.sample(np.random.default_rng(0))
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x, arch), net.train()(x, arch))


def test_shared_operations_have_no_affine_batch_norm_by_default() -> None:
    space, net = make("darts-darts")
    ops = [m for c in net.shared.values() for e in c.edges for op in e.values() for m in op.modules()]
    assert all(not m.affine for m in ops if isinstance(m, nn.BatchNorm2d))
    assert net.stem[1].affine  # layers every child uses keep the fixed network's batch norm
    _, affine = make("darts-darts", shared_affine=True)
    ops = [m for c in affine.shared.values() for e in c.edges for op in e.values() for m in op.modules()]
    assert all(m.affine for m in ops if isinstance(m, nn.BatchNorm2d))


def test_bad_input_gives_clear_errors() -> None:
    space = create_space("nb201")
    with pytest.raises(ConfigError, match="unknown field 'layers'"):
        build_supernet(space, num_classes=3, layers=4)
    with pytest.raises(ConfigError, match="supernet.running_stats"):
        build_supernet(space, num_classes=3, running_stats="maybe")
    with pytest.raises(NasforgeError, match="unknown super-network 'nb101'"):
        build_supernet(create_space("nb101"), num_classes=3)
    net = build_supernet(space, num_classes=3, C=4, N=1)
    darts_arch = create_space("darts").sample(np.random.default_rng(0))
    with pytest.raises(InvalidArchitecture, match="space 'darts' given to space 'nb201'"):
        net(torch.randn(2, 3, 8, 8), darts_arch)
    with pytest.raises(RuntimeError, match="call the super-network with an architecture"):
        net.shared["cells.0"](torch.randn(2, 4, 8, 8))
    with pytest.raises(TypeError, match="not a super-network"):
        child_state_dict(nn.Linear(2, 2), darts_arch)


def test_darts_model_arguments_are_those_of_the_space() -> None:
    space = create_space("darts", nodes=3, ops="enas")
    net = build_supernet(space, num_classes=10, in_channels=3, C=4, layers=4, stem_multiplier=2, dropout=0.1)
    assert net.model_args["layers"] == 4 and len(net.cells) == 4
    assert all(len(c.edges) == 2 + 3 + 4 for c in net.shared.values())
    arch = space.sample(np.random.default_rng(0))
    out = net.eval()(torch.randn(2, 3, 16, 16), arch)
    assert out.shape == (2, 10)
    child = extract_child(net, arch)
    assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in net.parameters())
