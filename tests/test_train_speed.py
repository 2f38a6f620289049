"""The training step's speed-ups compute the same numbers: channels-last training, one ReLU per cell input shared by
its edges, concatenation with dense gradients, and the opt-in bfloat16 autocast on the CPU."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from nasforge import train as D
from nasforge.ops.cell_ops import DAGCell, channel_cat
from nasforge.train.loop import Stepper, TrainConfig, cpu_has_bf16, fit

ROOT = Path(__file__).resolve().parents[1]
CL = torch.channels_last


def _grads(cell: nn.Module, *inputs: torch.Tensor, seed: int = 0, drop_prob: float = 0.0):
    xs = [x.clone().requires_grad_() for x in inputs]
    torch.manual_seed(seed)
    out = cell(*xs, drop_prob=drop_prob)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), [x.grad for x in xs], [p.grad.clone() for p in cell.parameters()]


@pytest.mark.parametrize("drop_prob", [0.0, 0.3])
def test_a_cell_input_read_by_several_relu_edges_goes_through_one_relu(drop_prob: float) -> None:
    nodes = [[("sep_conv_3x3", 0), ("sep_conv_3x3", 1)], [("dil_conv_3x3", 0), ("skip_connect", 1)],
             [("nor_conv_3x3", 1), ("nor_conv_1x1", 2)], [("max_pool_3x3", 3), ("sep_conv_5x5", 2)]]
    torch.manual_seed(0)
    shared = DAGCell(nodes, 4, n_inputs=2).train()
    plain = copy.deepcopy(shared)
    plain.shared_relu = set()
    # input 0: a sep and a dil conv; input 1: a sep conv and a nor conv (and a skip); node 2: two convs
    assert shared.shared_relu == {0, 1, 2}
    calls = []
    for m in shared.edges.modules():
        if isinstance(m, nn.ReLU):
            m.register_forward_hook(lambda *_: calls.append(1))
    x0, x1 = torch.randn(3, 4, 6, 6), torch.randn(3, 4, 6, 6)
    out, in_grads, p_grads = _grads(shared, x0, x1, drop_prob=drop_prob)
    # only the second ReLU inside each separable convolution runs as a module: the edges' first ReLUs are shared
    assert len(calls) == 3
    ref_out, ref_in, ref_p = _grads(plain, x0, x1, drop_prob=drop_prob)
    assert torch.allclose(out, ref_out, atol=1e-6)
    for a, b in zip(in_grads + p_grads, ref_in + ref_p):
        assert torch.allclose(a, b, atol=1e-5)


def test_an_nb201_cell_shares_the_relu_of_inputs_with_several_convolutions() -> None:
    best = [[("nor_conv_3x3", 0)], [("nor_conv_3x3", 0), ("nor_conv_3x3", 1)],
            [("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_1x1", 2)]]
    assert DAGCell(best, 4, n_inputs=1, output=(3,)).shared_relu == {0, 1}
    pools = [[("avg_pool_3x3", 0)], [("avg_pool_3x3", 0), ("nor_conv_3x3", 1)]]
    assert DAGCell(pools, 4, n_inputs=1, output=(2,)).shared_relu == set()


def test_concatenated_cell_outputs_give_dense_channels_last_gradients() -> None:
    parts = [torch.randn(2, c, 5, 5).contiguous(memory_format=CL).requires_grad_() for c in (3, 4, 3)]
    out = channel_cat(parts)
    assert torch.equal(out, torch.cat(parts, dim=1))
    grad = torch.randn(out.shape).contiguous(memory_format=CL)
    grads = torch.autograd.grad(out, parts, grad)
    for g, ref in zip(grads, grad.split([3, 4, 3], dim=1)):
        assert torch.equal(g, ref)
        assert g.is_contiguous(memory_format=CL)  # a strided slice makes batch norm's backward ~10x slower
    with torch.no_grad():
        assert torch.equal(channel_cat(parts), out)


class _ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="module")
def digits() -> D.Splits:
    return D.make_splits(D.load_dataset("digits"), D.DataConfig(val_size=0.0))


def _train(digits: D.Splits, **config) -> tuple[nn.Module, float]:
    torch.manual_seed(0)
    model = _ConvNet()
    result = fit(model, digits.train, digits.normalise, TrainConfig(epochs=1, **config),
                 generator=torch.Generator().manual_seed(0), flip=digits.flip)
    return model, result.train_loss


def test_channels_last_training_gives_the_same_numbers(digits: D.Splits) -> None:
    fast, fast_loss = _train(digits)
    slow, slow_loss = _train(digits, channels_last=False)
    assert fast.body[3].weight.is_contiguous(memory_format=CL)
    assert not slow.body[3].weight.is_contiguous(memory_format=CL)
    assert fast_loss == pytest.approx(slow_loss, rel=1e-4)
    for a, b in zip(fast.state_dict().values(), slow.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-3)
    # a model trained channels-last still takes ordinary inputs
    x = digits.normalise(digits.test.x[:5])
    assert torch.allclose(fast.eval()(x), slow.eval()(x), atol=1e-3)


def test_cpu_bf16_autocasts_the_step_and_keeps_float32_weights() -> None:
    torch.manual_seed(0)
    model = _ConvNet()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    stepper = Stepper(model, TrainConfig(cpu_bf16=True), steps_per_epoch=10, device=torch.device("cpu"))
    loss, logits, _ = stepper.step(x, y)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(torch.tensor(loss))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    plain = Stepper(copy.deepcopy(model), TrainConfig(cpu_bf16=False), steps_per_epoch=10, device=torch.device("cpu"))
    assert plain.step(x, y)[1].dtype == torch.float32
    assert TrainConfig().cpu_bf16 is None  # by default: where the CPU has bf16 units
    auto = Stepper(copy.deepcopy(model), TrainConfig(), steps_per_epoch=10, device=torch.device("cpu"))
    assert auto.use_bf16 == cpu_has_bf16()


def test_reference_speed_reads_nb201_strings_as_xautodl_does() -> None:
    spec = importlib.util.spec_from_file_location("reference_speed", ROOT / "benchmarks" / "reference_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    genotype = module.NB201Structure(module.NB201_BEST)
    # xautodl's InferCell builds nodes 1 .. len - 1 from genotype[0 .. len - 2]
    assert len(genotype) == 4
    assert genotype[2] == (("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_1x1", 2))
