"""Growable spaces (the GrowableSpace contract): darts by its nodes, the growable toy; the factory's rules for them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import nasforge as nf
import nasforge.testing  # registers the toy spaces
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.factory import resolve
from nasforge.spaces.base import GrowableSpace, is_growable, random_cell, random_expansion

DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=range(2, 6))")


def test_darts_by_default_holds_full_cells_only_as_before() -> None:
    space = nf.create_space("darts")
    assert isinstance(space, GrowableSpace) and not is_growable(space)
    assert len(space.decisions) == 2 * (4 + 14) and "blocks" not in [d.name for d in space.decisions]
    assert space.parse(DARTS_V2).choices == nf.create_space("darts", min_blocks=1).parse(DARTS_V2).choices[:-1]


def test_darts_grows_both_cells_node_by_node() -> None:
    space = nf.create_space("darts", ops="enas", min_blocks=1)
    assert is_growable(space) and space.max_blocks == 4 and space.decisions[-1].name == "blocks"
    first = list(space.initial_cells())
    assert len(first) == len(set(first)) == 25 * 25 and {space.blocks(a) for a in first} == {1}
    parent = first[123]
    children = list(space.expand(parent))
    assert len(children) == len(set(children)) == (3 * 25) ** 2  # node 3: 3 input pairs, 5 x 5 operations, per cell
    for child in children[::397]:
        assert space.blocks(child) == 2
        genotype, mine = space.genotype(child), space.genotype(parent)
        assert genotype.normal[:2] == mine.normal and genotype.reduce[:2] == mine.reduce
        assert space.parse(str(child)) == child and space.parse(space.compact(child)) == child
    assert "normal_concat=range(2, 3)" in str(parent)
    darts = nf.create_space("darts", min_blocks=1)
    full = darts.parse(DARTS_V2)
    assert darts.blocks(full) == 4 and str(full) == str(nf.create_space("darts").parse(DARTS_V2))
    assert list(darts.expand(full)) == []


def test_random_cells_and_expansions_are_cells_of_the_space() -> None:
    space = nf.create_space("darts", min_blocks=1)
    rng = np.random.default_rng(0)
    parent = random_cell(space, 2, rng)
    assert parent is not None and space.blocks(parent) == 2
    drawn = [random_expansion(space, parent, rng) for _ in range(30)]
    assert len(set(drawn)) > 20
    for child in drawn:  # one of space.expand(parent): one more node, the same first nodes
        assert child is not None and space.blocks(child) == 3
        assert space.genotype(child).normal[:4] == space.genotype(parent).normal
        assert space.genotype(child).reduce[:4] == space.genotype(parent).reduce
    assert random_expansion(space, space.parse(DARTS_V2), rng) is None


def test_darts_refuses_cells_of_two_sizes_and_sizes_it_does_not_hold() -> None:
    space = nf.create_space("darts", min_blocks=2)
    one = "|sep_conv_3x3~0|sep_conv_3x3~1|//|sep_conv_3x3~0|sep_conv_3x3~1|"
    with pytest.raises(InvalidArchitecture, match="cells of 2..4 nodes"):
        space.parse(one)
    with pytest.raises(InvalidArchitecture, match="same number of nodes"):
        space.parse("|sep_conv_3x3~0|sep_conv_3x3~1|+|sep_conv_3x3~0|sep_conv_3x3~2|//|sep_conv_3x3~0|"
                    "sep_conv_3x3~1|+|sep_conv_3x3~0|sep_conv_3x3~2|+|sep_conv_3x3~0|sep_conv_3x3~3|")
    with pytest.raises(ValueError, match="min_blocks=1"):
        next(space.initial_cells())
    grows = nf.create_space("darts", min_blocks=1)
    assert grows.blocks(grows.parse(one)) == 1


def test_a_one_node_darts_network_trains_a_step() -> None:
    space = nf.create_space("darts", min_blocks=1)
    model = space.build(next(space.initial_cells()), num_classes=10, in_channels=1, C=4, layers=2)
    loss = model(torch.zeros(2, 1, 8, 8)).sum()
    loss.backward()


def test_the_growable_toy_space_is_the_tree_its_cells_grow() -> None:
    space = nf.create_space("toy-blocks", min_blocks=1)
    level = list(space.initial_cells())
    grown = list(level)
    while level:
        level = list(itertools.chain.from_iterable(space.expand(a) for a in level))
        grown += level
    assert len(grown) == len(set(grown)) == space.size == len(list(space.enumerate()))
    assert nf.create_space("toy-blocks").size == 2 * 4 * 3 * 4 * 4 * 4


def test_pnas_gets_min_blocks_1_unless_the_user_sets_it() -> None:
    config = resolve(nf.RunConfig(space="darts", strategy="pnas", evaluator="train", dataset="digits"))
    assert config.space_args == {"min_blocks": 1} and resolve(config) == config
    mine = resolve(nf.RunConfig(space="darts", strategy="pnas", evaluator="train", space_args={"min_blocks": 2}))
    assert mine.space_args == {"min_blocks": 2}
    assert resolve(nf.RunConfig(space="darts", strategy="re", evaluator="train")).space_args == {}


@pytest.mark.parametrize("config, message", [
    (dict(space="darts", strategy="pnas", evaluator="surrogate"), "evaluator: 'surrogate' scores cells of one size"),
    (dict(space="nb201", strategy="pnas", evaluator="train"), "needs a growable space, 'nb201' is not"),
    (dict(space="darts", strategy="re", evaluator="surrogate", space_args={"min_blocks": 1}),
     "holds cells smaller than full"),
])
def test_an_evaluator_or_space_that_cannot_grow_is_one_line_error(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        nf.build_components(nf.RunConfig(**config))
    assert "\n" not in str(err.value)
