"""NAS-Bench-201 cells by effective form (``SearchSpace.effective``): the numbers behind issue 16's ninth round.

Prints the number of forms, then per table the mean spread (standard deviation) of the objective within each form
of two or more cells (the all-``none`` form, 341 cells whose output no input reaches, left out) against the whole
table's, how many of the table's 30 best cells have operations cut off, and whether its best cell does:

    PYTHONPATH=src python benchmarks/nb201_effective_forms.py --real ../shared/data/nb201-cifar10.csv
"""

from __future__ import annotations

import argparse
import itertools
from collections import defaultdict

import numpy as np

from nasforge.spaces.nb201 import NB201Space
from nasforge.testing.tables import fake_nb201_rows, read_nb201_rows, synthetic_nb201_rows, with_objective

REAL = "../shared/data/nb201-cifar10.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", default=REAL, help="the real NB201 CIFAR-10 table")
    a = p.parse_args()
    space = NB201Space()
    forms = {space.effective(space.make(c)).choices for c in itertools.product(range(5), repeat=6)}
    print(f"{len(forms):,} effective forms of {space.size:,} cells")
    real = read_nb201_rows(a.real)
    tables = {
        "real": real, "real-val12": with_objective(real, "val_acc_12"), "real-test12": with_objective(real, "test_acc_12"),
        "real-oneseed": with_objective(real, "test_acc_200_one_seed"), "fake-0": fake_nb201_rows(0),
        "fake-1": fake_nb201_rows(1), "synth-1": synthetic_nb201_rows(1),
        "synth-2-nonepool": synthetic_nb201_rows(2, favour_none_pool=True),
        "synth-3": synthetic_nb201_rows(3, pairwise=0.8, noise=0.08),
        "synth-4-nonepool": synthetic_nb201_rows(4, favour_none_pool=True),
    }
    for name, rows in tables.items():
        by_form: dict[tuple, list[float]] = defaultdict(list)
        for row in rows:
            by_form[space.effective(space.parse(row[0])).choices].append(row[1])
        spread = np.mean([np.std(v) for form, v in by_form.items() if len(v) > 1 and any(form)])
        top = sorted(rows, key=lambda r: -r[1])[:30]
        cut = [space.effective(space.parse(r[0])) != space.parse(r[0]) for r in top]
        print(f"{name:17s} spread within a form {spread:5.2f}, whole table {np.std([r[1] for r in rows]):5.2f}; "
              f"top 30 with cut-off operations: {sum(cut):2d}; the best cell: {'cut' if cut[0] else 'all live'}")


if __name__ == "__main__":
    main()
