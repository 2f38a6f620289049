"""Zoph & Le's macro space: decisions, strings, the network (inputs, padding, loose ends), the controller."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge import create_space
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.models.zoph_net import ZophLayer, ZophNet, concat_padded, loose_ends
from nasforge.ops.measure import count_params
from nasforge.registry import SPACES
from nasforge.spaces.base import STRUCTURE
from nasforge.strategies.policies import LSTMController
from nasforge.testing.conformance import check_space


@pytest.mark.parametrize("args", [{"layers": 1}, {"layers": 4}, {"layers": 6, "strides": True}])
def test_conformance(args: dict) -> None:
    check_space(create_space("zoph", **args), n=10)


def test_default_is_their_cifar10_search() -> None:
    space = create_space("zoph")
    assert space.layers == 15 and "zoph" in SPACES.names(trainable=True)
    assert [d.name for d in space.decisions[:3]] == ["layer0_height", "layer0_width", "layer0_filters"]
    assert space.decisions[2].labels == ("24", "36", "48", "64")
    # 15 layers x 3 decisions + one input decision per pair of layers
    assert len(space.decisions) == 15 * 3 + 15 * 14 // 2


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="heights"):
        create_space("zoph", heights=[2, 4])
    with pytest.raises(ConfigError, match="layres"):
        create_space("zoph", layres=3)


def test_inputs_are_skip_links_over_all_earlier_layers() -> None:
    space = create_space("zoph", layers=4, strides=True)
    links = space.skip_links()
    assert sorted(links) == space.groups()[STRUCTURE]
    assert sorted(links.values()) == [(i, j) for i in range(4) for j in range(i)]
    assert all(space.decisions[k].name == f"layer{i}<-{j}" for k, (i, j) in links.items())


def test_strings_round_trip_and_explain_errors() -> None:
    space = create_space("zoph", layers=3, strides=True)
    text = "0: 3x3 36 | 1: 5x7 48/2 <- 0 | 2: 1x1 24/3 <- 0,1"
    arch = space.parse(text)
    assert str(arch) == text
    plan = space.layer_plan(arch.choices)
    assert plan[1] == ZophLayer(5, 7, 48, 2, (0,)) and plan[2].inputs == (0, 1)
    for bad, reason in [("0: 3x3 36 | 1: 5x7 48", "3 layers"), ("0: 3x3 36 | 1: 4x3 36 | 2: 1x1 24", "height 4"),
                        ("0: 3x3 36 | 1: 3x3 36 <- 1 | 2: 1x1 24", "earlier layers 0..0"),
                        ("0: 3x3 36 | 1: 3x3 36 <- 0,0 | 2: 1x1 24", "twice"),
                        ("0: 3x3 36 | 1: 3x3 36/5 | 2: 1x1 24", "stride 5")]:
        with pytest.raises(InvalidArchitecture, match=reason):
            space.parse(bad)
    with pytest.raises(InvalidArchitecture, match="space.strides=true"):
        create_space("zoph", layers=1).parse("0: 3x3 36/2")


def test_network_follows_the_plan() -> None:
    plan = [ZophLayer(3, 3, 24, 1, ()), ZophLayer(1, 5, 36, 2, (0,)), ZophLayer(3, 1, 48, 1, ()),
            ZophLayer(5, 5, 64, 1, (0, 1))]
    assert loose_ends(plan) == (2, 3)  # layer 2 takes the image and feeds nothing
    net = ZophNet(plan, num_classes=10, in_channels=3)
    convs = [3 * 24 * 9, 24 * 36 * 5, 3 * 48 * 3, (24 + 36) * 64 * 25]
    expected = sum(convs) + 2 * (24 + 36 + 48 + 64) + (48 + 64) * 10 + 10
    assert count_params(net) == expected
    out = net(torch.randn(2, 3, 9, 9))
    assert out.shape == (2, 10)


def test_smaller_maps_are_zero_padded_bottom_right() -> None:
    big, small = torch.ones(1, 1, 4, 4), torch.full((1, 2, 2, 2), 2.0)
    out = concat_padded([big, small])
    assert out.shape == (1, 3, 4, 4)
    assert out[0, 1:, :2, :2].eq(2).all() and out[0, 1:, 2:, :].eq(0).all() and out[0, 1:, :, 2:].eq(0).all()


def test_built_network_trains_a_step() -> None:
    space = create_space("zoph", layers=4, strides=True)
    arch = space.sample(np.random.default_rng(3))
    net = space.build(arch, num_classes=10, in_channels=1, scale=0.25)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_reinforce_chooses_inputs_by_anchor_attention() -> None:
    space = create_space("zoph", layers=4)
    strategy = nf.create_strategy("reinforce", space, 0)
    assert isinstance(strategy.policy, LSTMController)
    steps = [step[0] for step in strategy.policy.plan]
    assert steps.count("skip") == 3  # layers 1, 2, 3 choose inputs; layer 0 only anchors
    assert steps.count("decide") == 4 * 3
    archs = strategy.ask(4)
    strategy.tell(archs, [nf.Result(float(sum(a.choices))) for a in archs])
    assert all(a.space == "zoph" for a in archs)
