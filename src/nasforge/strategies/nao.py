"""Neural Architecture Optimization (NAO; Luo, Tian, Qin, Chen & Liu, 2018).

An LSTM encoder maps an architecture's decision sequence to a continuous embedding, an MLP predicts
its score from the embedding, and an LSTM decoder maps embeddings back to architectures
(:mod:`nasforge.predictors.nao`); the three are trained jointly on every architecture evaluated so far
(prediction + reconstruction). New candidates come from the best architectures: each is encoded, its
embedding moved along the predictor's gradient with a step that grows until the decoding is a
valid architecture not proposed before (NAO's "increase the step until the architecture changes"),
and the candidates are evaluated in the order of their predicted score.

Choices where the paper leaves room (all independent of any data set):

- Rewards enter the predictor as their quantile rank among the rewards seen (0 = worst, 1 = best), so
  any reward scale and outliers give the same search.
- Steps are taken along the unit gradient, in units of the spread of the training embeddings
  (``step`` times the norm of their per-dimension standard deviation), doubling ``step_tries`` times;
  NAO's raw gradient step has a scale that depends on the predictor's fit.
- A decoding (the most likely option of every decision, canonicalised) that ``space.check`` rejects
  is repaired by changing one decision to its next most likely option, in the order of the
  probability the decoder gives up, the first valid change winning (``repairs`` tries); one that is
  still invalid is dropped. Decodings seen before are never proposed again: the step grows instead.
- Each start keeps the first ``per_start`` new decodings along its walk (NAO keeps the first), and all
  candidates of a refit are queued in the order of the score the predictor gives their re-encoding,
  so that the predictor also chooses among the walks (the LaNAS paper's NAO baseline ranks the whole
  remaining table by the predictor instead).
- The networks are refit, warm-started, every ``retrain_every`` results (or ``retrain_fraction`` of
  the results, if more). Before ``initial`` results, and whenever no candidate is left, queries are
  uniform unseen samples.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from ..arch import Architecture
from ..predictors.nao import EncoderPredictorDecoder, fit, targets, tokens
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Strategy, usable
from .common import UnseenSampler, one_thread

log = logging.getLogger(__name__)


@dataclass
class NAOConfig:
    """NAO hyper-parameters."""

    hidden: int = 32  # LSTM and predictor width
    embedding_dim: int = 16  # size of the continuous architecture embedding
    lam: float = 0.8  # weight of the prediction loss against reconstruction (NAO's trade-off)
    lr: float = 0.005  # Adam learning rate of encoder, predictor and decoder
    initial: int = 10  # uniform samples before the first fit
    first_fit_steps: int = 150  # full-batch Adam steps of the first fit ...
    fit_steps: int = 30  # ... and of every warm-started refit
    retrain_every: int = 10  # results between refits (also the candidates made per refit) ...
    retrain_fraction: float = 0.05  # ... or this fraction of the results, if more
    top: int = 30  # best architectures the gradient walks start from
    step: float = 0.05  # first step, in units of the embeddings' spread
    step_tries: int = 8  # doublings of the step before a start is given up
    per_start: int = 3  # new decodings kept per start (the smallest steps that give new ones)
    repairs: int = 20  # one-decision changes tried to repair an invalid decoding

    def __post_init__(self) -> None:
        if min(self.hidden, self.embedding_dim, self.initial, self.retrain_every, self.top, self.step_tries,
               self.per_start) < 1:
            raise ValueError("sizes and counts must be positive")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError("lam must be in [0, 1]")
        if self.lr <= 0 or self.step <= 0 or self.retrain_fraction < 0 or self.repairs < 0:
            raise ValueError("lr and step must be positive, retrain_fraction and repairs non-negative")
        if self.fit_steps < 0 or self.first_fit_steps < 0:
            raise ValueError("fit steps must not be negative")


@STRATEGIES.register("nao", guided=True, batch=True, paper="Luo et al. 2018 (NAO)")
class NAO(Strategy):
    """Neural Architecture Optimization: gradient steps on a learnt predictor in an LSTM autoencoder's embedding."""

    Config = NAOConfig

    def __init__(self, space: SearchSpace, config: NAOConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.sampler = UnseenSampler(space)
        self.model = EncoderPredictorDecoder(space, self.config.hidden, self.config.embedding_dim, seed=self.seed)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.archs: list[Architecture] = []  # usable results, in arrival order
        self.rewards: list[float] = []
        self.fitted = False
        self.n_at_fit = 0
        self.queue: list[Architecture] = []  # candidates of the last refit, best predicted first
        self.made = 0  # candidates the gradient walks produced (for status)
        self.generated_at = 0  # n_at_fit when the queue was last made (one generation per fit)

    # ----------------------------------------------------------------- ask / tell
    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        with one_thread():
            for _ in range(n):
                while self.queue and not self.sampler.is_new(self.queue[0]):
                    self.queue.pop(0)  # told by someone else since it was made
                if not self.queue and self.fitted and self.n_at_fit > self.generated_at:
                    self.queue = self._generate()
                    self.generated_at = self.n_at_fit
                arch = self.queue.pop(0) if self.queue else self.sampler.sample(self.rng)
                self.sampler.mark([arch])
                out.append(arch)
        return out

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            if ok:
                self.archs.append(arch)
                self.rewards.append(float(result.reward))
        n = len(self.rewards)
        every = max(self.config.retrain_every, math.ceil(self.config.retrain_fraction * self.n_at_fit))
        if n >= self.config.initial and (not self.fitted or n - self.n_at_fit >= every):
            with one_thread():
                self._fit()

    def _quantiles(self) -> np.ndarray:
        r = np.asarray(self.rewards)
        if len(r) < 2:
            return np.full(len(r), 0.5)
        order = np.sort(r)
        below = np.searchsorted(order, r, side="left")
        ties = np.searchsorted(order, r, side="right") - below
        return (below + (ties - 1) / 2) / (len(r) - 1)

    def _fit(self) -> None:
        choices, active = targets(self.space, self.archs)
        y = torch.as_tensor(self._quantiles(), dtype=torch.float32)
        steps = self.config.fit_steps if self.fitted else self.config.first_fit_steps
        mse, rec = fit(self.model, self.optimizer, tokens(self.space, self.archs), choices, active, y, steps,
                       self.config.lam)
        self.fitted, self.n_at_fit = True, len(self.rewards)
        self.queue = []  # made by the previous fit: the new one makes better ones at the next ask
        log.debug("nao: refit on %d results: prediction mse %.4f, reconstruction %.4f", len(y), mse, rec)

    # ----------------------------------------------------------------- candidates
    def _starts(self) -> list[Architecture]:
        """The best distinct architectures, best first."""
        out: list[Architecture] = []
        keys: set[Hashable] = set()
        for i in np.argsort(-np.asarray(self.rewards), kind="stable"):
            key = self.space.key(self.archs[i])
            if key not in keys:
                keys.add(key)
                out.append(self.archs[i])
                if len(out) == self.config.top:
                    break
        return out

    def _generate(self) -> list[Architecture]:
        """New candidates by gradient ascent on the predictor from the best architectures, best predicted first."""
        starts = self._starts()
        model = self.model
        with torch.no_grad():
            spread = float(model.encode(tokens(self.space, self.archs)).std(0).norm()) if len(self.archs) > 1 else 1.0
        z0 = model.encode(tokens(self.space, starts)).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.predict(z0).sum(), z0)
        unit = grad / grad.norm(dim=1, keepdim=True).clamp(min=1e-12)
        etas = self.config.step * max(spread, 1e-6) * 2.0 ** torch.arange(self.config.step_tries, dtype=torch.float32)
        with torch.no_grad():
            z = z0.detach()[:, None, :] + etas[None, :, None] * unit[:, None, :]
            logp = torch.log_softmax(model.decode(z.flatten(0, 1)), dim=-1)
        logp = logp.reshape(len(starts), len(etas), *logp.shape[1:])
        found: list[Architecture] = []
        keys: set[Hashable] = set()
        for i in range(len(starts)):
            new = 0
            for t in range(len(etas)):
                arch = self._decoded(logp[i, t])
                if arch is None:
                    continue
                key = self.space.key(arch)
                if key in keys or key in self.sampler.seen:
                    continue
                keys.add(key)
                found.append(arch)
                new += 1
                if new == self.config.per_start:
                    break
        self.made += len(found)
        if not found:  # every walk decodes to architectures already seen: the starts' unseen neighbours instead
            found = self._neighbours(starts)
        if not found:
            return []
        with torch.no_grad():
            scores = model.predict(model.encode(tokens(self.space, found))).numpy()
        return [found[j] for j in np.argsort(-scores, kind="stable")]

    def _neighbours(self, starts: Sequence[Architecture]) -> list[Architecture]:
        """The unseen one-decision neighbours of the best architectures, for the predictor to rank: near a
        converged embedding the walks stop finding new architectures, and uniform samples would ignore what the
        search learnt (a start one decision from the optimum stayed there)."""
        return self.sampler.unseen_neighbours(starts[: self.config.per_start])  # as many starts as a walk keeps

    def _decoded(self, logp: torch.Tensor) -> Architecture | None:
        """The most likely architecture under ``logp`` (decisions x options), repaired if invalid, else None."""
        top, first = logp.max(-1)
        choices = first.tolist()
        if self.space.check(choices) is None:
            return self.space.make(choices)
        drop = (top[:, None] - logp).flatten()
        drop[first + torch.arange(len(first)) * logp.shape[-1]] = math.inf
        width = logp.shape[-1]
        for i in torch.argsort(drop, stable=True)[: self.config.repairs].tolist():
            if not math.isfinite(float(drop[i])):
                break
            decision, option = divmod(i, width)
            changed = [*choices[:decision], option, *choices[decision + 1:]]
            if self.space.check(changed) is None:
                return self.space.make(changed)
        return None

    # ----------------------------------------------------------------- reporting
    def status(self) -> dict[str, float]:
        return {"queued": float(len(self.queue)), "made": float(self.made)}

    def observe(self) -> dict[str, Any]:
        return {"n_results": len(self.rewards), "fitted": self.fitted, "made": self.made, "queued": len(self.queue)}
