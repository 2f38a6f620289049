"""Architecture features beyond the one-hot encoding: operation counts."""

from __future__ import annotations

import numpy as np

import nasforge as nf
from nasforge.predictors.features import OperationCounts


def test_nb201_counts_are_a_histogram_of_the_cell_operations() -> None:
    space = nf.create_space("nb201")
    counts = OperationCounts(space)
    assert counts.size == 5 * 7  # five operations, each chosen on 0 to 6 of the six edges
    arch = space.parse("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    vec = counts(arch)
    assert vec.sum() == 5 and set(np.unique(vec)) == {0.0, 1.0}  # one count per operation
    chosen = {label: int(np.argmax(vec[counts.offsets[k] : counts.offsets[k + 1]]))
              for label, k in counts.index.items()}
    assert chosen == {"nor_conv_3x3": 3, "skip_connect": 2, "none": 1, "nor_conv_1x1": 0, "avg_pool_3x3": 0}


def test_cells_with_the_same_operations_on_other_edges_have_the_same_counts() -> None:
    space = nf.create_space("nb201")
    counts = OperationCounts(space)
    a = space.parse("|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|")
    b = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|nor_conv_1x1~1|nor_conv_3x3~2|")
    c = space.parse("|skip_connect~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|none~2|")
    assert np.array_equal(counts(a), counts(b)) and not np.array_equal(counts(a), counts(c))


def test_only_labelled_operation_decisions_of_every_space_are_counted() -> None:
    rng = np.random.default_rng(0)
    for name in nf.SPACES.names():
        space = nf.create_space(name)
        counts = OperationCounts(space)
        operations = [d for d in space.decisions if d.group == "operation" and d.labels]
        assert (counts.size > 0) == bool(operations), name
        for _ in range(5):
            arch = space.sample(rng)
            vec = counts(arch)
            assert vec.shape == (counts.size,) and vec.sum() == len(counts.index), name
            total = sum(int(np.argmax(vec[counts.offsets[k] : counts.offsets[k + 1]])) for k in range(len(counts.index)))
            active = space.active(arch.choices)
            assert total == sum(active[i] for i in counts.decisions), name  # inactive decisions are not counted
