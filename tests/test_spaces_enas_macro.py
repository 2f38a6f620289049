"""The ENAS macro space: decisions and skip links, strings (readable and ENAS fixed_arc), networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasforge import create_space
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.ops.measure import count_flops, count_params
from nasforge.registry import SPACES
from nasforge.spaces.base import OPERATION, STRUCTURE
from nasforge.testing.conformance import check_space


@pytest.mark.parametrize("layers", [1, 4, 12])
def test_conformance(layers: int) -> None:
    check_space(create_space("enas-macro", layers=layers), n=15)


def test_registered_as_trainable_with_structure() -> None:
    entry = SPACES.get("enas-macro")
    assert "enas-macro" in SPACES.names(trainable=True)
    assert entry.capabilities["has_structure"] is True


def test_config_is_typed() -> None:
    assert create_space("enas-macro", layers="5").layers == 5
    with pytest.raises(ConfigError, match="layres"):
        create_space("enas-macro", layres=5)
    with pytest.raises(ConfigError, match="layers"):
        create_space("enas-macro", layers=0)


def test_decisions_follow_enas_order_and_groups() -> None:
    space = create_space("enas-macro", layers=4)
    names = [d.name for d in space.decisions]
    assert names == [
        "layer0_op",
        "layer1_op", "layer1<-stem",
        "layer2_op", "layer2<-stem", "layer2<-0",
        "layer3_op", "layer3<-stem", "layer3<-0", "layer3<-1",
    ]
    groups = space.groups()
    assert [names[i] for i in groups[OPERATION]] == [f"layer{i}_op" for i in range(4)]
    assert all(space.decisions[i].n_choices == 6 for i in groups[OPERATION])
    assert all(space.decisions[i].n_choices == 2 for i in groups[STRUCTURE])


def test_skip_links_cover_every_structure_decision() -> None:
    space = create_space("enas-macro", layers=6)
    links = space.skip_links()
    assert sorted(links) == space.groups()[STRUCTURE]
    for index, (i, j) in links.items():
        assert 0 <= j < i < 6
        assert space.decisions[index].name.startswith(f"layer{i}<-")
    # every (layer, candidate) pair appears exactly once
    assert len(set(links.values())) == 6 * 5 // 2


def test_size_matches_the_enas_paper() -> None:
    # Pham et al.: 6^L x 2^(L(L-1)/2) networks, 1.6 x 10^29 for L = 12.
    space = create_space("enas-macro")
    assert space.size == 6**12 * 2**66
    assert math.isclose(space.log10_size, math.log10(1.6e29), abs_tol=0.01)
    small = create_space("enas-macro", layers=2)
    archs = list(small.enumerate())
    assert len(archs) == small.size == 72 and len(set(archs)) == 72
    for a in archs[::7]:
        small.validate(a)


def test_readable_string_and_fixed_arc() -> None:
    space = create_space("enas-macro", layers=3)
    text = "0: conv3x3 | 1: sep5x5 <- stem | 2: maxpool <- 0"
    arch = space.parse(text)
    assert arch.choices == (0, 3, 1, 5, 0, 1)
    assert str(arch) == text
    assert space.parse("0  3 1\n5 0 1") == arch
    assert space.parse("0:conv3x3|1:sep5x5<-stem|2:maxpool<-0") == arch
    assert str(space.parse("0: avgpool | 1: conv5x5 | 2: sep3x3 <- stem,0")) == (
        "0: avgpool | 1: conv5x5 | 2: sep3x3 <- stem,0"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("0: conv3x3 | 1: conv7x7", "unknown operation 'conv7x7'"),
        ("0: conv3x3 | 1: conv3x3 <- 0", "cannot take a skip from '0'"),
        ("0: conv3x3 | 1: conv3x3 <- stem,stem", "twice"),
        ("0: conv3x3", "expected 2 layers"),
        ("1: conv3x3 | 0: conv3x3", "numbered 1"),
        ("0: conv3x3 | 1: conv3x3 <-", "no skip source"),
        ("0 1", "need 3 integers"),
        ("0 1 2", "choice 2 not in 0..1"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    space = create_space("enas-macro", layers=2)
    with pytest.raises(InvalidArchitecture, match=message):
        space.parse(text)


def _forward_backward(model: torch.nn.Module, shape: tuple[int, ...], num_classes: int) -> None:
    logits = model.train()(torch.randn(*shape))
    assert logits.shape == (shape[0], num_classes)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert model.eval()(torch.randn(*shape)).shape == (shape[0], num_classes)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 16, 16), (2, 3, 9, 11)])
def test_sampled_models_build_run_and_measure(shape: tuple[int, ...]) -> None:
    space = create_space("enas-macro", layers=6)
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = space.sample(rng)
        model = space.build(arch, num_classes=5, in_channels=shape[1], C=4)
        _forward_backward(model, shape, 5)
        assert count_params(model) > 0 and count_flops(model, (1, *shape[1:])) > 0


def test_skip_input_adds_one_projection_block() -> None:
    # layers=6 reduces after layers 1 and 3, so layer 5 works at 4C channels: one more skip input
    # (layer 3's output, reduced anyway as layer 4's input) widens its 1x1 combining convolution by
    # exactly 4C x 4C weights.
    space = create_space("enas-macro", layers=6)
    C = 4
    plain = "0: conv3x3 | 1: conv3x3 | 2: conv3x3 | 3: conv3x3 | 4: conv3x3 | 5: conv3x3"
    p_base = count_params(space.build(space.parse(plain), num_classes=10, C=C))
    p_skip = count_params(space.build(space.parse(plain + " <- 3"), num_classes=10, C=C))
    assert p_skip - p_base == (4 * C) ** 2
    # A skip from the stem also needs the stem reduced twice: 1x1 convs C->2C and 2C->4C with their BN.
    p_stem = count_params(space.build(space.parse(plain + " <- stem"), num_classes=10, C=C))
    assert p_stem - p_base == (4 * C) ** 2 + (C * 2 * C + 2 * 2 * C) + (2 * C * 4 * C + 2 * 4 * C)
    assert space.build(space.parse(plain), num_classes=10, C=C).width == 4 * C


def test_operations_cost_what_they_should() -> None:
    space = create_space("enas-macro", layers=3)

    def flops(op: str) -> int:
        arch = space.parse(f"0: {op} | 1: {op} | 2: {op}")
        return count_flops(space.build(arch, num_classes=10, C=8), (1, 3, 16, 16))

    assert flops("conv5x5") > flops("conv3x3") > flops("sep5x5") > flops("sep3x3") > flops("maxpool")


def test_unknown_model_argument_is_named() -> None:
    space = create_space("enas-macro", layers=2)
    arch = space.sample(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="'channels'"):
        space.build(arch, num_classes=10, channels=4)
    with pytest.raises(ConfigError, match="C must be"):
        space.build(arch, num_classes=10, C=1)
