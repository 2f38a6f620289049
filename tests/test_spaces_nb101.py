"""The NAS-Bench-101 space: pruning and canonical form, validity rules, graph hash, moves, networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge import create_space
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.models.nb101_net import NB101Cell
from nasforge.ops.measure import count_flops, count_params
from nasforge.registry import SPACES
from nasforge.spaces.base import OPERATION, STRUCTURE
from nasforge.spaces.nb101 import EDGES, prune
from nasforge.testing.conformance import check_space

# input -> conv3x3 -> maxpool -> output, plus input -> conv1x1 -> output
EXAMPLE = "adj=01010/00100/00001/00001/00000 ops=input,conv3x3-bn-relu,maxpool3x3,conv1x1-bn-relu,output"


@pytest.fixture(scope="module")
def space():
    return create_space("nb101")


def raw(edges: list[tuple[int, int]], ops: dict[int, int] | None = None) -> list[int]:
    """Choice list of a 7-slot graph given by its edges and {vertex: op index}."""
    choices = [0] * (len(EDGES) + 5)
    for e in edges:
        choices[EDGES.index(e)] = 1
    for v, op in (ops or {}).items():
        choices[len(EDGES) + v - 1] = op
    return choices


def test_conformance(space) -> None:
    check_space(space, n=40)


def test_decisions(space) -> None:
    groups = space.groups()
    assert len(groups[STRUCTURE]) == 21 and len(groups[OPERATION]) == 5
    assert all(space.decisions[i].n_choices == 2 for i in groups[STRUCTURE])
    assert space.decisions[groups[OPERATION][0]].labels == ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
    assert space.size is None and 8.0 < space.log10_size < 9.0
    assert "nb101" in SPACES.names(trainable=True)


def test_string_round_trip_and_short_names(space) -> None:
    arch = space.parse(EXAMPLE)
    assert str(arch) == EXAMPLE
    short = space.parse("adj=01010/00100/00001/00001/00000;ops=input,conv3x3,maxpool,conv1x1,output")
    assert short == arch


def test_pruning_removes_dead_vertices_and_compacts(space) -> None:
    # vertex 2 hangs off vertex 1 (no way to the output); vertex 4 is fed by nothing
    dangling = raw([(0, 1), (1, 6), (1, 2), (4, 6), (0, 5), (5, 6)], {1: 0, 2: 2, 4: 1, 5: 2})
    arch = space.make(dangling)
    assert str(arch) == "adj=0110/0001/0001/0000 ops=input,conv3x3-bn-relu,maxpool3x3,output"
    # the same pruned graph placed in other slots is the same architecture value
    elsewhere = raw([(0, 3), (3, 6), (0, 4), (4, 6)], {3: 0, 4: 2, 5: 1})
    assert space.make(elsewhere) == arch
    # in canonical form the free slots 3..5 have no edges and operation 0, and are inactive
    mask = space.active(arch.choices)
    for k, (i, j) in enumerate(EDGES):
        assert mask[k] == (i in (0, 1, 2, 6) and j in (0, 1, 2, 6))
        if not mask[k]:
            assert arch.choices[k] == 0
    assert mask[len(EDGES):] == (True, True, False, False, False)
    assert arch.choices[len(EDGES) + 2:] == (0, 0, 0)
    space.validate(arch)


def test_validity_rules(space) -> None:
    assert "no path" in space.check(raw([(0, 1), (2, 6)]))
    assert "no path" in space.check(raw([]))
    # 10 edges that all survive pruning
    ten = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (1, 6), (2, 6), (3, 6), (0, 6)]
    assert "10 edges after pruning" in space.check(raw(ten))
    # the limit applies after pruning (as the benchmark's): 11 raw edges, 8 of them on paths
    extra = [(0, 1), (1, 6), (0, 2), (2, 6), (0, 3), (3, 6), (1, 2), (0, 6), (0, 4), (1, 4), (2, 4)]
    assert space.check(raw(extra)) is None
    assert int(prune(raw(extra))[0].sum()) == 8
    # input straight to output is a valid (two-vertex) cell
    assert str(space.make(raw([(0, 6)]))) == "adj=01/00 ops=input,output"


@pytest.mark.parametrize(
    "text, message",
    [
        ("adj=0110/0001/0001/0000 ops=input,conv3x3,output", "3 operations for 4 vertices"),
        ("adj=011/001/00 ops=input,conv3x3,output", "must be 3x3"),
        ("adj=010/101/000 ops=input,conv3x3,output", "not upper triangular"),
        ("adj=011/001/000 ops=input,conv5x5,output", "unknown operation 'conv5x5'"),
        ("adj=011/001/000 ops=conv3x3,conv3x3,output", "start with 'input'"),
        ("adj=001/001/000 ops=input,conv3x3,output", None),
        ("adj=010/000/000 ops=input,conv3x3,output", "no path"),
        ("adj=01000000/00000000/00000000/00000000/00000000/00000000/00000000/00000000 "
         "ops=input,conv3x3,conv3x3,conv3x3,conv3x3,conv3x3,conv3x3,output", "8 vertices"),
        ("0110/0001", "expected 'adj="),
    ],
)
def test_parse_errors(space, text: str, message: str | None) -> None:
    if message is None:  # valid but prunes to input -> output
        assert str(space.parse(text)) == "adj=01/00 ops=input,output"
        return
    with pytest.raises(InvalidArchitecture, match=message):
        space.parse(text)


# A cell of the released NAS-Bench-101 data: its module hash and trainable parameter count there.
BENCHMARK_CELL = (
    "adj=0100110/0010000/0001001/0000010/0000010/0000001/0000000 "
    "ops=input,conv3x3-bn-relu,maxpool3x3,conv3x3-bn-relu,conv3x3-bn-relu,conv1x1-bn-relu,output"
)


def test_key_and_network_match_the_released_benchmark(space) -> None:
    arch = space.parse(BENCHMARK_CELL)
    assert space.key(arch) == "00005c142e6f48ac74fdcf73e3439874"
    # the benchmark's network (stem 128, 3 stacks of 3 cells, 10 classes): same channel and projection rules
    assert count_params(space.build(arch, num_classes=10)) == 8_555_530


def test_key_is_isomorphism_invariant(space) -> None:
    # two parallel branches listed in either order are one network
    a = space.parse("adj=0110/0001/0001/0000 ops=input,conv3x3,maxpool,output")
    b = space.parse("adj=0110/0001/0001/0000 ops=input,maxpool,conv3x3,output")
    assert a != b and space.key(a) == space.key(b)
    # a chain whose vertices cannot be reordered: order of operations matters
    c = space.parse("adj=0100/0010/0001/0000 ops=input,conv3x3,maxpool,output")
    d = space.parse("adj=0100/0010/0001/0000 ops=input,maxpool,conv3x3,output")
    assert space.key(c) != space.key(d)
    assert space.key(a) != space.key(c)


def test_key_invariant_under_random_relabelling(space) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        arch = space.sample(rng)
        matrix, ops = prune(arch.choices)
        n = len(matrix)
        # any permutation of interior vertices that keeps the matrix upper triangular is an isomorphism
        for _ in range(10):
            perm = [0, *(1 + rng.permutation(n - 2)), n - 1]
            permuted = matrix[np.ix_(perm, perm)]
            if np.any(np.tril(permuted)):
                continue
            rows = "/".join("".join(map(str, r)) for r in permuted)
            other = space.parse(f"adj={rows} ops={','.join(ops[p] for p in perm)}")
            assert space.key(other) == space.key(arch)


def test_keys_separate_different_cells(space) -> None:
    rng = np.random.default_rng(0)
    archs = {space.sample(rng) for _ in range(300)}
    by_key: dict = {}
    for a in archs:
        by_key.setdefault(space.key(a), []).append(a)
    # distinct keys for distinct pruned (matrix, ops) up to isomorphism: check a necessary condition
    for group in by_key.values():
        sizes = {(len(prune(a.choices)[0]), int(prune(a.choices)[0].sum())) for a in group}
        assert len(sizes) == 1
    assert len(by_key) > 0.8 * len(archs)


def test_moves_can_grow_a_cell(space) -> None:
    smallest = space.parse("adj=01/00 ops=input,output")
    grown = [n for n in space.neighbours(smallest) if len(prune(n.choices)[0]) == 3]
    assert len(grown) == 3  # one new vertex, each of the three operations
    rng = np.random.default_rng(0)
    arch, largest = smallest, 2
    for _ in range(300):
        arch = space.mutate(arch, rng)
        space.validate(arch)
        largest = max(largest, len(prune(arch.choices)[0]))
    assert largest == 7


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 16, 16), (2, 3, 9, 9)])
def test_sampled_models_build_run_and_measure(space, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    for _ in range(3):
        model = space.build(space.sample(rng), num_classes=4, in_channels=shape[1], C=8, stacks=2, cells=1)
        logits = model.train()(torch.randn(*shape))
        assert logits.shape == (2, 4)
        logits.sum().backward()
        assert all(p.grad is not None for p in model.parameters())
        assert count_params(model) > 0 and count_flops(model, (1, *shape[1:])) > 0


def test_default_network_shape(space) -> None:
    # NAS-Bench-101's network: 128-channel stem, 3 stacks of 3 cells, widths 128/256/512
    model = space.build(space.parse(EXAMPLE), num_classes=10)
    cells = [m for m in model.modules() if isinstance(m, NB101Cell)]
    assert len(cells) == 9
    assert [c.channels[-1] for c in cells] == [128] * 3 + [256] * 3 + [512] * 3
    assert model.classifier.in_features == 512


def test_model_arguments_are_checked(space) -> None:
    arch = space.parse(EXAMPLE)
    with pytest.raises(ConfigError, match="'width'"):
        space.build(arch, num_classes=10, width=2)
    with pytest.raises(ConfigError, match="C must be at least 5"):
        space.build(arch, num_classes=10, C=4)
