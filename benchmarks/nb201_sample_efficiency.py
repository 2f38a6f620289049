"""Samples to the optimum on NAS-Bench-201-format tables: the real one, variants and generated ones.

Stand-ins for benchmarks we do not have (issue 16): other objective columns of the real table (a
cheaper or noisier ranking of the same cells), generated tables with additive and pairwise operation
effects whose best cells are near-ties (:func:`nasforge.testing.tables.synthetic_nb201_rows`), the
``fake_nb201_rows`` table of the tests, and tables whose optimum is a lone cell. ``dev`` tables were
used while changing strategies; ``held`` tables only to judge at the end.

Each search runs ask(1)/tell against the table until it proposes the optimum (best ``val_acc_200``)
or the budget ends; every proposal counts, repeats included (as ``nasforge bench``). One line per
(table, strategy): mean evaluations to the optimum (not found counts as the budget), median, share of
seeds that found it, worst seed, and the strategy's CPU ms per query. ``--phases`` also prints the mean
evaluations until a search first proposes one of the table's 100, 30, 10, 3 best cells (by the same
column), which separates reaching the top region from telling its near-ties apart. ``--fixed-hyper N`` (``bo``
only) fits the GP's hyper-parameters once per table, on N cells of the table drawn uniformly (numpy seed 123), and
holds them fixed in every search: a check of whether fitting them from the search's own few observations is what
limits it.

    PYTHONPATH=src python benchmarks/nb201_sample_efficiency.py --tables dev --strategies bo,lanas --seeds 30
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np

from nasforge.factory import create_strategy
from nasforge.predictors.gp import normalise
from nasforge.result import Result
from nasforge.spaces.nb201 import NB201Space
from nasforge.testing.tables import (
    fake_nb201_rows,
    read_nb201_rows,
    synthetic_nb201_rows,
    with_isolated_optimum,
    with_objective,
)

REAL = "../shared/data/nb201-cifar10.csv"


def suites(real: str) -> dict[str, dict[str, Callable[[], list[tuple]]]]:
    """Table name -> rows maker, by suite (``dev`` to develop on, ``held`` to judge on)."""
    def r() -> list[tuple]:
        return read_nb201_rows(real)

    return {
        "dev": {
            "real": r,
            "fake-0": lambda: fake_nb201_rows(0),
            "real-val12": lambda: with_objective(r(), "val_acc_12"),
            "synth-1": lambda: synthetic_nb201_rows(1),
            "synth-2-nonepool": lambda: synthetic_nb201_rows(2, favour_none_pool=True),
            "isolated-real": lambda: with_isolated_optimum(r(), 0),
        },
        "held": {
            "real-oneseed": lambda: with_objective(r(), "test_acc_200_one_seed"),
            "real-test12": lambda: with_objective(r(), "test_acc_12"),
            "fake-1": lambda: fake_nb201_rows(1),
            "synth-3": lambda: synthetic_nb201_rows(3, pairwise=0.8, noise=0.08),
            "synth-4-nonepool": lambda: synthetic_nb201_rows(4, favour_none_pool=True),
            "isolated-synth-5": lambda: with_isolated_optimum(synthetic_nb201_rows(5), 5),
        },
    }


PHASES = (100, 30, 10, 3)  # --phases: evaluations until a search first proposes one of the table's k best cells


def fitted_hyper(space: NB201Space, rows: dict[tuple, tuple], n: int, args: dict[str, Any]) -> tuple:
    """``bo``'s GP hyper-parameters (and their prior) fitted on ``n`` uniformly drawn cells of the table."""
    rng = np.random.default_rng(123)
    cells = list(rows)
    picked = [cells[i] for i in rng.choice(len(cells), n, replace=False)]
    strategy = create_strategy("bo", space, 0, **args)
    gp = strategy.gp
    gp.max_iter = 200
    gp.fit(strategy.encode([space.make(list(c)) for c in picked]),
           normalise(np.array([rows[c][0] for c in picked]), strategy.config.target))
    return gp.theta.copy(), gp.prior_mean.copy()


def search(space: NB201Space, rows: dict[tuple, tuple], best: tuple, name: str, seed: int, budget: int,
           args: dict[str, Any], rank: dict[tuple, int] | None = None,
           first: dict[int, int] | None = None, hyper: tuple | None = None) -> tuple[int | None, float]:
    """Evaluations until the optimum is proposed (None: not within budget) and CPU seconds of the strategy.

    With ``rank`` (cell -> its rank in the table, 0 the best), ``first`` receives, for each k of ``PHASES``,
    the evaluation at which a top-k cell was first proposed. ``hyper`` (theta, prior mean): the GP's
    hyper-parameters, held fixed."""
    strategy = create_strategy(name, space, seed, **args)
    if hyper is not None:
        gp = strategy.gp  # type: ignore[attr-defined]
        gp.theta, gp.prior_mean = hyper[0].copy(), hyper[1].copy()
        gp.max_iter = 0  # a refit only factorises
    cpu = 0.0
    for i in range(budget):
        t = time.process_time()
        arch = strategy.ask(1)[0]
        cpu += time.process_time() - t
        row = rows[arch.choices]
        if rank is not None and first is not None:
            for k in PHASES:
                if rank[arch.choices] < k:
                    first.setdefault(k, i + 1)
        result = Result(row[0], {"test_accuracy": row[1]})
        t = time.process_time()
        strategy.tell([arch], [result])
        cpu += time.process_time() - t
        if arch.choices == best:
            return i + 1, cpu
    return None, cpu


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="dev", help="dev, held, all, or comma-separated table names")
    p.add_argument("--strategies", default="bo")
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--real", default=REAL, help="the real NB201 CIFAR-10 table")
    p.add_argument("--per-seed", action="store_true", help="also print each seed's evaluations to the optimum")
    p.add_argument("--phases", action="store_true",
                   help="also print the mean evaluations until a top-100/30/10/3 cell is first proposed")
    p.add_argument("--fixed-hyper", type=int, default=0, metavar="N",
                   help="bo: hold the GP's hyper-parameters fixed at a fit on N uniformly drawn cells of the table")
    p.add_argument("--set", nargs="*", default=[], help="strategy.key=value overrides, e.g. bo.pool_size=1000")
    a = p.parse_args(argv)
    from nasforge.config import parse_scalar

    all_tables = suites(a.real)
    flat = {**all_tables["dev"], **all_tables["held"]}
    names = (list(flat) if a.tables == "all" else list(all_tables[a.tables]) if a.tables in all_tables
             else a.tables.split(","))
    overrides: dict[str, dict[str, Any]] = {}
    for item in a.set:
        key, _, value = item.partition("=")
        strat, _, field = key.partition(".")
        overrides.setdefault(strat, {})[field] = parse_scalar(value)
    space = NB201Space()
    for table in names:
        raw = flat[table]()
        rows = {space.parse(r[0]).choices: (r[1], r[2]) for r in raw}
        best = space.parse(raw[int(np.argmax([r[1] for r in raw]))][0]).choices
        order = sorted(rows, key=lambda c: -rows[c][0])
        rank = {c: i for i, c in enumerate(order)}
        for name in a.strategies.split(","):
            hyper = fitted_hyper(space, rows, a.fixed_hyper, overrides.get(name, {})) if a.fixed_hyper else None
            steps, cpu, phases = [], 0.0, []
            for seed in range(a.seeds):
                first: dict[int, int] = {}
                found, c = search(space, rows, best, name, seed, a.budget, overrides.get(name, {}), rank, first,
                                  hyper)
                steps.append(found)
                phases.append([first.get(k, a.budget) for k in PHASES])
                cpu += c
            s = np.array([a.budget if x is None else x for x in steps])
            print(f"{table:18s} {name:8s} mean {s.mean():6.1f} median {np.median(s):5.0f} "
                  f"found {np.mean([x is not None for x in steps]):4.0%} worst {s.max():4d} "
                  f"cpu {1000 * cpu / s.sum():6.2f} ms/query  seeds {a.seeds} budget {a.budget} "
                  f"{' '.join(f'{k}={v}' for k, v in overrides.get(name, {}).items())}"
                  f"{f' fixed-hyper={a.fixed_hyper}' if a.fixed_hyper else ''}", flush=True)
            if a.phases:
                means = np.mean(phases, axis=0)
                print("  first top-k cell (k = " + "/".join(map(str, PHASES)) + "/1):",
                      " ".join(f"{m:.1f}" for m in means), f"{s.mean():.1f}", flush=True)
            if a.per_seed:
                print("  per seed:", " ".join(str(x) for x in s), flush=True)


if __name__ == "__main__":
    main()
