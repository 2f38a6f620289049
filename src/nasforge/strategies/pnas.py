"""Progressive Neural Architecture Search (Liu et al., ECCV 2018): grow cells block by block, a predictor picks.

Algorithm 1 of the paper, as ask/tell:

1. evaluate every cell of one block (``S_1``), in a random order, and fit the predictor to them from scratch;
2. for ``b = 2 .. B``: expand every cell evaluated at ``b - 1`` blocks by one block in every way (``S'_b``), rank
   the expansions by the predictor's mean, evaluate the top ``beam`` (K), and fine-tune the predictor on every
   result so far;
3. at ``B`` blocks the paper stops; here the run loop owns the budget, so while it lasts the predictor is
   fine-tuned and the next ``beam`` best unevaluated expansions of the same parents are evaluated.

Every evaluated cell counts against the budget; the search stops wherever the budget ends. A level starts when
the previous one has been asked for entirely (its results so far train the predictor; results still pending
join the data when they arrive), so batches and parallel workers never wait.

Caps (the paper's space has 136 one-block cells and beams of 256 cells, far fewer candidates than a two-cell
space such as ``darts`` with 2,401 one-block cells and ~21,000 expansions of each): when there are more than
``initial`` one-block cells a uniform sample of ``initial`` is evaluated, and when a level's expansions exceed
``max_candidates`` a uniform sample of ``max_candidates`` (a random parent, then a random expansion of it) is
ranked instead; both are logged.

Needs a growable space (:class:`~nasforge.spaces.base.GrowableSpace`) holding cells from one block (its registry
entry sets ``space_defaults={"min_blocks": 1}``) and an evaluator that scores cells of any size.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import torch

from ..arch import Architecture
from ..errors import ConfigError
from ..predictors.ensemble import KINDS, EnsemblePredictor
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import GrowableSpace, SearchSpace, is_growable, random_cell, random_expansion
from .base import Strategy, usable
from .common import UnseenSampler, one_thread

log = logging.getLogger(__name__)


@dataclass
class PNASConfig:
    """PNAS parameters: the beam, the caps on enumeration, and the predictor.

    The paper's beam is K = 256 with 5-fold ensembles of an LSTM (hidden size 100); a beam of 16 keeps several
    block counts within budgets of a hundred evaluations. The predictor trains ``fit_steps`` full-batch Adam steps
    from scratch on the one-block cells and ``finetune_steps`` more on all results at each later level. The
    paper found its MLP and LSTM ensembles alike; the default is the MLP, which ranked NAS-Bench-301's real cells
    better here (Spearman 0.60-0.72 against 0.12-0.33 for the LSTM, trained on 100, see docs/benchmarks.md) at a
    tenth of the cost; ``predictor=lstm`` reads the block tokens as the paper's.
    """

    beam: int = 16  # K: cells evaluated per block count after the first
    initial: int = 64  # one-block cells evaluated: all when there are at most this many, else a uniform sample
    max_candidates: int = 2000  # expansions ranked per level: a uniform sample when there are more
    predictor: str = "mlp"  # "mlp" over the encoding or "lstm" over block tokens (the paper compares both)
    ensemble: int = 5  # members, each trained without one fold
    hidden: int = 64  # hidden units of each member (and 32-dimensional token embeddings)
    lr: float = 0.01  # Adam's learning rate for the predictor
    fit_steps: int = 150  # steps from scratch, on the one-block cells
    finetune_steps: int = 50  # steps at each later level, on every result so far

    def __post_init__(self) -> None:
        if self.predictor not in KINDS:
            raise ValueError(f"predictor must be one of {', '.join(KINDS)}, got {self.predictor!r}")
        if min(self.beam, self.initial, self.max_candidates, self.ensemble, self.hidden) < 1:
            raise ValueError("beam, initial, max_candidates, ensemble and hidden must be at least 1")
        if self.lr <= 0 or self.fit_steps < 0 or self.finetune_steps < 0:
            raise ValueError("need lr > 0 and non-negative fit_steps and finetune_steps")


@STRATEGIES.register("pnas", guided=True, batch=True, paper="Liu et al. 2018 (PNAS)", space_needs="growable",
                     space_defaults={"min_blocks": 1}, evaluator_needs="any_blocks")
class PNAS(Strategy):
    """Progressive NAS: cells grown block by block, a predictor ensemble (LSTM or MLP) ranks each beam's expansions."""

    Config = PNASConfig

    def __init__(self, space: SearchSpace, config: PNASConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        if not is_growable(space):
            raise ConfigError(f"strategy: pnas grows cells block by block; space {space.name!r} cannot "
                              f"(it needs a growable space created with min_blocks=1)")
        self.generator = torch.Generator().manual_seed(self.seed)
        c = self.config
        self.predictor = EnsemblePredictor(space, self.generator, c.predictor, c.ensemble, c.hidden, lr=c.lr)
        self.sampler = UnseenSampler(space)
        self.level = 0  # block count of the cells being proposed (0: not started)
        self.queue: list[Architecture] = []  # this level's cells still to propose, best predicted first
        self.parents: list[Architecture] = []  # the cells expanded for this level
        self.evaluated: list[Architecture] = []  # successfully evaluated cells of this level (the next parents)
        self.exhausted = False  # no unevaluated expansion of the last parents is left (at full size)
        self.obs_archs: list[Architecture] = []
        self.obs_rewards: list[float] = []
        #: per level, the predictions for the cells it proposed (for the predictor's rank correlation)
        self.predictions: dict[int, dict[Architecture, float]] = {}

    @property
    def grow(self) -> GrowableSpace:
        return self.space  # type: ignore[return-value]  # checked in __init__

    # ---------------------------------------------------------------- ask / tell
    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        with one_thread():
            for _ in range(n):
                if not self.queue:
                    self._advance()
                arch = self.queue.pop(0) if self.queue else self.sampler.sample(self.rng)
                self.sampler.mark([arch])
                out.append(arch)
        return out

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            if ok:
                self.obs_archs.append(arch)
                self.obs_rewards.append(float(result.reward))
                if self.grow.blocks(arch) == self.level:
                    self.evaluated.append(arch)

    def status(self) -> dict[str, float]:
        return {"blocks": float(self.level)}

    # ---------------------------------------------------------------- levels
    def _advance(self) -> None:
        """Fill the queue with the next level's cells (or, at full size, the next best of the last expansion)."""
        if self.level == 0:
            self.level = 1
            self.queue = self._first_cells()
            return
        if self.exhausted:
            return  # every expansion of the last parents was evaluated: random cells from here on
        if self.level == 1 and not self.predictor.trained:
            self.predictor.reset()
            self.predictor.fit(self.obs_archs, self.obs_rewards, self.config.fit_steps)
        else:
            self.predictor.fit(self.obs_archs, self.obs_rewards, self.config.finetune_steps)
        if self.level < self.grow.max_blocks:
            self.parents = self._best_first(self.evaluated) or self.parents
            self.evaluated = []
            self.level += 1
        candidates = self._candidates()
        if not candidates:
            log.info("pnas: no unevaluated cell of %d blocks left to rank; proposing random cells", self.level)
            self.exhausted = self.level == self.grow.max_blocks
            return
        scores = self.predictor.predict(candidates)
        order = np.argsort(-scores, kind="stable")[: self.config.beam]
        self.queue = [candidates[i] for i in order]
        self.predictions.setdefault(self.level, {}).update((candidates[i], float(scores[i])) for i in order)
        log.debug("pnas: %d blocks, %d candidates ranked from %d parents, best prediction %.4f", self.level,
                  len(candidates), len(self.parents), scores[order[0]])

    def _best_first(self, archs: list[Architecture]) -> list[Architecture]:
        """Distinct cells of ``archs`` in a fixed order (parents are all expanded; order only fixes sampling)."""
        seen: dict[Hashable, Architecture] = {}
        for a in archs:
            seen.setdefault(self.space.key(a), a)
        return list(seen.values())

    def _first_cells(self) -> list[Architecture]:
        cap = self.config.initial
        cells = [a for a in itertools.islice(self.grow.initial_cells(), self.config.max_candidates + 1)
                 if self.sampler.is_new(a)]
        if len(cells) <= self.config.max_candidates and len(cells) <= cap:
            return [cells[i] for i in self.rng.permutation(len(cells))]
        if len(cells) <= self.config.max_candidates:
            pick = self.rng.choice(len(cells), size=cap, replace=False)
            out = [cells[i] for i in pick]
        else:
            out = self._unique(lambda: random_cell(self.space, 1, self.rng), cap)
        log.info("pnas: %s one-block cells; evaluating a uniform sample of %d (strategy.initial)",
                 f"{len(cells)}" if len(cells) <= self.config.max_candidates else
                 f"more than {self.config.max_candidates}", len(out))
        return out

    def _candidates(self) -> list[Architecture]:
        """Unevaluated expansions of the parents: all of them, or a uniform sample of ``max_candidates``."""
        cap = self.config.max_candidates
        if not self.parents:  # every cell of the last level failed: grow random cells instead
            return self._unique(lambda: random_cell(self.space, self.level, self.rng), cap)
        found: list[Architecture] = []
        keys: set[Hashable] = set()
        for parent in self.parents:
            for a in self.grow.expand(parent):
                key = self.space.key(a)
                if key not in keys and self.sampler.is_new(a):
                    keys.add(key)
                    found.append(a)
                    if len(found) > cap:
                        break
            if len(found) > cap:
                break
        if len(found) <= cap:
            return found
        sample = self._unique(
            lambda: random_expansion(self.space, self.parents[int(self.rng.integers(len(self.parents)))], self.rng),
            cap)
        log.info("pnas: more than %d expansions of %d cells of %d blocks; ranking a uniform sample of %d "
                 "(strategy.max_candidates)", cap, len(self.parents), self.level - 1, len(sample))
        return sample

    def _unique(self, draw, n: int) -> list[Architecture]:
        """Up to ``n`` distinct unevaluated architectures from ``draw`` (which may return None)."""
        out: list[Architecture] = []
        keys: set[Hashable] = set()
        for _ in range(20 * n):
            a = draw()
            if a is None:
                break
            key = self.space.key(a)
            if key not in keys and self.sampler.is_new(a):
                keys.add(key)
                out.append(a)
                if len(out) == n:
                    break
        return out
