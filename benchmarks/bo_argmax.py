"""Issue 16 experiments, not kept: ``bo`` variants aimed at telling the top region's near-ties apart.

On the tables where ``bo`` misses the goal it reaches one of the three best cells long before the best one
(``nb201_sample_efficiency.py --phases``). These variants try to shorten that last phase:

- ``acq=ts``: Thompson sampling. One joint draw of the posterior over the ``m`` unseen cells of largest EI;
  the proposal is the draw's maximum.
- ``acq=pmax``: the unseen cell most often the maximum over ``draws`` such joint draws, an estimate of the
  probability of being the best (more exploiting than one draw). Ties go to the larger EI.
- ``clip=q``: targets are the rewards clipped below at their ``q`` quantile and standardised, instead of
  Gaussian rank scores. Rank scores spread the top observations apart (about 0.45 between the best two of 50),
  whatever their real gap (0.007 points on ``synth-1``).
- ``decisions=true``: the first-order covariance term gets one variance per decision (prior median 1/D each)
  instead of one shared, so that the fit can find which edges matter in the additive part too.

Local steps (``local_every``) are unchanged. A prototype: the whole-space path and ask(1) only.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bo_argmax.py --real ../shared/data/nb201-cifar10.csv \
        --tables real-val12,synth-1,real,synth-2-nonepool --strategies boarg --seeds 30 --set boarg.acq=pmax

Any argument of ``nb201_sample_efficiency.py`` works; this script only registers ``boarg`` and runs it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasforge.predictors.gp import DotTerm, GaussianProcess, encoding_groups
from nasforge.registry import STRATEGIES
from nasforge.strategies.bo import BayesianOptimisation, BOConfig

ACQUISITIONS = ("ei", "ts", "pmax")


@dataclass
class ArgmaxConfig(BOConfig):
    acq: str = "ei"  # "ei" (bo's), "ts" (one joint posterior draw) or "pmax" (most often the maximum of draws)
    m: int = 500  # unseen cells of largest EI that a joint draw covers
    draws: int = 64  # joint draws of pmax
    clip: float = -1.0  # >= 0: standardised rewards clipped below at this quantile as targets (< 0: rank scores)
    decisions: bool = False  # one first-order variance per decision

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.acq not in ACQUISITIONS:
            raise ValueError(f"acq must be one of {ACQUISITIONS}, got {self.acq!r}")


@STRATEGIES.register("boarg", guided=True)
class BOArgmax(BayesianOptimisation):
    Config = ArgmaxConfig

    def new_gp(self) -> GaussianProcess:
        one_hot = encoding_groups(self.space, True)
        if not (self.config.additive and self.config.decisions and one_hot.max() > 0):
            return super().new_gp()
        groups = encoding_groups(self.space, self.config.ard)
        n = int(one_hot.max()) + 1
        bounds = np.concatenate([[0], np.cumsum(np.bincount(one_hot))]).astype(int)
        terms = [DotTerm(int(bounds[g]), int(bounds[g + 1]), 1, 1.0 / n) for g in range(n)]
        terms.append(DotTerm(0, len(groups), 2))
        start = len(groups)
        for block in self.blocks:
            terms += [DotTerm(start, start + block.size, power, block.prior) for power in block.powers]
            start += block.size
        return GaussianProcess(groups, self.config.kernel, self.config.fit_iterations, False, terms)

    def _targets(self) -> np.ndarray:
        if self.config.clip < 0:
            return super()._targets()
        y = np.asarray(self.obs_sum) / np.asarray(self.obs_count)
        if len(y) < 2:
            return np.zeros_like(y)
        y = np.maximum(y, np.quantile(y, self.config.clip))
        sd = y.std()
        return (y - y.mean()) / (sd if sd > 0 else 1.0)

    def _whole_acquisition(self, z: np.ndarray, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        ei = super()._whole_acquisition(z, mean, std, best)
        if self.config.acq == "ei":
            return ei
        assert self._all is not None
        whole = self._all
        score = np.where(whole.open, ei, -np.inf)
        m = min(self.config.m, int(whole.open.sum()))
        idx = np.argpartition(-score, m - 1)[:m]
        V, C = whole.V.view[:, idx], whole.C[idx]
        cov = self.gp.kernel(C, C) - V.T @ V
        w, U = np.linalg.eigh(0.5 * (cov + cov.T) + 1e-6 * np.eye(m))
        root = U * np.sqrt(np.maximum(w, 0.0))
        draws = 1 if self.config.acq == "ts" else self.config.draws
        f = mean[idx][:, None] + root @ self.rng.standard_normal((m, draws))
        wins = np.bincount(np.argmax(f, axis=0), minlength=m).astype(float)
        out = np.full(len(mean), -np.inf)
        out[idx] = wins + 1e-3 * (ei[idx] - ei[idx].max())  # below one win: ties go to the larger EI
        return out


if __name__ == "__main__":
    import runpy
    from pathlib import Path

    runpy.run_path(str(Path(__file__).resolve().parent / "nb201_sample_efficiency.py"), run_name="__main__")
