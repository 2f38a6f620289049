"""Latent Action NAS (Wang, Zhao, Jinnai, Tian & Fonseca, "Neural Architecture Search by Learning
Action Space for Monte Carlo Tree Search", 2019).

LaNAS recursively splits the search space with learned linear constraints: at every node of a
binary tree a linear regressor on the architectures' encodings (``space.encode``) that fall into the
node predicts their reward, and the node's mean reward cuts its region into a good part (left,
prediction above the mean) and a bad part (right). UCB selection from the root picks a leaf, and the
next architecture is sampled uniformly inside that leaf's constraints. The tree is re-learnt every
``select`` samples; the first ``initial_samples`` architectures are uniform random samples.

Choices where the paper leaves room (all independent of any data set):

- Rewards are replaced by their quantile rank among all rewards seen (0 = worst, 1 = best), so that
  any reward scale and any outliers (diverged trainings) give the same tree; the paper's accuracies
  lie in [0, 1] too, which is what its UCB constant refers to.
- The regressor is a ridge regression (a small L2 penalty keeps the fit defined when a deep node
  holds fewer samples than encoding dimensions). A split that does not separate the node's samples
  into a non-empty left part with a higher mean than a non-empty right part is not made: the node
  stays a leaf, as such an action would not separate good from bad.
- Finite spaces (up to ``max_enumerate`` architectures) are enumerated and encoded once; a leaf is
  sampled uniformly among the not yet proposed architectures that satisfy its constraints, and UCB
  never descends into a region whose architectures have all been proposed. Other
  spaces use rejection sampling (``sample_tries`` uniform draws), then a Metropolis random walk of
  mutations that stays inside the region (uniform target, mutation as symmetric proposal, started at
  an evaluated member of the leaf, at most ``sample_tries`` steps). If the region is empty or
  exhausted, the last constraint is dropped (the parent's region) until an architecture is found,
  ending with a plain unseen uniform sample.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..arch import Architecture
from ..codec import Encoded
from ..registry import STRATEGIES
from ..result import Result
from .base import Strategy, usable
from .common import UnseenSampler

log = logging.getLogger(__name__)


@dataclass
class LaNASConfig:
    """LaNAS hyper-parameters.

    The paper's NAS-Bench-101 setting is height 5, ``select`` 100 and 400 initial samples for
    budgets of thousands; its ablation (Fig. 6) finds deeper trees and smaller ``select`` better,
    limited only by compute, and 100-400 initial samples better than 2,000 for reaching good
    networks early (but some better than none). Fitting a few ridge regressions is cheap next to one
    evaluation, so the defaults re-learn every few samples and start after a handful of random ones:
    the same proportions scaled to budgets of a hundred instead of thousands.
    The paper's UCB has ``c = 0.5`` on raw accuracies; its authors' follow-up (LA-MCTS, Wang, Fonseca
    & Tian 2020) advises ``Cp`` of 1-10 % of the largest reward, hence 0.1 on our [0, 1] rank scale.
    """

    height: int = 5  # levels of nodes: at most 2**(height-1) leaves (the paper's NAS-Bench setting)
    cp: float = 0.1  # UCB exploration constant, for rewards normalised to [0, 1] (see below)
    select: int = 3  # samples between two re-learnings of the tree
    initial_samples: int = 5  # uniform random samples before the first tree
    alpha: float = 1.0  # ridge penalty of the node regressors (on one-hot encodings, rank targets)
    max_enumerate: int = 200_000  # finite spaces up to this size are enumerated and encoded once
    sample_tries: int = 500  # rejection draws, then random-walk steps, per region (other spaces)

    def __post_init__(self) -> None:
        if self.height < 1:
            raise ValueError("height must be at least 1")
        if self.select < 1 or self.initial_samples < 0 or self.sample_tries < 1:
            raise ValueError("need select >= 1, initial_samples >= 0 and sample_tries >= 1")
        if self.cp < 0 or self.alpha < 0:
            raise ValueError("cp and alpha must be non-negative")


@dataclass
class Node:
    """One tree node: its place in the tree and, for an inner node, its linear split."""

    parent: int
    depth: int
    good: bool | None = None  # left (good) or right (bad) child of its parent; None for the root
    weight: np.ndarray | None = None  # regressor coefficients (None: a leaf)
    bias: float = 0.0
    threshold: float = 0.0  # the node's mean normalised reward
    left: int = -1
    right: int = -1

    @property
    def is_leaf(self) -> bool:
        return self.weight is None

    def goes_left(self, x: np.ndarray) -> np.ndarray | bool:
        assert self.weight is not None, "a leaf does not split"
        # einsum, not BLAS: a matrix-vector product this small is slower threaded on a busy machine
        return np.einsum("...j,j->...", x, self.weight) + self.bias > self.threshold


@STRATEGIES.register("lanas", guided=True, batch=True, prior=True, paper="Wang et al. 2019 (LaNAS)")
class LaNAS(Strategy):
    """Latent Action NAS: MCTS over a tree of learned linear good/bad splits of the encodings."""

    Config = LaNASConfig
    #: derived from the space alone (rebuilt lazily), so kept out of the saved state
    _not_state = ("space", "config", "_table", "_index", "_archs", "_regions")

    def __init__(self, space, config: LaNASConfig | None = None, seed: int = 0) -> None:
        super().__init__(space, config, seed)
        self.sampler = UnseenSampler(space)
        self.archs: list[Architecture] = []  # usable evaluated architectures, in arrival order
        self.rewards: list[float] = []
        self.encodings = np.zeros((0, space.encoding_size))
        self.leaf_of: list[int] = []  # leaf of each evaluated architecture in the current tree
        self.nodes: list[Node] = [Node(parent=-1, depth=0)]
        self.n_learnt = 0  # samples the current tree was learnt from
        self.taken: np.ndarray | None = None  # finite spaces: proposed architectures, by table row
        self._table: np.ndarray | None = None
        self._index: dict[Any, list[int]] | None = None
        self._archs: list[Architecture] | None = None
        self._regions: dict[int, np.ndarray] = {}  # finite spaces: table rows inside each node's region

    # ----------------------------------------------------------------- finite spaces
    @property
    def finite(self) -> bool:
        size = self.space.size
        return size is not None and size <= self.config.max_enumerate

    def _enumerated(self) -> tuple[np.ndarray, dict[Any, list[int]], list[Architecture]]:
        archs = list(self.space.enumerate())
        table = np.stack([self.space.encode(a) for a in archs]).astype(np.float64)
        index: dict[Any, list[int]] = {}
        for i, a in enumerate(archs):
            index.setdefault(self.space.key(a), []).append(i)
        return table, index, archs

    def _ensure_table(self) -> tuple[np.ndarray, list[Architecture], np.ndarray]:
        """The enumerated space (encodings, architectures) and which rows were proposed, built on first use."""
        if self._table is None or self._index is None or self._archs is None:
            self._table, self._index, self._archs = self._enumerated()
        if self.taken is None:
            self.taken = np.zeros(len(self._table), dtype=bool)
            for key in self.sampler.seen:
                self.taken[self._index.get(key, [])] = True
        return self._table, self._archs, self.taken

    def load_state_dict(self, state: dict[str, Any] | Encoded) -> None:
        super().load_state_dict(state)
        self._regions = {}  # they belonged to the tree before loading

    def _region(self, node_id: int) -> np.ndarray:
        """Rows of the enumerated table inside a node's region (cached until the tree changes)."""
        if node_id not in self._regions:
            node = self.nodes[node_id]
            table = self._ensure_table()[0]
            if node.parent < 0:
                self._regions[node_id] = np.ones(len(table), dtype=bool)
            else:
                parent = self.nodes[node.parent]
                left = np.asarray(parent.goes_left(table))
                self._regions[node_id] = self._region(node.parent) & (left if node.good else ~left)
        return self._regions[node_id]

    def _mark(self, archs: Sequence[Architecture]) -> None:
        self.sampler.mark(archs)
        if self.finite and self.taken is not None and self._index is not None:
            for a in archs:
                self.taken[self._index.get(self.space.key(a), [])] = True

    # ----------------------------------------------------------------- ask / tell
    def ask(self, n: int = 1) -> list[Architecture]:
        if len(self.rewards) >= self.config.initial_samples and len(self.rewards) - self.n_learnt >= self.config.select:
            self.learn()
        out = []
        for _ in range(n):
            if self.prior is not None and len(self.rewards) < self.config.initial_samples:
                arch = self.initial_sample(self.sampler)
            else:
                arch = self.propose(self.select_path())
            self._mark([arch])
            out.append(arch)
        return out

    def tell(self, archs: Sequence[Architecture], results: Sequence[Result]) -> None:
        self._mark(archs)
        for arch, result, ok in zip(archs, results, usable(results)):
            if ok:
                x = self.space.encode(arch).astype(np.float64)
                self.archs.append(arch)
                self.rewards.append(float(result.reward))
                self.encodings = np.vstack([self.encodings, x])
                self.leaf_of.append(self._route(x))

    # ----------------------------------------------------------------- learning
    def normalised(self) -> np.ndarray:
        """Quantile ranks of the rewards in [0, 1] (ties share their average rank)."""
        from scipy.stats import rankdata  # where used: see nasforge.predictors.gp

        n = len(self.rewards)
        if n < 2:
            return np.full(n, 0.5)
        return (rankdata(self.rewards) - 1.0) / (n - 1.0)

    def learn(self) -> None:
        """Re-learn the tree from all evaluated architectures (done every ``select`` samples)."""
        from sklearn.linear_model import Ridge  # where used: see nasforge.predictors.gp

        q = self.normalised()
        self.nodes = [Node(parent=-1, depth=0)]
        leaf_of = np.zeros(len(q), dtype=int)
        todo = [(0, np.arange(len(q)))]
        while todo:
            node_id, idx = todo.pop(0)  # breadth first: ids grow level by level
            node = self.nodes[node_id]
            leaf_of[idx] = node_id  # until a split sends them further down
            if node.depth + 1 >= self.config.height or len(idx) < 2:
                continue
            model = Ridge(alpha=self.config.alpha).fit(self.encodings[idx], q[idx])
            node.weight, node.bias = model.coef_.astype(np.float64), float(model.intercept_)
            node.threshold = float(q[idx].mean())
            left = np.asarray(node.goes_left(self.encodings[idx]))
            if left.all() or not left.any() or not self._separates(idx[left], idx[~left], q):
                node.weight = None  # this action would not separate good from bad networks
                continue
            for good, part in ((True, idx[left]), (False, idx[~left])):
                self.nodes.append(Node(parent=node_id, depth=node.depth + 1, good=good))
                child = len(self.nodes) - 1
                if good:
                    node.left = child
                else:
                    node.right = child
                todo.append((child, part))
        self.leaf_of = leaf_of.tolist()
        self.n_learnt = len(q)
        self._regions = {}
        log.debug("lanas: tree of %d nodes learnt from %d samples", len(self.nodes), len(q))

    def _separates(self, good: np.ndarray, bad: np.ndarray, q: np.ndarray) -> bool:
        """Whether the good side is better on average, both in rank and in raw reward."""
        raw = np.asarray(self.rewards)
        return q[good].mean() > q[bad].mean() and raw[good].mean() > raw[bad].mean()

    def _route(self, x: np.ndarray) -> int:
        node_id = 0
        while not self.nodes[node_id].is_leaf:
            node = self.nodes[node_id]
            node_id = node.left if node.goes_left(x) else node.right
        return node_id

    def _path(self, node_id: int) -> list[int]:
        """Node ids from the root to ``node_id``."""
        path = [node_id]
        while self.nodes[path[-1]].parent >= 0:
            path.append(self.nodes[path[-1]].parent)
        return path[::-1]

    def node_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per node: number of evaluated architectures, their mean normalised and mean raw reward."""
        k = len(self.nodes)
        ancestors = np.zeros((k, k), dtype=bool)  # row: a node; columns: it and its ancestors
        for i in range(k):
            ancestors[i, self._path(i)] = True
        member = ancestors[np.asarray(self.leaf_of, dtype=int)]
        counts = member.sum(axis=0)
        safe = np.maximum(counts, 1)
        q = self.normalised() @ member / safe if len(self.leaf_of) else np.zeros(k)
        raw = np.asarray(self.rewards) @ member / safe if len(self.leaf_of) else np.zeros(k)
        return counts, q, raw

    # ----------------------------------------------------------------- search
    def _ucb(self, value: float, n_child: int, n_parent: int) -> float:
        if n_child == 0:
            return math.inf
        return value + 2.0 * self.config.cp * math.sqrt(2.0 * math.log(max(n_parent, 1)) / n_child)

    def select_path(self) -> list[int]:
        """Path from the root to the leaf UCB selects (in a finite space, among leaves with unseen networks)."""
        counts, q, _ = self.node_stats()
        node_id = 0
        while not self.nodes[node_id].is_leaf:
            node = self.nodes[node_id]
            scores = [self._ucb(q[c], int(counts[c]), int(counts[node_id])) if self._open(c) else -math.inf
                      for c in (node.left, node.right)]
            node_id = node.left if scores[0] >= scores[1] else node.right
        return self._path(node_id)

    def _open(self, node_id: int) -> bool:
        """Whether a node's region may still hold an architecture not proposed yet."""
        if not self.finite:
            return True
        taken = self._ensure_table()[2]
        return bool((self._region(node_id) & ~taken).any())

    def propose(self, path: list[int]) -> Architecture:
        """An unseen architecture inside the region of ``path``, relaxing the deepest constraint if none."""
        for depth in range(len(path), 0, -1):
            arch = self._sample_region(path[:depth])
            if arch is not None:
                return arch
        return self.sampler.propose(lambda: self.space.sample(self.rng))

    def inside(self, path: list[int], x: np.ndarray) -> np.ndarray | bool:
        """Whether encodings ``x`` (one or a matrix of rows) satisfy the constraints along ``path``."""
        ok: Any = np.ones(len(x), dtype=bool) if x.ndim == 2 else True
        for parent, child in zip(path, path[1:]):
            node = self.nodes[parent]
            left = node.goes_left(x)
            ok = ok & (left if child == node.left else ~left)
        return ok

    def _sample_region(self, path: list[int]) -> Architecture | None:
        if self.finite:
            _, archs, taken = self._ensure_table()
            free = np.flatnonzero(self._region(path[-1]) & ~taken)
            if len(free) == 0:
                return None
            return archs[int(free[self.rng.integers(len(free))])]
        return self._rejection(path) or self._random_walk(path)

    def _rejection(self, path: list[int]) -> Architecture | None:
        for _ in range(self.config.sample_tries):
            arch = self.space.sample(self.rng)
            if self.sampler.is_new(arch) and self.inside(path, self.space.encode(arch).astype(np.float64)):
                return arch
        return None

    def _random_walk(self, path: list[int]) -> Architecture | None:
        members = [i for i, leaf in enumerate(self.leaf_of) if path[-1] in self._path(leaf)]
        if not members:
            return None
        arch = self.archs[members[int(self.rng.integers(len(members)))]]
        for _ in range(self.config.sample_tries):
            step = self.space.mutate(arch, self.rng)
            if self.inside(path, self.space.encode(step).astype(np.float64)):
                arch = step
                if self.sampler.is_new(arch):
                    return arch
        return None

    # ----------------------------------------------------------------- reporting
    def observe(self) -> dict[str, Any]:
        return describe_tree(self)


def describe_tree(strategy: LaNAS) -> dict[str, Any]:
    """Plain-data description of the tree: per node its place, count and mean reward."""
    counts, q, raw = strategy.node_stats()
    nodes = []
    for i, node in enumerate(strategy.nodes):
        nodes.append({
            "id": i,
            "parent": node.parent if node.parent >= 0 else None,
            "depth": node.depth,
            "side": "root" if node.good is None else "good" if node.good else "bad",
            "leaf": node.is_leaf,
            "left": node.left,
            "right": node.right,
            "count": int(counts[i]),
            "mean_reward": float(raw[i]) if counts[i] else None,
            "mean_rank": float(q[i]) if counts[i] else None,
        })
    return {"n_samples": len(strategy.rewards), "n_learnt": strategy.n_learnt,
            "height": strategy.config.height, "cp": strategy.config.cp, "nodes": nodes}
