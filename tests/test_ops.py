"""Candidate operations, the generic DAG cell, and the model contract of every trainable space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasforge import SPACES, create_space
from nasforge.ops import OPS
from nasforge.ops.cell_ops import DAGCell, FactorizedReduce, Identity, drop_path
from nasforge.ops.measure import count_flops, count_params

ALL_OPS = [e.name for e in OPS]


def test_registry_has_the_operations_of_every_cell_space() -> None:
    wanted = {
        "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "max_pool_3x3",
        "max_pool_5x5", "max_pool_7x7", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "dil_conv_3x3",
        "dil_conv_5x5", "conv_7x1_1x7", "conv_3x1_1x3",
    }
    assert wanted <= set(ALL_OPS)
    # other papers' names for the same operations
    assert OPS.canonical("identity") == "skip_connect"
    assert OPS.canonical("conv_1x1") == "nor_conv_1x1"
    assert OPS.canonical("conv_3x3") == "nor_conv_3x3"


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("stride, C_in, C_out", [(1, 4, 4), (2, 4, 4), (1, 3, 6), (2, 6, 4)])
@pytest.mark.parametrize("size", [8, 9])
def test_every_op_gives_the_reduced_shape_and_gradients(
    name: str, stride: int, C_in: int, C_out: int, size: int
) -> None:
    op = OPS.create(name, C_in, C_out, stride, True)
    x = torch.randn(2, C_in, size, size, requires_grad=True)
    y = op(x)
    side = math.ceil(size / stride)
    assert y.shape == (2, C_out, side, side)
    y.square().sum().backward()
    if name != "none":
        assert x.grad is not None and x.grad.abs().sum() > 0


def test_identity_zero_and_factorized_reduce() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert isinstance(OPS.create("skip_connect", 4, 4, 1, True), Identity)
    assert isinstance(OPS.create("skip_connect", 4, 4, 2, True), FactorizedReduce)
    assert torch.equal(OPS.create("skip_connect", 4, 4, 1, True)(x), x)
    zero = OPS.create("none", 4, 8, 2, True)(x)
    assert zero.shape == (2, 8, 4, 4) and not zero.any()
    assert count_params(OPS.create("none", 4, 4, 1, True)) == 0


def test_parameter_counts_follow_the_definitions() -> None:
    C = 8
    # ReLU-Conv-BN: k*k*C*C weights + 2C batch-norm parameters
    assert count_params(OPS.create("nor_conv_3x3", C, C, 1, True)) == 9 * C * C + 2 * C
    assert count_params(OPS.create("nor_conv_1x1", C, C, 1, False)) == C * C
    # separable conv = (depthwise k*k*C + pointwise C*C + BN 2C), twice
    assert count_params(OPS.create("sep_conv_5x5", C, C, 1, True)) == 2 * (25 * C + C * C + 2 * C)
    # dilated conv = depthwise + pointwise + BN, once
    assert count_params(OPS.create("dil_conv_3x3", C, C, 1, True)) == 9 * C + C * C + 2 * C
    # 1x7 then 7x1: two 7*C*C convolutions + BN
    assert count_params(OPS.create("conv_7x1_1x7", C, C, 1, True)) == 2 * 7 * C * C + 2 * C
    assert count_params(OPS.create("max_pool_3x3", C, C, 1, True)) == 0
    assert count_params(OPS.create("avg_pool_3x3", C, 2 * C, 1, True)) == 2 * C * C + 2 * 2 * C


def test_avg_pool_ignores_padding_and_max_pool_keeps_maxima() -> None:
    x = torch.ones(1, 1, 5, 5)
    assert torch.allclose(OPS.create("avg_pool_3x3", 1, 1, 1, True)(x), x)
    y = torch.arange(25.0).reshape(1, 1, 5, 5)
    assert OPS.create("max_pool_7x7", 1, 1, 1, True)(y).max() == 24.0


def test_drop_path_drops_whole_samples_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 3, 3)
    y = drop_path(x, 0.3)
    per_sample = y.flatten(1)
    values = per_sample.min(1).values
    assert torch.equal(values, per_sample.max(1).values)  # a sample is dropped whole or kept whole
    assert torch.all((values == 0.0) | torch.isclose(values, torch.tensor(1 / 0.7)))
    assert abs(y.mean().item() - 1.0) < 0.05
    assert drop_path(x, 0.0) is x


def test_dag_cell_sums_inputs_and_concatenates_nodes() -> None:
    x = torch.randn(2, 3, 6, 6)
    # NB201-like: node 1 = x, node 2 = x + node 1
    nb201_like = [[("skip_connect", 0)], [("skip_connect", 0), ("skip_connect", 1)]]
    cell = DAGCell(nb201_like, 3, n_inputs=1, output=(2,))
    assert torch.allclose(cell(x), 2 * x)
    # DARTS-like: two inputs, all intermediate nodes concatenated
    darts_like = [[("skip_connect", 0), ("skip_connect", 1)], [("skip_connect", 2), ("none", 0)]]
    darts = DAGCell(darts_like, 3, n_inputs=2)
    out = darts(x, 2 * x)
    assert darts.multiplier == 2 and out.shape == (2, 6, 6, 6)
    assert torch.allclose(out[:, :3], 3 * x) and torch.allclose(out[:, 3:], 3 * x)


def test_dag_cell_reduction_strides_only_edges_from_inputs() -> None:
    nodes = [[("max_pool_3x3", 0), ("sep_conv_3x3", 1)], [("sep_conv_3x3", 2), ("skip_connect", 0)]]
    cell = DAGCell(nodes, 4, n_inputs=2, reduction=True)
    first_conv = [next(m for m in e.modules() if isinstance(m, torch.nn.Conv2d)) for e in cell.edges[1:3]]
    assert first_conv[0].stride == (2, 2)  # from input node 1
    assert first_conv[1].stride == (1, 1)  # from intermediate node 2, already reduced
    assert isinstance(cell.edges[3], FactorizedReduce)
    assert cell(torch.randn(2, 4, 9, 9), torch.randn(2, 4, 9, 9)).shape == (2, 8, 5, 5)


def test_dag_cell_drop_path_spares_identity_edges() -> None:
    x = torch.randn(8, 3, 4, 4)
    identity_only = DAGCell([[("skip_connect", 0), ("skip_connect", 1)]], 3, 2).train()
    assert torch.equal(identity_only(x, x, drop_prob=0.9), 2 * x)
    pooled = DAGCell([[("avg_pool_3x3", 0), ("max_pool_3x3", 1)]], 3, 2).train()
    torch.manual_seed(1)
    dropped = pooled(x, x, drop_prob=0.9)
    assert not torch.equal(dropped, pooled(x, x))
    assert torch.equal(pooled.eval()(x, x, drop_prob=0.9), pooled(x, x))


@pytest.mark.parametrize("nodes, message", [
    ([[]], "no incoming edge"),
    ([[("skip_connect", 1)]], "not an earlier node"),
])
def test_dag_cell_rejects_bad_descriptions(nodes: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DAGCell(nodes, 4, n_inputs=1)


def test_unknown_operation_names_the_known_ones() -> None:
    with pytest.raises(Exception, match="unknown operation 'conv_9x9'.*sep_conv_3x3"):
        DAGCell([[("conv_9x9", 0)]], 4, n_inputs=1)


@pytest.mark.parametrize("space_name", SPACES.names(trainable=True))
def test_every_trainable_space_builds_trains_and_measures(space_name: str) -> None:
    """The model contract with default model arguments: 8x8 input, logits, backward, params, FLOPs."""
    space = create_space(space_name)
    arch = space.sample(np.random.default_rng(0))
    model = space.build(arch, num_classes=5, in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    out = model.train()(x)
    logits = out[0] if isinstance(out, tuple) else out
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.eval()(x).shape == (2, 5)
    assert count_params(model) > 0 and count_flops(model, (1, 1, 8, 8)) > 0
    if hasattr(model, "drop_path_prob"):
        assert model.drop_path_prob == 0.0


@pytest.mark.parametrize("side", [7, 8])
def test_one_by_one_stride_two_convolutions_read_the_stride_two_grid(side: int) -> None:
    """Run as stride-1 convolutions on the subsampled grid (a PyTorch CPU kernel corrupts the heap otherwise), they
    compute what stride-2 convolutions compute, odd sizes included."""
    import torch.nn.functional as F

    from nasforge.ops.cell_ops import ReLUConvBN
    from nasforge.ops.macro_ops import EnasFactorizedReduction

    torch.manual_seed(0)
    x = torch.randn(4, 6, side, side)
    r = torch.relu(x)

    def strided(inp: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
        return F.conv2d(inp, conv.weight, stride=2)

    def shifted(inp: torch.Tensor) -> torch.Tensor:
        return F.pad(inp, (0, 1, 0, 1))[:, :, 1:, 1:]

    conv = ReLUConvBN(6, 8, 1, 2, 0, True).eval()
    assert torch.allclose(conv(x), conv.op[2](strided(r, conv.op[1])), atol=1e-6)
    assert torch.allclose(conv.after_relu(r), conv(x), atol=1e-6)
    darts = FactorizedReduce(6, 8, True).eval()
    expected = darts.bn(torch.cat([strided(r, darts.conv_1), strided(shifted(r), darts.conv_2)], 1))
    assert torch.allclose(darts(x), expected, atol=1e-6)
    enas = EnasFactorizedReduction(6, 8).eval()
    expected = enas.bn(torch.cat([strided(x, enas.paths[0]), strided(shifted(x), enas.paths[1])], 1))
    assert torch.allclose(enas(x), expected, atol=1e-6)
