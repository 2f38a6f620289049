"""One ``bo`` search on a NAS-Bench-201-format table of the sample-efficiency harness, evaluation by evaluation.

Each line: the evaluation, whether it was a local step (L) or expected improvement (E), the proposed cell's rank in
the table (0 the best), its distance in decisions to the optimum, the incumbent's rank and distance, and the
observations since the last improvement (``stall``'s counter). At ``--at`` it also prints the best observed cells and
the posterior mean and standard deviation of the table's 12 best cells. Issue 16's eleventh round quotes seed 13 of
``real-test12``:

    PYTHONPATH=src python benchmarks/bo_trace.py --real ../shared/data/nb201-cifar10.csv --table real-test12 \\
        --seed 13 --at 100
"""

from __future__ import annotations

import argparse

import numpy as np
from nb201_sample_efficiency import REAL, suites

from nasforge.factory import create_strategy
from nasforge.result import Result
from nasforge.spaces.nb201 import NB201Space


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", default=REAL)
    p.add_argument("--table", default="real-test12")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--at", type=int, default=0, help="also print the model's view after this many evaluations")
    a = p.parse_args()
    space = NB201Space()
    tables = {**suites(a.real)["dev"], **suites(a.real)["held"]}
    rows = {space.parse(r[0]).choices: r[1] for r in tables[a.table]()}
    order = sorted(rows, key=lambda c: -rows[c])
    rank = {c: i for i, c in enumerate(order)}
    best = order[0]

    def dist(c: tuple) -> int:
        return sum(x != y for x, y in zip(c, best))

    strategy = create_strategy("bo", space, a.seed)
    for i in range(300):
        local = strategy.fitted and (strategy.n_proposed + 1) % strategy.config.local_every == 0
        c = strategy.ask(1)[0].choices
        strategy.tell([space.make(c)], [Result(rows[c])])
        means = np.asarray(strategy.obs_sum) / np.asarray(strategy.obs_count)
        inc = strategy.obs_archs[int(np.argmax(means))].choices
        print(f"{i + 1:3d} {'L' if local else 'E'} rank {rank[c]:5d} d {dist(c)}  incumbent rank {rank[inc]:5d} "
              f"d {dist(inc)}  since best {strategy.n_since_best}")
        if i + 1 == a.at:
            z = strategy._targets()
            print("best observed (value, table rank, rank score):")
            for j in np.argsort(-means)[:12]:
                o = strategy.obs_archs[j].choices
                print(f"  {space.to_string(o)} {means[j]:.2f} {rank[o]} {z[j]:.2f}")
            whole = strategy._all
            mean, std = strategy.gp.posterior(strategy.gp.solve_lower(z), whole.V.view)
            print("the table's 12 best (value, posterior mean, sd):")
            for o in order[:12]:
                k = whole.index[space.key(space.make(o))]
                print(f"  {space.to_string(o)} {rows[o]:.2f} {mean[k]:.2f} {std[k]:.2f}")
        if c == best:
            break


if __name__ == "__main__":
    main()
