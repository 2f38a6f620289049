"""AlphaX (Wang, Zhao, Jinnai & Fonseca, "AlphaX: eXploring Neural Architectures with Deep Neural
Networks and Monte Carlo Tree Search", 2018): MCTS over the space's own decisions with a meta-predictor.

A tree node is a partial architecture: the options of the space's first ``k`` decisions, in the
space's order; an action fixes decision ``k``. Each query runs one MCTS iteration:

1. *Selection*: from the root, a node with an action not tried yet is expanded; otherwise the child
   with the highest UCT score ``Q + cp * sqrt(2 ln N_parent / N_child)`` is entered.
2. *Expansion*: the new child is added (actions are tried in a seeded random order).
3. *Simulation*: ``rollouts`` random completions of the new node's partial architecture are scored by
   the meta-predictor (:class:`~nasforge.predictors.mlp.MLPPredictor`, an MLP trained on everything
   evaluated so far) instead of being evaluated; the best-scored valid completion not proposed before is
   the one architecture evaluated for real.
4. *Backup*: the rollouts' mean predicted score is backed up along the path at once (it also acts as
   the virtual visit that spreads a batch of asks), the real reward when its result arrives.

Choices where the paper leaves room (all independent of any data set):

- Rewards enter the tree and the predictor as their quantile rank among the rewards seen so far
  (0 = worst, 1 = best), so any reward scale and outliers (diverged trainings) give the same search;
  ``cp`` refers to that [0, 1] scale (as LaNAS' does).
- Inactive decisions: decision ``k`` has the single action 0 at a node if the space declares it
  inactive for the node's prefix completed both with the first and with the last options (true of
  every built-in space, whose decisions' activity depends on earlier decisions only); otherwise every
  option is an action and the canonical form of a completion merges equal networks. Validity
  (``space.check``) is tested on complete architectures: invalid rollouts are discarded.
- A node whose region holds no valid architecture not proposed yet (found by enumerating it when its
  raw size is at most ``enumerate_limit`` once rollouts found nothing new) is closed and never selected
  again; a parent whose actions were all tried and whose children are all closed is closed too.
- Before ``initial`` results the predictor is not trained and the first valid unseen rollout is taken
  (a uniform sample inside the selected node). The predictor is refit, warm-started, every
  ``retrain_every`` results or ``retrain_fraction`` of the results so far if that is more, so that its
  cost is amortised over the queries (about 50 refits in 500 queries).
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from ..arch import Architecture
from ..predictors.mlp import MLPPredictor, encode_rows
from ..registry import STRATEGIES
from ..result import Result
from ..spaces.base import SearchSpace
from .base import Strategy, usable
from .common import UnseenSampler, one_thread

log = logging.getLogger(__name__)


@dataclass
class AlphaXConfig:
    """AlphaX hyper-parameters."""

    cp: float = 0.2  # UCT exploration constant, rewards normalised to [0, 1]
    rollouts: int = 64  # random completions scored by the meta-predictor per query
    initial: int = 10  # results before the meta-predictor is first trained
    retrain_every: int = 5  # results between two (warm-started) refits of the meta-predictor ...
    retrain_fraction: float = 0.05  # ... or this fraction of the results, if more (refits stay amortised)
    fit_steps: int = 50  # full-batch Adam steps per refit (warm-started)
    hidden: int = 64  # width of the meta-predictor's two hidden layers
    lr: float = 0.01  # Adam learning rate of the meta-predictor
    weight_decay: float = 1e-4  # L2 weight decay of the meta-predictor
    enumerate_limit: int = 4096  # a node whose rollouts found nothing new is enumerated up to this raw size
    max_selections: int = 20  # selections per query before falling back to a uniform unseen sample

    def __post_init__(self) -> None:
        if min(self.rollouts, self.retrain_every, self.hidden, self.max_selections) < 1:
            raise ValueError("rollouts, retrain_every, hidden and max_selections must be positive")
        if self.initial < 1 or self.fit_steps < 0 or self.enumerate_limit < 0:
            raise ValueError("need initial >= 1, fit_steps >= 0 and enumerate_limit >= 0")
        if self.cp < 0 or self.lr <= 0 or self.weight_decay < 0 or self.retrain_fraction < 0:
            raise ValueError("cp and weight_decay must be non-negative, lr positive")


@STRATEGIES.register("alphax", aliases=("mcts",), guided=True, batch=True, paper="Wang et al. 2018 (AlphaX)")
class AlphaX(Strategy):
    """MCTS over the space's decisions in their order, UCT selection, rollouts scored by an MLP meta-predictor."""

    Config = AlphaXConfig

    def __init__(self, space: SearchSpace, config: AlphaXConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.sampler = UnseenSampler(space)
        self.predictor = MLPPredictor(space.encoding_size, self.config.hidden, seed=self.seed)
        self.optimizer = self.predictor.optimizer(self.config.lr, self.config.weight_decay)
        self.fitted = False
        self.n_at_fit = 0
        self.rewards: list[float] = []  # usable rewards, in arrival order
        self.sorted_rewards: list[float] = []
        self.encodings: list[np.ndarray] = []
        # the tree, one entry per node in each list (node 0 is the root)
        self.prefixes: list[tuple[int, ...]] = []
        self.node_of: dict[tuple[int, ...], int] = {}
        self.children: list[dict[int, int]] = []
        self.untried: list[list[int]] = []
        self.visits: list[float] = []
        self.value_sum: list[float] = []
        self.closed: list[bool] = []
        self._new_node(())

    # ----------------------------------------------------------------- tree
    def _actions(self, prefix: tuple[int, ...]) -> list[int]:
        """Options of the next decision after ``prefix`` (only 0 where the prefix makes it inactive)."""
        k = len(prefix)
        rest = self.space.decisions[k:]
        low = prefix + (0,) * len(rest)
        high = prefix + tuple(d.n_choices - 1 for d in rest)
        if not self.space.active(low)[k] and not self.space.active(high)[k]:
            return [0]
        return list(range(self.space.decisions[k].n_choices))

    def _new_node(self, prefix: tuple[int, ...]) -> int:
        node = len(self.prefixes)
        self.prefixes.append(prefix)
        self.node_of[prefix] = node
        self.children.append({})
        untried = [] if len(prefix) == len(self.space.decisions) else self._actions(prefix)
        # popped from the end: a seeded random order of expansion
        self.untried.append([untried[i] for i in self.rng.permutation(len(untried))])
        self.visits.append(0.0)
        self.value_sum.append(0.0)
        self.closed.append(False)
        if node:
            self.children[self.node_of[prefix[:-1]]][prefix[-1]] = node
        return node

    def _path(self, choices: Sequence[int]) -> list[int]:
        """Nodes of the tree on the way to ``choices``, from the root."""
        path = [0]
        for k in range(1, len(choices) + 1):
            node = self.node_of.get(tuple(choices[:k]))
            if node is None:
                break
            path.append(node)
        return path

    def _backup(self, path: Sequence[int], value: float) -> None:
        for node in path:
            self.visits[node] += 1.0
            self.value_sum[node] += value

    def _close(self, node: int) -> None:
        """Close ``node`` and every ancestor left with nothing open."""
        self.closed[node] = True
        prefix = self.prefixes[node]
        while prefix:
            prefix = prefix[:-1]
            parent = self.node_of[prefix]
            if self.untried[parent] or not all(self.closed[c] for c in self.children[parent].values()):
                return
            self.closed[parent] = True

    def _uct(self, node: int) -> int:
        """The open child of ``node`` with the highest UCT score (-1 if none)."""
        log_n = math.log(max(self.visits[node], 1.0))
        best, best_score = -1, -math.inf
        for child in self.children[node].values():
            if self.closed[child]:
                continue
            n = self.visits[child]
            score = math.inf if n == 0 else self.value_sum[child] / n + self.config.cp * math.sqrt(2.0 * log_n / n)
            if score > best_score:
                best, best_score = child, score
        return best

    def select(self) -> list[int]:
        """One selection and expansion: the path from the root to the node to simulate from."""
        node, path = 0, [0]
        while len(self.prefixes[node]) < len(self.space.decisions):
            if self.untried[node]:
                action = self.untried[node].pop()
                path.append(self._new_node(self.prefixes[node] + (action,)))
                break
            child = self._uct(node)
            if child < 0:  # every child closed: so is this node
                self._close(node)
                break
            node = child
            path.append(node)
        return path

    # ----------------------------------------------------------------- simulation
    def _rollouts(self, prefix: tuple[int, ...]) -> list[tuple[int, ...]]:
        """Distinct valid canonical completions of ``prefix`` not proposed yet, from random rollouts."""
        k, n = len(prefix), len(self.space.decisions)
        rows = np.empty((self.config.rollouts, n), dtype=np.int64)
        rows[:, :k] = prefix
        for j in range(k, n):
            rows[:, j] = self.rng.integers(self.space.decisions[j].n_choices, size=len(rows))
        return self._new_valid(rows.tolist())

    def _new_valid(self, rows: list[list[int]]) -> list[tuple[int, ...]]:
        out, keys = [], set()
        for row in rows:
            if self.space.check(row) is not None:
                continue
            choices = self.space.canonical(row)
            key = self._key(choices)
            if key not in keys and key not in self.sampler.seen:
                keys.add(key)
                out.append(choices)
        return out

    def _key(self, choices: tuple[int, ...]) -> Hashable:
        return self.space.key(Architecture(self.space.name, choices))

    def _enumerate(self, prefix: tuple[int, ...]) -> list[tuple[int, ...]] | None:
        """Every valid unseen completion of ``prefix``, or None if its region is larger than ``enumerate_limit``."""
        rest = [d.n_choices for d in self.space.decisions[len(prefix):]]
        if math.prod(rest) > self.config.enumerate_limit:
            return None
        if not rest:
            return self._new_valid([list(prefix)])
        grid = np.indices(rest).reshape(len(rest), -1).T
        rows = np.hstack([np.tile(np.asarray(prefix, dtype=np.int64), (len(grid), 1)), grid])
        return self._new_valid(rows.tolist())

    def _simulate(self, path: list[int]) -> tuple[tuple[int, ...], float] | None:
        """The completion to evaluate and the rollouts' mean score; None if the node holds nothing new."""
        prefix = self.prefixes[path[-1]]
        candidates = self._rollouts(prefix)
        if not candidates:
            enumerated = self._enumerate(prefix)
            if not enumerated:
                if enumerated is not None:  # enumerated: nothing new is left in this region
                    self._close(path[-1])
                return None
            candidates = enumerated
        if not self.fitted:
            return candidates[0], math.nan
        scores = self.predictor.predict(encode_rows(self.space, candidates))
        best = int(np.argmax(scores))
        return candidates[best], float(scores.mean())

    # ----------------------------------------------------------------- ask / tell
    def ask(self, n: int = 1) -> list[Architecture]:
        out = []
        with one_thread():
            for _ in range(n):
                out.append(self._propose())
        return out

    def _propose(self) -> Architecture:
        for _ in range(self.config.max_selections):
            if self.closed[0]:
                break
            path = self.select()
            if self.closed[path[-1]]:
                continue
            found = self._simulate(path)
            if found is None:
                continue
            choices, score = found
            if not math.isnan(score):
                self._backup(path, score)
            arch = self.space.make(choices)
            self.sampler.mark([arch])
            return arch
        return self.sampler.sample(self.rng)  # the tree found nothing new: the space is (nearly) exhausted

    def _quantile(self, reward: float) -> float:
        seen = self.sorted_rewards
        if len(seen) < 2:
            return 0.5
        below = bisect.bisect_left(seen, reward)
        ties = bisect.bisect_right(seen, reward) - below
        return (below + (ties - 1) / 2) / (len(seen) - 1)

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self.sampler.mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            path = self._path(arch.choices)
            if len(self.prefixes[path[-1]]) == len(self.space.decisions):
                self._close(path[-1])  # a complete architecture, evaluated
            if not ok:
                continue
            reward = float(result.reward)
            self.rewards.append(reward)
            bisect.insort(self.sorted_rewards, reward)
            self.encodings.append(self.space.encode(arch).astype(np.float32))
            self._backup(path, self._quantile(reward))
        n = len(self.rewards)
        every = max(self.config.retrain_every, math.ceil(self.config.retrain_fraction * self.n_at_fit))
        if n >= self.config.initial and (not self.fitted or n - self.n_at_fit >= every):
            with one_thread():
                self._fit()

    def _fit(self) -> None:
        y = np.array([self._quantile(r) for r in self.rewards])
        loss = self.predictor.fit(self.optimizer, np.stack(self.encodings), y, self.config.fit_steps)
        self.fitted, self.n_at_fit = True, len(self.rewards)
        log.debug("alphax: meta-predictor refit on %d results, loss %.4f", len(y), loss)

    # ----------------------------------------------------------------- reporting
    def status(self) -> dict[str, float]:
        return {"nodes": float(len(self.prefixes)), "closed": float(sum(self.closed))}

    def observe(self) -> dict[str, Any]:
        depth = max(len(p) for p in self.prefixes)
        return {"nodes": len(self.prefixes), "depth": depth, "root_visits": self.visits[0],
                "closed": int(sum(self.closed)), "fitted": self.fitted}
