"""bo's model with other features beside the one-hot encoding, on NAS-Bench-201-format tables (issue 16).

The variants tried before ``count_prior`` was kept. Each adds covariance terms (``v * c ** power``, ``c`` the
normalised dot product of a feature block, :class:`nasforge.predictors.gp.DotTerm`) to the one-hot model:

- ``counts`` (bo's own ``count_prior``, powers 1 and 2) and ``counts1`` (power 1 only): how often each
  operation occurs, a one-hot histogram (:class:`nasforge.predictors.features.OperationCounts`);
- ``paths``: the cell's four input-to-output paths (edges 3<-0; 1<-0, 3<-1; 2<-0, 3<-2; 1<-0, 2<-1, 3<-2),
  each one-hot over its sequence of operations, empty when a ``none`` cuts it, plus one "no path" column;
- ``bananas``: White et al.'s path encoding (BANANAS): how many live paths carry each sequence of 1 to 3
  operations, whichever edges they take.

Runs like ``nb201_sample_efficiency.py`` (same tables, same count of evaluations to the optimum):

    PYTHONPATH=src python benchmarks/bo_features.py --tables real-val12,synth-1 --variants counts,paths --prior 1
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import nb201_sample_efficiency as se
import numpy as np

from nasforge.predictors.features import FeatureBlock, OperationCounts
from nasforge.result import Result
from nasforge.spaces.base import SearchSpace
from nasforge.strategies.bo import BayesianOptimisation, BOConfig

#: the input-to-output paths of a NAS-Bench-201 cell, as edge indices (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))


def _sequence_index(ops: Sequence[int]) -> int:
    """Index of a sequence of non-``none`` operations (choices 1-4) among all sequences of its length."""
    index = 0
    for op in ops:
        index = index * 4 + (op - 1)
    return index


def paths_by_position(choices: Sequence[int]) -> np.ndarray:
    blocks, alive = [], False
    for path in PATHS:
        block = np.zeros(4 ** len(path))
        ops = [choices[e] for e in path]
        if all(ops):  # choice 0 is none
            block[_sequence_index(ops)], alive = 1.0, True
        blocks.append(block)
    return np.concatenate(blocks + [np.array([0.0 if alive else 1.0])])


def paths_bananas(choices: Sequence[int]) -> np.ndarray:
    blocks, alive = [np.zeros(4 ** n) for n in (1, 2, 3)], False
    for path in PATHS:
        ops = [choices[e] for e in path]
        if all(ops):
            blocks[len(path) - 1][_sequence_index(ops)] += 1.0
            alive = True
    return np.concatenate(blocks + [np.array([0.0 if alive else 1.0])])


Make = Callable[[SearchSpace], FeatureBlock]  # a variant's extra block, for the space


class FeatureBO(BayesianOptimisation):
    """bo whose model also has terms on the ``extra`` feature blocks (after bo's own, which its config sets)."""

    extra: tuple[Make, ...] = ()

    def feature_blocks(self) -> list[FeatureBlock]:
        return super().feature_blocks() + [make(self.space) for make in self.extra]


def variant(name: str, prior: float) -> tuple[float, tuple[Make, ...]]:
    """bo's ``count_prior`` and the extra feature blocks of a variant."""
    def counts1(space: SearchSpace) -> FeatureBlock:
        counts = OperationCounts(space)
        return FeatureBlock(counts, counts.size, (1,), prior)

    def paths(fn: Callable[[Sequence[int]], np.ndarray]) -> Make:
        return lambda space: FeatureBlock(lambda a: fn(a.choices), len(fn((1,) * 6)), (1,), prior)

    table = {"counts": (prior, ()), "counts1": (0.0, (counts1,)), "paths": (0.0, (paths(paths_by_position),)),
             "bananas": (0.0, (paths(paths_bananas),)), "counts+bananas": (prior, (paths(paths_bananas),))}
    if name not in table:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(table)}")
    return table[name]


def diagnose(strategy: BayesianOptimisation, table: str, real: str, budget: int) -> None:
    """Why a search misses the optimum: run it until it finds the optimum or the budget ends. Then print, for
    each of the optimum's options, how many observed cells share it and their best rank, the observed cells with
    the rarest, and what the model predicts for the table's ten best unseen cells (rank-normalised units, with
    the worst observed score)."""
    tables = se.suites(real)
    raw = {**tables["dev"], **tables["held"]}[table]()
    space = strategy.space
    value = {space.parse(r[0]).choices: r[1] for r in raw}
    order = sorted(value, key=lambda c: -value[c])
    rank = {c: i + 1 for i, c in enumerate(order)}
    for i in range(budget):
        (arch,) = strategy.ask(1)
        strategy.tell([arch], [Result(value[arch.choices], {})])
        if arch.choices == order[0]:
            print(f"found the optimum at evaluation {i + 1}")
            break
    else:
        print(f"not found within {budget}")
    best = order[0]
    shared = [[a for a in strategy.obs_archs if a.choices[k] == best[k]] for k in range(len(best))]
    for k, d in enumerate(space.decisions):
        ranks = [rank[a.choices] for a in shared[k]]
        print(f"{d.name} = {d.label(best[k])}: {len(ranks)} observed, best rank {min(ranks, default='-')}")
    rarest = min(range(len(best)), key=lambda k: len(shared[k]))
    print(f"the observed cells with the rarest of them ({space.decisions[rarest].name}):")
    for a in shared[rarest]:
        print(f"  rank {rank[a.choices]:5d}  {a}")
    y = strategy._targets()
    seen = {a.choices for a in strategy.obs_archs}
    top = [space.make(c) for c in order[:10] if c not in seen]
    if top:
        mean, sd = strategy.gp.predict(y, strategy.encode(top))
        print(f"worst observed score {y.min():+.2f}; the ten best cells' predictions (unseen ones):")
        for arch, m, s in zip(top, mean, sd):
            print(f"  rank {rank[arch.choices]:2d}  mean {m:+.2f}  sd {s:.2f}  {arch}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="dev")
    p.add_argument("--variants", default="counts,counts1,paths,bananas,counts+bananas")
    p.add_argument("--prior", type=float, default=1.0, help="prior median of the extra terms' variances")
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--real", default=se.REAL)
    p.add_argument("--per-seed", action="store_true")
    p.add_argument("--diagnose", type=int, metavar="SEED",
                   help="instead: follow this seed of the first variant on the first table (see diagnose)")
    a = p.parse_args()
    variants = {name: variant(name, a.prior) for name in a.variants.split(",")}

    def create(name: str, space: SearchSpace, seed: int, **_: object) -> BayesianOptimisation:
        count_prior, extra = variants[name]
        return type("Variant", (FeatureBO,), {"extra": extra})(space, BOConfig(count_prior=count_prior), seed)

    if a.diagnose is not None:
        name = a.variants.split(",")[0]
        diagnose(create(name, se.NB201Space(), a.diagnose), a.tables.split(",")[0], a.real, a.budget)
        return
    se.create_strategy = create  # the harness creates strategies by name: ours are the variants
    se.main([f"--tables={a.tables}", f"--strategies={a.variants}", f"--seeds={a.seeds}",
                  f"--budget={a.budget}", f"--real={a.real}", *(["--per-seed"] if a.per_seed else [])])


if __name__ == "__main__":
    main()
