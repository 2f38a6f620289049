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

from nasforge.arch import Architecture
from nasforge.predictors.gp import DotTerm, GaussianProcess
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


Feature = tuple[Callable[[Architecture], np.ndarray], tuple[int, ...], float]  # features, powers, prior


class FeatureBO(BayesianOptimisation):
    """bo whose model also has terms on ``extra`` feature blocks (bo's own count terms are left to its config)."""

    extra: tuple[Feature, ...] = ()

    def new_gp(self) -> GaussianProcess:
        gp = super().new_gp()
        start, terms = gp.width, list(gp.terms[2 if self.config.additive else 0 :])
        probe = self.space.sample(np.random.default_rng(0))
        for features, powers, prior in self.extra:
            stop = start + len(features(probe))
            terms += [DotTerm(start, stop, p, prior) for p in powers]
            start = stop
        return GaussianProcess(gp.groups, gp.kind, gp.max_iter, self.config.additive, terms)

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        blocks = [super().encode(archs)]
        blocks += [np.array([f(a) for a in archs]).reshape(len(archs), -1) for f, _, _ in self.extra]
        return np.hstack(blocks)


def variant(name: str, prior: float) -> tuple[float, tuple[Feature, ...]]:
    """bo's ``count_prior`` and the extra feature blocks of a variant."""
    def counts1(space: SearchSpace) -> Feature:
        from nasforge.predictors.features import OperationCounts
        return OperationCounts(space), (1,), prior

    def by_position(space: SearchSpace) -> Feature:
        return (lambda a: paths_by_position(a.choices)), (1,), prior

    def bananas(space: SearchSpace) -> Feature:
        return (lambda a: paths_bananas(a.choices)), (1,), prior

    space = se.NB201Space()
    table = {"counts": (prior, ()), "counts1": (0.0, (counts1(space),)), "paths": (0.0, (by_position(space),)),
             "bananas": (0.0, (bananas(space),)), "counts+bananas": (prior, (bananas(space),))}
    if name not in table:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(table)}")
    return table[name]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default="dev")
    p.add_argument("--variants", default="counts,counts1,paths,bananas,counts+bananas")
    p.add_argument("--prior", type=float, default=1.0, help="prior median of the extra terms' variances")
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--real", default=se.REAL)
    p.add_argument("--per-seed", action="store_true")
    a = p.parse_args()
    variants = {name: variant(name, a.prior) for name in a.variants.split(",")}

    def create(name: str, space: SearchSpace, seed: int, **_: object) -> BayesianOptimisation:
        count_prior, extra = variants[name]
        return type("Variant", (FeatureBO,), {"extra": extra})(space, BOConfig(count_prior=count_prior), seed)

    se.create_strategy = create  # the harness creates strategies by name: ours are the variants
    se.main([f"--tables={a.tables}", f"--strategies={a.variants}", f"--seeds={a.seeds}",
                  f"--budget={a.budget}", f"--real={a.real}", *(["--per-seed"] if a.per_seed else [])])


if __name__ == "__main__":
    main()
