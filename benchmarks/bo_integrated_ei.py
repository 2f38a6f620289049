"""Issue 16 experiment, not kept: ``bo`` with expected improvement integrated over the GP's hyper-parameters.

At each refit, besides the MAP fit, ``samples - 1`` hyper-parameter vectors are drawn from a Laplace approximation
around it (the Hessian of the negative log posterior by central differences of its gradient, eigenvalues floored,
covariance scaled by ``temper``); EI is averaged over the models (Snoek et al. 2012 integrate it by MCMC). Local
steps still use the MAP model's mean. A prototype: the whole-space path and ask(1) only, no saved state.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bo_integrated_ei.py --real ../shared/data/nb201-cifar10.csv \
        --tables real-val12,synth-1 --strategies boint --seeds 30 [--set boint.temper=0.25 | boint.samples=10]

Any argument of ``nb201_sample_efficiency.py`` works; this script only registers ``boint`` and runs it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from scipy import special

from nasforge.predictors.acquisition import GrowableMatrix, log_expected_improvement
from nasforge.registry import STRATEGIES
from nasforge.strategies.bo import BayesianOptimisation, BOConfig


@dataclass
class IntConfig(BOConfig):
    samples: int = 5  # models: the MAP fit plus samples-1 Laplace draws
    temper: float = 1.0  # scale of the Laplace covariance


@STRATEGIES.register("boint", guided=True)
class BOIntegrated(BayesianOptimisation):
    Config = IntConfig

    def __init__(self, space, config=None, seed=0) -> None:
        super().__init__(space, config, seed)
        self.extra: list = []
        self.extra_V: list = []

    def _hessian(self, theta, X, y):
        d = len(theta)
        h = 1e-4
        H = np.zeros((d, d))
        for i in range(d):
            e = np.zeros(d)
            e[i] = h
            H[i] = (self.gp._neg_log_posterior(theta + e, X, y)[1] - self.gp._neg_log_posterior(theta - e, X, y)[1]) / (2 * h)
        return 0.5 * (H + H.T)

    def _refit(self):
        super()._refit()
        self.extra, self.extra_V = [], []
        if self.config.samples <= 1 or self._all is None and not self.exhaustive:
            return
        X, y = self.gp.X, self._targets()
        theta = self.gp.fitted_theta
        H = self._hessian(theta, X, y)
        w, U = np.linalg.eigh(H)
        w = np.maximum(w, 1e-2)
        cov = (U / w) @ U.T * self.config.temper
        lo, hi = np.array(self.gp._bounds()).T
        for _ in range(self.config.samples - 1):
            t = np.clip(self.rng.multivariate_normal(theta, cov), lo, hi)
            g = copy.deepcopy(self.gp)
            g.theta = t
            g.factorise(X)
            self.extra.append(g)
        if self._all is not None:
            self._build_extra_V()

    def _build_extra_V(self):
        self.extra_V = []
        for g in self.extra:
            V = GrowableMatrix()
            V.assign(g.cross(self._all.C))
            self.extra_V.append(V)

    def _add_input(self, x):
        super()._add_input(x)
        for k, g in enumerate(self.extra):
            row = g.extend(x)
            if row is None:
                g.factorise(np.vstack([g.X, x[None, :]]))
                if self._all is not None:
                    self.extra_V[k].assign(g.cross(self._all.C))
            elif self._all is not None and k < len(self.extra_V):
                self.extra_V[k].append_row(g.cross_row(x, self._all.C, row, self.extra_V[k].view))

    def _whole_acquisition(self, z, mean, std, best):
        logs = [super()._whole_acquisition(z, mean, std, best)]
        if self.extra and len(self.extra_V) != len(self.extra):
            self._build_extra_V()
        for g, V in zip(self.extra, self.extra_V):
            m, s = g.posterior(g.solve_lower(z), V.view)
            logs.append(log_expected_improvement(m, s, best, self.config.xi))
        return special.logsumexp(np.stack(logs), axis=0)


if __name__ == "__main__":
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parent / "nb201_sample_efficiency.py"), run_name="__main__")
