"""The NAS-Bench-101 network: the benchmark's channel rule and cells of every sampled shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge import create_space
from nasforge.models.nb101_net import NB101Cell, vertex_channels
from nasforge.spaces.nb101 import prune


@pytest.fixture(scope="module")
def space():
    return create_space("nb101")


def test_vertex_channels_follow_the_benchmark() -> None:
    # three vertices feed the output: 128 split 43 + 43 + 42, earlier vertices get the remainder
    fan = np.zeros((5, 5), dtype=int)
    fan[0, 1:4] = 1
    fan[1:4, 4] = 1
    assert vertex_channels(64, 128, fan) == [64, 43, 43, 42, 128]
    # a vertex feeding only interior vertices takes the widest of them
    chain = np.zeros((5, 5), dtype=int)
    chain[0, 1] = chain[1, 2] = chain[1, 3] = chain[2, 4] = chain[3, 4] = 1
    assert vertex_channels(32, 9, chain) == [32, 5, 5, 4, 9]
    two = np.array([[0, 1], [0, 0]])
    assert vertex_channels(16, 32, two) == [16, 32]


def test_cells_give_the_output_width(space) -> None:
    rng = np.random.default_rng(5)
    x = torch.randn(2, 6, 5, 5)
    for _ in range(20):
        matrix, ops = prune(space.sample(rng).choices)
        cell = NB101Cell(matrix, ops, 6, 11)
        assert cell(x).shape == (2, 11, 5, 5)
