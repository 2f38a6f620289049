"""The NAS-Bench-201 network built by the nb201 space (test_spaces_nb201_strings.py tests its strings)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge import SPACES, create_space
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.models import NB201Network
from nasforge.ops.measure import count_flops, count_params
from nasforge.testing.conformance import check_space

ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def space():
    return create_space("nb201")


def test_registered_as_trainable_and_conformant(space) -> None:
    assert "nb201" in SPACES.names(trainable=True)
    check_space(space, n=10)


@pytest.mark.parametrize("text, params, mflops", [
    # NATS-Bench topology search space, CIFAR-10: the largest and smallest cells (params in millions,
    # FLOPs in millions of multiply-accumulates)
    (ALL_CONV, 1.531546, 220.11968),
    (ALL_NONE, 0.073306, 7.78304),
])
def test_full_size_network_matches_published_size(space, text: str, params: float, mflops: float) -> None:
    model = space.build(space.parse(text), num_classes=10)
    assert count_params(model) == round(params * 1e6)
    assert count_flops(model, (1, 3, 32, 32)) / 2 == pytest.approx(mflops * 1e6)


def test_layout_stem_stages_and_reductions(space) -> None:
    model = space.build(space.parse(ALL_CONV), num_classes=7, C=8, N=2)
    assert isinstance(model, NB201Network)
    assert model.stem[0].out_channels == 8
    assert len(model.cells) == 3 * 2 + 2  # N cells per stage, two residual reduction blocks
    assert model.classifier.in_features == 32 and model.classifier.out_features == 7


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (3, 3, 11, 13), (2, 3, 32, 32)])
def test_sampled_networks_run_forward_and_backward(space, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    for _ in range(3):
        model = space.build(space.sample(rng), num_classes=4, in_channels=shape[1], C=4, N=1)
        logits = model(torch.randn(*shape))
        assert logits.shape == (shape[0], 4)
        torch.nn.functional.cross_entropy(logits, torch.zeros(shape[0], dtype=torch.long)).backward()
        assert model.classifier.weight.grad.abs().sum() > 0


def test_cells_with_only_none_edges_ignore_the_input(space) -> None:
    """Why the all-"none" cell scores 10% on CIFAR-10: every cell outputs zeros."""
    model = space.build(space.parse(ALL_NONE), num_classes=10, C=4, N=1).eval()
    a, b = model(torch.randn(2, 3, 16, 16)), model(torch.randn(2, 3, 16, 16))
    assert torch.allclose(a, b)


def test_parameters_grow_with_operations_and_size(space) -> None:
    conv = count_params(space.build(space.parse(ALL_CONV), num_classes=10, C=4, N=1))
    none = count_params(space.build(space.parse(ALL_NONE), num_classes=10, C=4, N=1))
    wider = count_params(space.build(space.parse(ALL_CONV), num_classes=10, C=8, N=1))
    assert none < conv < wider


def test_bad_model_arguments_name_the_key(space) -> None:
    arch = space.parse(ALL_CONV)
    with pytest.raises(ConfigError, match="'layers'"):
        space.build(arch, num_classes=10, layers=3)
    with pytest.raises(ConfigError, match="C"):
        space.build(arch, num_classes=10, C=0)
    with pytest.raises(InvalidArchitecture):
        space.build(create_space("toy").sample(np.random.default_rng(0)), num_classes=10)


@pytest.mark.parametrize("text, effective", [
    (ALL_CONV, ALL_CONV),  # every edge counts
    # node 1 feeds nothing that reaches the output: its input edge is cut off
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
     "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"),
    # no input reaches node 2: what leaves it is cut off, whatever enters it from node 1 too
    ("|none~0|+|none~0|avg_pool_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|",
     "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"),
    # no input reaches the output: every such cell is the same (zeros)
    ("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", ALL_NONE),
    ("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|nor_conv_3x3~2|", ALL_NONE),
])
def test_effective_cuts_off_operations_no_input_reaches_or_that_reach_no_output(space, text: str,
                                                                                 effective: str) -> None:
    arch = space.parse(text)
    assert space.to_string(space.effective(arch).choices) == effective
    assert space.effective(space.effective(arch)) == space.effective(arch)
    assert (space.effective(arch) is arch) == (text == effective)


def test_effective_forms_of_the_whole_space() -> None:
    """9,445 forms of 15,625 cells: the 341 cells whose output no input reaches are one of them."""
    import itertools

    space = create_space("nb201")
    forms: dict[tuple, int] = {}
    for choices in itertools.product(range(5), repeat=6):
        form = space.effective(space.make(choices)).choices
        forms[form] = forms.get(form, 0) + 1
    assert len(forms) == 9445 and forms[(0,) * 6] == 341


def test_operations_outside_the_effective_cell_do_not_change_what_the_network_computes(space) -> None:
    """Built networks (eval mode): changing the convolution weights of every edge the effective form cuts off
    leaves the output as it is (an edge whose source no input reaches sees zeros; batch norm's shift after it
    is a constant, so only the weights are changed); changing those of a kept edge does not."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 5:
        arch = space.sample(rng)
        form = space.effective(arch).choices
        cut = [k for k, (a, b) in enumerate(zip(arch.choices, form)) if a != b and a in (2, 3)]  # convolutions
        kept = [k for k, b in enumerate(form) if b in (2, 3)]
        if not cut or not kept:
            continue
        model = space.build(arch, num_classes=10, C=4, N=1).eval()
        with torch.no_grad():
            before = model(x)
            for cell in (m for m in model.modules() if hasattr(m, "edges")):
                for k in cut:
                    for conv in (m for m in cell.edges[k].modules() if isinstance(m, torch.nn.Conv2d)):
                        conv.weight.normal_()
            assert torch.equal(model(x), before), space.to_string(arch.choices)
            for cell in (m for m in model.modules() if hasattr(m, "edges")):
                for conv in (m for m in cell.edges[kept[0]].modules() if isinstance(m, torch.nn.Conv2d)):
                    conv.weight.normal_()
            assert not torch.allclose(model(x), before)
        checked += 1
