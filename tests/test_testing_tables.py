"""Generated NAS-Bench-201-format tables (stand-ins for benchmarks we do not have) and table variants."""

from __future__ import annotations

import numpy as np

from nasforge.spaces.nb201 import NB201Space
from nasforge.testing.tables import (
    COLUMNS,
    nb201_connected,
    synthetic_nb201_rows,
    with_isolated_optimum,
    with_objective,
)


def test_synthetic_table_is_complete_seeded_and_has_near_ties_at_the_top() -> None:
    rows = synthetic_nb201_rows(1)
    assert len(rows) == 15625 and all(len(r) == len(COLUMNS) for r in rows)
    assert len({r[0] for r in rows}) == 15625 and NB201Space().parse(rows[-1][0]).choices == (4,) * 6
    assert rows[:50] == synthetic_nb201_rows(1)[:50]
    val = np.sort([r[1] for r in rows])[::-1]
    assert val[0] > val[1]  # one optimum
    assert (val >= val[0] - 0.3).sum() >= 10  # but many cells close to it


def test_disconnected_cells_score_about_ten_percent() -> None:
    space = NB201Space()
    rows = synthetic_nb201_rows(3)
    cut = [r[2] for r in rows if not nb201_connected(space.parse(r[0]).choices)]
    assert len(cut) == 341 and max(cut) < 11.0  # 341 as in NAS-Bench-201 itself
    assert not nb201_connected((0, 1, 1, 0, 1, 0))  # node 3 only from node 1, which has no input
    assert nb201_connected((1, 0, 0, 0, 1, 0))


def test_favouring_none_and_pooling_puts_them_in_the_best_cells() -> None:
    for seed in (1, 2):
        rows = synthetic_nb201_rows(seed, favour_none_pool=True)
        best = sorted(rows, key=lambda r: -r[1])[:20]
        assert sum(("none" in r[0]) or ("avg_pool" in r[0]) for r in best) >= 15


def test_objective_and_isolated_optimum_variants() -> None:
    rows = synthetic_nb201_rows(5)
    other = with_objective(rows, "val_acc_12")
    assert [r[1] for r in other] == [r[3] for r in rows] and [r[2] for r in other] == [r[2] for r in rows]
    lone = with_isolated_optimum(rows, 5, margin=0.2)
    val = np.array([r[1] for r in rows])
    new = np.array([r[1] for r in lone])
    i = int(np.argmax(new))
    assert new[i] == val.max() + 0.2 and (new != val).sum() == 1
    assert int((val > val[i]).sum()) >= int(0.02 * len(val))  # it was not near the top before
