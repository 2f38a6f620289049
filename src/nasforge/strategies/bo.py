"""Bayesian optimisation: a Gaussian process on architecture encodings, with expected improvement.

This is the BO baseline of the LaNAS paper ("Neural architecture search by learning action space
for Monte Carlo tree search", Wang et al.): a GP surrogate with expected improvement, after the
reference implementation it cites (Krasser 2018: Matern 5/2 kernel, EI with a small exploration
margin ``xi``). The paper does not say how EI is maximised over a discrete space. A finite space of
at most ``exhaustive`` architectures (NAS-Bench-201's 15,625) is scored whole: EI of every unseen
architecture, each query. Larger spaces use a candidate pool of neighbours and mutations of the best
architectures plus random samples, the usual choice for NAS, since proposals stay valid members of
any space. Two additions serve sample efficiency (issue 16, the LaNAS paper's own measure). First,
the kernel has terms besides the Matern one: additive per-decision effects, pairwise interactions,
and how often each operation occurs (see :class:`~nasforge.predictors.gp.GaussianProcess`).
Second, every ``local_every``-th proposal is the incumbent's unseen one-decision neighbour of
largest posterior mean (after a stall, a runner-up's).

The strategy stays cheap per query by keeping everything incremental between hyper-parameter fits:
the Cholesky factor of the kernel matrix grows by one row per observation (rank-one extension),
and the candidate pool keeps ``V = L^-1 K(X, C)``, which also grows by one row, so the posterior of
every candidate costs O(n) per candidate instead of O(n^2). The Gaussian process and expected
improvement are in :mod:`nasforge.predictors`; this module is the strategy around them.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arch import Architecture
from ..codec import Encoded
from ..predictors.acquisition import GrowableMatrix, log_expected_improvement
from ..predictors.features import FeatureBlock, OperationCounts
from ..predictors.gp import (
    KERNELS,
    TARGETS,
    DotTerm,
    GaussianProcess,
    encoding_groups,
    normalise,
    single_threaded_blas,
)
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Strategy, usable
from .common import UnseenSampler

log = logging.getLogger(__name__)

BATCH_MODES = ("believer", "liar")


class _WholeSpace:
    """Every architecture of a finite space as a candidate: encodings, which are still unseen, and
    ``V = L^-1 K(X, C)``, grown by one row per observation like a pool's."""

    def __init__(self, strategy: BayesianOptimisation) -> None:
        self.archs = list(strategy.space.enumerate())
        self.C = strategy.encode(self.archs)
        self.open = np.array([strategy.sampler.is_new(a) for a in self.archs], dtype=bool)
        self.index = {strategy.space.key(a): i for i, a in enumerate(self.archs)}
        self.V = GrowableMatrix()
        self.V.assign(strategy.gp.cross(self.C))

    def close(self, keys: set[Hashable]) -> None:
        for key in keys:
            i = self.index.get(key)
            if i is not None:
                self.open[i] = False


# --------------------------------------------------------------------------- strategy
@dataclass
class BOConfig:
    """Bayesian optimisation parameters.

    The defaults are meant for any space and benchmark and were not tuned to one. Targets are
    normalised (``rank`` maps rewards to Gaussian scores of their ranks, so neither their scale nor
    outliers such as networks that fail to train matter; EI's incumbent is unchanged by the monotone
    map), the kernel's hyper-parameter priors are set from the encodings themselves (median
    heuristic), and ``xi`` is in normalised units (Krasser's 0.01). The Matern 5/2 kernel and EI are
    the LaNAS baseline's; one length-scale per decision lets the fit find which decisions matter.
    Ten random architectures (``initial``) are a common initial design for budgets of a few hundred.
    Refitting every ``refit_every`` = 10 observations, warm-started, keeps the amortised
    marginal-likelihood cost small; in between the factor is only extended. Each query adds to the
    candidate pool (a space larger than ``exhaustive``; smaller finite spaces are scored whole, at
    O(n) per architecture and query, 5-20 ms on NAS-Bench-201) ``mutations`` one-decision mutations
    of the ``top`` best architectures,
    ``random`` fresh samples and, for a new incumbent, all its neighbours, so local refinement and
    global exploration both stay available; past 25% over ``pool_size`` the pool is cut back to its
    ``pool_size`` best candidates by acquisition. ``believer`` batches matched sequential BO on
    NAS-Bench-201 (batches of 4) while the constant liar was slower. ``additive`` adds covariance
    terms for per-decision effects and pairwise interactions, which predict an unseen combination of
    good options from few observations; ``local_every`` = 3 makes every third proposal after the
    initial design the best unseen neighbour (by posterior mean) of the best observed architecture
    that has one, which reaches an optimum next to a near-tie the model ranks wrongly. After
    ``stall`` = 30 observations without a better one, those local steps climb around the 2nd to
    ``top + 1``-th best architectures in turn, so that a search whose model keeps favouring a wrong
    region still climbs elsewhere (the incumbent's neighbourhood is exhausted by then); with ``niche`` =
    0.5 those are, first, the best of other regions: each differs from the incumbent and from every one
    before it in at least half of its decisions.
    ``count_prior`` > 0 adds two more covariance terms, first and second order, on how often each
    operation occurs (:class:`~nasforge.predictors.features.OperationCounts`), with that prior
    median variance. They let the model learn from few cells that accuracy depends on the counts
    non-linearly: on NAS-Bench-201, for example, one skip connection helps and two hurt. Without
    them, a few two-skip cells make a skip look bad on every edge. ``effective`` gives architectures
    that compute the same function (:meth:`~nasforge.spaces.base.SearchSpace.effective`, e.g.
    NAS-Bench-201 cells that differ only in operations cut off from the output) the same input, so the
    model pools their observations instead of learning that such operations do not matter. All six
    were chosen on NAS-Bench-201-format tables (docs/benchmarks.md, "Samples to the optimum").
    """

    initial: int = 10  # random architectures before the first GP fit
    kernel: str = "matern52"  # "matern52" or "rbf"
    ard: bool = True  # one length-scale per decision (one-hot encodings) instead of one shared
    target: str = "rank"  # target normalisation: "rank" (Gaussian rank scores) or "standardize"
    xi: float = 0.01  # EI exploration margin, in normalised target units
    refit_every: int = 10  # observations between hyper-parameter fits (factor extended in between)
    fit_iterations: int = 50  # L-BFGS-B iterations per fit (warm-started)
    mutations: int = 10  # mutations of the top architectures added to the pool per query
    top: int = 5  # how many of the best architectures are mutated
    random: int = 10  # random samples added to the pool per query
    pool_size: int = 500  # candidates kept between queries
    batch: str = "believer"  # ask(n > 1): "believer" (fantasy = posterior mean) or "liar" (worst seen)
    exhaustive: int = 20000  # a finite space of at most this many architectures: score all unseen ones (0: pool)
    additive: bool = True  # add first- and second-order covariance terms (additive effects, pairwise interactions)
    count_prior: float = 0.1  # prior median of the variances of the terms on operation counts (0: no such terms)
    local_every: int = 3  # every k-th proposal: the incumbent's best unseen neighbour by posterior mean (0: never)
    stall: int = 30  # observations without a better one after which local steps climb around the next-best cells
    niche: float = 0.5  # ...taking first those that differ from each better one in this share of decisions (0: in order)
    effective: bool = True  # model each architecture by its effective form (SearchSpace.effective): same function, same input

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.batch not in BATCH_MODES:
            raise ValueError(f"batch must be one of {', '.join(BATCH_MODES)}, got {self.batch!r}")
        if self.local_every < 0 or self.stall < 0:
            raise ValueError(f"local_every and stall must not be negative, got {self.local_every}, {self.stall}")
        if self.initial < 2 or self.refit_every < 1 or self.top < 1 or self.pool_size < 1:
            raise ValueError("need initial >= 2, refit_every >= 1, top >= 1 and pool_size >= 1")
        if min(self.mutations, self.random, self.fit_iterations, self.exhaustive) < 0 or self.xi < 0:
            raise ValueError("mutations, random, fit_iterations, exhaustive and xi must not be negative")
        if not self.count_prior >= 0:
            raise ValueError(f"count_prior must be >= 0, got {self.count_prior}")
        if not 0 <= self.niche <= 1:
            raise ValueError(f"niche must be a share of the decisions, in [0, 1], got {self.niche}")


@STRATEGIES.register("bo", aliases=("bayesian",), guided=True, batch=True, prior=True,
                     paper="LaNAS baseline; Krasser 2018")
class BayesianOptimisation(Strategy):
    """Bayesian optimisation: GP on one-hot encodings, expected improvement over a mutation/random pool."""

    Config = BOConfig
    #: the whole-space candidates are derived from the space and the GP, the feature blocks from the space:
    #: rebuilt, never saved
    _not_state = (*Strategy._not_state, "_all", "blocks", "_forms", "_form_keys")

    def __init__(self, space: SearchSpace, config: BOConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.sampler = UnseenSampler(space)
        self.blocks = self.feature_blocks()
        self.gp = self.new_gp()
        self.fitted = False
        self.n_at_fit = 0
        # observations: one row per distinct network; repeated results are averaged
        self.obs_index: dict[Hashable, int] = {}
        self.obs_archs: list[Architecture] = []
        self.obs_sum: list[float] = []
        self.obs_count: list[int] = []
        self.incumbent: Architecture | None = None
        # candidate pool: architectures, their encodings and V = L^-1 K(X, C) (one row per GP input)
        self.pool_archs: list[Architecture] = []
        self.pool_keys: list[Hashable] = []  # space.key of each candidate, aligned with pool_archs
        self.pool_C = np.zeros((0, self.gp.width))
        self.pool_V = GrowableMatrix()
        # a small finite space is scored whole: every unseen architecture is a candidate
        self.exhaustive = space.size is not None and space.size <= self.config.exhaustive
        self._all: _WholeSpace | None = None
        self.n_proposed = 0  # proposals since the first fit (every local_every-th is a local one)
        self.best_mean = -np.inf  # best mean reward observed so far
        self.n_since_best = 0  # observations since best_mean last improved (see BOConfig.stall)
        self._forms: list[Architecture] = []  # of obs_archs[:len], derived (see _observed_forms), not saved
        self._form_keys: set[Hashable] = set()

    # ---------------------------------------------------------------- observations
    def _targets(self) -> np.ndarray:
        return normalise(np.asarray(self.obs_sum) / np.asarray(self.obs_count), self.config.target)

    def feature_blocks(self) -> list[FeatureBlock]:
        """What the model's inputs have beside the one-hot encoding: the operation-count histogram, with first-
        and second-order terms (``count_prior`` > 0, in a space with labelled operations). Subclasses add blocks."""
        counts = OperationCounts(self.space)
        if self.config.count_prior <= 0 or not counts.size:
            return []
        return [FeatureBlock(counts, counts.size, (1, 2), self.config.count_prior)]

    def new_gp(self) -> GaussianProcess:
        """An unfitted Gaussian process of this strategy's configuration, for inputs made by :meth:`encode`."""
        groups = encoding_groups(self.space, self.config.ard)
        terms, start = [], len(groups)
        for block in self.blocks:  # each block's columns follow the one-hot ones, in order
            terms += [DotTerm(start, start + block.size, power, block.prior) for power in block.powers]
            start += block.size
        return GaussianProcess(groups, self.config.kernel, self.config.fit_iterations, self.config.additive, terms)

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """The model's inputs: one-hot encodings, followed by each feature block's features, of each
        architecture's effective form (``effective``)."""
        if self.config.effective:
            archs = [self.space.effective(a) for a in archs]
        X = np.array([self.space.encode(a) for a in archs], dtype=float).reshape(len(archs), len(self.gp.groups))
        if not self.blocks:
            return X
        extra = [np.array([b.features(a) for a in archs], dtype=float).reshape(len(archs), b.size) for b in self.blocks]
        return np.hstack([X, *extra])

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        with single_threaded_blas():
            self._tell(archs, results)

    def _tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        # our own proposals left the pool when asked; results for others' may still be in it
        foreign = {self.space.key(a) for a in archs if self.sampler.is_new(a)}
        self._drop_from_pool(foreign)
        if self._all is not None:
            self._all.close(foreign)
        self.sampler.mark(archs)
        new = []
        for arch, result, ok in zip(archs, results, usable(results)):
            if not ok:
                continue
            key = self.space.key(arch)
            if key in self.obs_index:
                i = self.obs_index[key]
                self.obs_sum[i] += float(result.reward)
                self.obs_count[i] += 1
            else:
                self.obs_index[key] = len(self.obs_archs)
                self.obs_archs.append(arch)
                self.obs_sum.append(float(result.reward))
                self.obs_count.append(1)
                new.append(arch)
            i = self.obs_index[key]
            mean = self.obs_sum[i] / self.obs_count[i]
            if mean > self.best_mean:
                self.best_mean, self.n_since_best = mean, 0
            else:
                self.n_since_best += 1
        n = len(self.obs_archs)
        if n >= self.config.initial and (not self.fitted or n - self.n_at_fit >= self.config.refit_every):
            self._refit()
        elif self.fitted:
            for x in self.encode(new):
                self._add_input(x)

    def _refit(self) -> None:
        # the GP's inputs are always the encodings of a prefix of obs_archs: encode only the rest
        X = np.vstack([self.gp.X, self.encode(self.obs_archs[self.gp.n :])])
        self.gp.fit(X, self._targets())
        self.fitted, self.n_at_fit = True, len(X)
        self._recompute_pool_V()
        log.debug("bo: refit on %d observations, theta=%s", len(X), np.round(self.gp.fitted_theta, 3))

    def _recompute_pool_V(self) -> None:
        if self._all is not None:
            self._all.V.assign(self.gp.cross(self._all.C))
        self.pool_V.assign(self.gp.cross(self.pool_C))

    def _add_input(self, x: np.ndarray) -> None:
        """Grow the factor and the pool's V by one row; refactorise if the extension is unstable."""
        row = self.gp.extend(x)
        if row is None:
            self.gp.factorise(np.vstack([self.gp.X, x[None, :]]))
            self._recompute_pool_V()
            return
        if self._all is not None:
            self._all.V.append_row(self.gp.cross_row(x, self._all.C, row, self._all.V.view))
        self.pool_V.append_row(self.gp.cross_row(x, self.pool_C, row, self.pool_V.view))

    # ---------------------------------------------------------------- candidate pool
    def _drop_from_pool(self, keys: set[Hashable]) -> None:
        if not keys:
            return
        # descending, so that the last candidate moved into a removed slot is never one to remove
        for j in sorted((i for i, k in enumerate(self.pool_keys) if k in keys), reverse=True):
            self._remove_candidate(j)

    def _remove_candidate(self, j: int) -> None:
        last = len(self.pool_archs) - 1
        self.pool_archs[j] = self.pool_archs[last]
        self.pool_archs.pop()
        self.pool_keys[j] = self.pool_keys[last]
        self.pool_keys.pop()
        self.pool_C[j] = self.pool_C[last]
        self.pool_C = self.pool_C[:last]
        self.pool_V.remove_col(j)

    def _top(self) -> list[Architecture]:
        means = np.asarray(self.obs_sum) / np.asarray(self.obs_count)
        order = np.argsort(-means, kind="stable")[: self.config.top]
        return [self.obs_archs[i] for i in order]

    def _draw_candidates(self) -> list[Architecture]:
        cands: list[Architecture] = []
        top = self._top()
        if top and top[0] != self.incumbent:
            self.incumbent = top[0]
            cands.extend(self.space.neighbours(top[0]))
        for _ in range(self.config.mutations):
            cands.append(self.space.mutate(top[int(self.rng.integers(len(top)))], self.rng))
        cands.extend(self.space.sample(self.rng) for _ in range(self.config.random))
        return cands

    def _refresh_pool(self) -> None:
        fresh, keys = [], set(self.pool_keys)
        for a in self._draw_candidates():
            key = self.space.key(a)
            if key not in keys and self.sampler.is_new(a):
                keys.add(key)
                fresh.append(a)
                self.pool_keys.append(key)
        if not fresh:
            return
        C = self.encode(fresh)
        self.pool_archs.extend(fresh)
        self.pool_C = np.vstack([self.pool_C, C])
        self.pool_V.append_cols(self.gp.cross(C))

    # ---------------------------------------------------------------- proposals
    def ask(self, n: int = 1) -> list[Architecture]:
        with single_threaded_blas():
            return self._ask(n)

    def _ask(self, n: int) -> list[Architecture]:
        if not self.fitted:
            return [self.initial_sample(self.sampler) for _ in range(n)]
        if self.exhaustive:
            return self._ask_whole(n)
        self._refresh_pool()
        n_real = self.gp.n
        z = self._targets()
        best = float(z.max())
        self._evict(z, best)
        out = []
        for i in range(n):
            if not self.pool_archs:
                out.append(self.sampler.sample(self.rng))
                continue
            local = self._local_candidates() if self._local_turn() else []
            if local:
                x = self.encode(local)
                mean_local, _ = self.gp.predict(z, x)
                k = int(np.argmax(mean_local))
                arch, x = local[k], x[k]
                self._drop_from_pool({self.space.key(arch)})
                mean = np.array([mean_local[k]])
                j = 0
            else:
                mean, acq = self._acquisition(z, best)
                j = int(np.argmax(acq))
                arch, x = self.pool_archs[j], self.pool_C[j].copy()
                self._remove_candidate(j)
            out.append(arch)
            self.sampler.mark([arch])
            if i + 1 < n:
                # kriging believer / constant liar: pretend the pending proposal was observed
                self._add_input(x)
                z = np.append(z, mean[j] if self.config.batch == "believer" else z[:n_real].min())
        if self.gp.n > n_real:
            self.gp.truncate(n_real)
            self.pool_V.truncate_rows(n_real)
        return out

    def _whole_acquisition(self, z: np.ndarray, mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
        """Log expected improvement of every architecture of the space (the GP's ``mean`` and ``std`` given the
        targets ``z``); a subclass may average it over several models."""
        return log_expected_improvement(mean, std, best, self.config.xi)

    def _ask_whole(self, n: int) -> list[Architecture]:
        """The unseen architectures of largest expected improvement over the whole (finite) space."""
        if self._all is None:
            self._all = _WholeSpace(self)
        whole, n_real = self._all, self.gp.n
        z = self._targets()
        best = float(z.max())
        out = []
        for i in range(n):
            if not whole.open.any():
                out.append(self.sampler.sample(self.rng))
                continue
            mean, std = self.gp.posterior(self.gp.solve_lower(z), whole.V.view)
            local = self._local_candidates() if self._local_turn() else []
            if local:
                j = max((whole.index[self.space.key(a)] for a in local), key=lambda k: (mean[k], -k))
            else:
                acq = np.where(whole.open, self._whole_acquisition(z, mean, std, best), -np.inf)
                j = int(np.argmax(acq))
            out.append(whole.archs[j])
            self.sampler.mark([whole.archs[j]])
            whole.open[j] = False
            if i + 1 < n:
                self._add_input(whole.C[j].copy())
                z = np.append(z, mean[j] if self.config.batch == "believer" else z[:n_real].min())
        if self.gp.n > n_real:
            self.gp.truncate(n_real)
            whole.V.truncate_rows(n_real)
            self.pool_V.truncate_rows(n_real)
        return out

    def _local_turn(self) -> bool:
        self.n_proposed += 1
        k = self.config.local_every
        return k > 0 and self.n_proposed % k == 0

    def _local_candidates(self) -> list[Architecture]:
        """The unseen one-decision neighbours of the best observed architecture that has any.

        Many optima sit next to a near-tie the model ranks equally well; a model that is wrong about
        one decision would never propose them, while a local step reaches them (and a local search
        around the incumbent is guaranteed to end at a local optimum). After ``stall`` observations
        without a better one, local steps take the 2nd, 3rd, ... ``top + 1``-th best such
        architecture in turn instead: the incumbent may be a local optimum in a region that the model
        keeps favouring wrongly, and the runners-up are the other places worth climbing from (with
        ``niche``, the best of other regions first: :meth:`_regions_first`). With
        ``effective``, neighbours that compute the same function as an observed architecture (they differ from
        it only where nothing reaches the output) are left to expected improvement: the model predicts them as
        that architecture, often above every other neighbour, yet a local step there measures only noise."""
        means = np.asarray(self.obs_sum) / np.asarray(self.obs_count)
        skip = 0
        if self.config.stall and self.n_since_best >= self.config.stall:
            skip = 1 + (self.n_since_best - self.config.stall) // max(self.config.local_every, 1) % self.config.top
        forms, keys = self._observed_forms()
        order = np.argsort(-means, kind="stable")
        if skip and self.config.niche:
            order = self._regions_first(order, forms)
        for i in order:
            fresh = self.sampler.unseen_neighbours([self.obs_archs[i]])
            if self.config.effective:
                fresh = [a for a in fresh if self.space.key(self.space.effective(a)) not in keys]
            if fresh:
                if not skip:
                    return fresh
                skip -= 1
        return []

    def _regions_first(self, order: np.ndarray, forms: list[Architecture]) -> np.ndarray:
        """``order`` (observed architectures, best first) with the best of each region first: each of those
        differs from every one before it in at least ``niche`` of the decisions of their ``forms``.

        When a search stalls, its runners-up are mostly next to the incumbent, in the region the model keeps
        favouring; climbing from the best cells of other regions is what leaves it."""
        need = self.config.niche * len(self.space.decisions)
        leaders: list[int] = []
        for i in order:
            x = forms[i].choices
            if all(sum(a != b for a, b in zip(x, forms[j].choices)) >= need for j in leaders):
                leaders.append(int(i))
        chosen = set(leaders)
        return np.asarray(leaders + [int(i) for i in order if i not in chosen])

    def _observed_forms(self) -> tuple[list[Architecture], set[Hashable]]:
        """The observed architectures as the model sees them (their effective forms with ``effective``), in
        order, and the keys of those forms; extended as observations arrive, rebuilt after a restore."""
        for arch in self.obs_archs[len(self._forms) :]:
            form = self.space.effective(arch) if self.config.effective else arch
            self._forms.append(form)
            self._form_keys.add(self.space.key(form))
        return self._forms, self._form_keys

    def load_state_dict(self, state: dict[str, Any] | Encoded) -> None:
        super().load_state_dict(state)
        self._all = None  # rebuilt from the restored GP and seen set at the next ask
        self._forms, self._form_keys = [], set()  # rebuilt from the restored observations

    def _acquisition(self, z: np.ndarray, best: float) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and log EI of every candidate."""
        mean, std = self.gp.posterior(self.gp.solve_lower(z), self.pool_V.view)
        return mean, log_expected_improvement(mean, std, best, self.config.xi)

    def _evict(self, z: np.ndarray, best: float) -> None:
        """Bound the pool: past 25% over ``pool_size``, keep the ``pool_size`` best by acquisition.

        The slack makes the O(n m) copy occasional rather than one per query.
        """
        if len(self.pool_archs) <= self.config.pool_size + self.config.pool_size // 4:
            return
        _, acq = self._acquisition(z, best)
        keep = np.sort(np.argsort(-acq, kind="stable")[: self.config.pool_size])
        self.pool_archs = [self.pool_archs[i] for i in keep]
        self.pool_keys = [self.pool_keys[i] for i in keep]
        self.pool_C = self.pool_C[keep]
        self.pool_V.keep_cols(keep)
