"""Training-free evaluation: score an untrained network by a zero-cost proxy on a few real minibatches.

The network is the one the ``train`` evaluator would train (``space.build`` with ``model_args``, for the
run's data set); :mod:`nasforge.proxies` computes the proxies. ``proxy`` chooses the reward: one proxy, or
``ensemble``, the mean rank of ``members`` against a reference sample of ``reference`` architectures
(:class:`~nasforge.proxies.ReferenceRanks`), scored once, when first needed.

An architecture's score depends on nothing but the architecture and the run's seed: the seed fixes the
minibatches (``batches`` of ``batch_size`` training images), the weight initialisation (the same seed for
every network) and the reference sample, whatever trial evaluates it; so repeated evaluations agree and the
evaluator can serve as a strategy's prior (``--prior zerocost``). With ``--benchmark`` naming a table of the
space (NAS-Bench-201), the table's test accuracy of each cell is reported beside the score, never used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..arch import Architecture
from ..errors import ConfigError
from ..proxies import PROXIES, ReferenceRanks, measure
from ..registry import EVALUATORS, SPACES
from ..result import Result
from ..spaces.base import SearchSpace
from ..train import DataConfig, ImageData, default_cache_dir, load_dataset, make_splits
from ..train.loop import build_model
from .base import Evaluator, refuse_fidelity
from .train import DEFAULT_DATASET, is_trainable

log = logging.getLogger(__name__)

#: the ensemble's default members: the three proxies published as the best rankers on NAS-Bench-201 (Mellor et
#: al. 2021 for nwot and jacov, Abdelfattah et al. 2021 for synflow and jacov), chosen before measuring ours
DEFAULT_MEMBERS = ("nwot", "synflow", "jacov")


@dataclass
class ZeroCostConfig(DataConfig):
    """The proxy and its data (every :class:`DataConfig` field: ``resolution``, ``split_seed``...).

    ``proxy`` is one of :data:`nasforge.proxies.PROXIES` or ``ensemble`` (the mean rank of ``members``
    against ``reference`` architectures sampled with the run's seed). ``record`` names further proxies to
    compute and record in each result's metrics (not the reward). One minibatch of 64 images is the published
    setting's scale (Mellor et al. use 128 for nwot; Abdelfattah et al. 64) at a second or so a cell on one core.
    """

    proxy: str = "ensemble"  # the reward: one proxy (nwot, synflow, snip, grad_norm, jacov, params, flops) or ensemble
    members: list[str] = field(default_factory=lambda: list(DEFAULT_MEMBERS))  # proxies the ensemble ranks by
    record: list[str] = field(default_factory=list)  # further proxies recorded in each result (not the reward)
    batch_size: int = 64  # images per minibatch the proxies see
    batches: int = 1  # minibatches per architecture
    reference: int = 50  # architectures sampled with the run's seed that the ensemble ranks against
    model_args: dict[str, Any] = field(default_factory=dict)  # arguments of the space's untrained network

    def __post_init__(self) -> None:
        DataConfig.__post_init__(self)
        known = (*PROXIES, "ensemble")
        if self.proxy not in known:
            raise ValueError(f"proxy must be one of {', '.join(known)}, got {self.proxy!r}")
        for name in (*self.members, *self.record):
            if name not in PROXIES:
                raise ValueError(f"unknown proxy {name!r} in members or record; known: {', '.join(PROXIES)}")
        if not self.members:
            raise ValueError("members: the ensemble needs at least one proxy")
        if self.batch_size < 2 or self.batches < 1 or self.reference < 2:
            raise ValueError("need batch_size >= 2, batches >= 1 and reference >= 2")

    def wanted(self) -> list[str]:
        """The proxies an evaluation computes: the reward's, then the recorded ones."""
        own = list(self.members) if self.proxy == "ensemble" else [self.proxy]
        return list(dict.fromkeys([*own, *self.record]))


@EVALUATORS.register("zerocost", trains=False, tabular=False, benchmark=False, prior=True)
class ZeroCostEvaluator(Evaluator):
    """Training-free: a zero-cost proxy of the untrained network (or their rank ensemble) is the reward."""

    Config = ZeroCostConfig

    def __init__(self, space: SearchSpace, config: ZeroCostConfig | None = None, context: Any = None, *,
                 data: ImageData | None = None) -> None:
        super().__init__(space, config, context)
        if not is_trainable(space):
            known = ", ".join(SPACES.names(trainable=True)) or "none registered"
            raise ConfigError(f"evaluator: 'zerocost' needs a space that builds networks ({known}); "
                              f"{space.name!r} builds none")
        ctx = self.context
        refuse_fidelity("zerocost", ctx)
        if data is None:
            data = load_dataset(ctx.dataset or DEFAULT_DATASET, ctx.data, ctx.cache_dir or default_cache_dir())
        self.dataset = data.name
        splits = make_splits(data, self.config.data_config())
        self.num_classes, self.shape = splits.num_classes, splits.shape
        generator = torch.Generator().manual_seed(ctx.seed)
        n = self.config.batch_size * self.config.batches
        if n > len(splits.train):
            raise ConfigError(f"evaluator.batch_size: {self.config.batches} batches of {self.config.batch_size} "
                              f"need {n} training images; {data.name} has {len(splits.train)}")
        order = torch.randperm(len(splits.train), generator=generator)[:n]
        self.minibatches = [(splits.normalise(splits.train.x[idx]), splits.train.y[idx])
                            for idx in order.split(self.config.batch_size)]
        self.table: Any = None
        if ctx.benchmark and SPACES.get(space.name).capabilities.get("tabular"):
            from .tabular import Table

            self.table = Table(ctx.benchmark, space)
        self._ranks: ReferenceRanks | None = None
        try:
            self.proxies(space.sample(np.random.default_rng(ctx.seed)), ["params"])
        except TypeError as exc:  # bad model_args would otherwise fail every evaluation of the search
            raise ConfigError(f"evaluator.model_args: {exc}") from None
        log.info("zerocost evaluator: %s on %s, %d batch(es) of %d images, proxy %s", space.name, data.name,
                 len(self.minibatches), self.config.batch_size, self.config.proxy)

    def proxies(self, arch: Architecture, wanted: Sequence[str]) -> dict[str, float]:
        """The proxies ``wanted`` of ``arch``'s untrained network (initialised with the run's seed)."""
        model = build_model(self.space, arch, num_classes=self.num_classes, in_channels=self.shape[0],
                            seed=self.context.seed, **self.config.model_args)
        # the proxies' forward passes draw nothing at random, but a model's dropout would: fork the global RNG
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            return measure(model, self.minibatches, wanted)

    @property
    def ranks(self) -> ReferenceRanks:
        """The reference ranks of the ensemble's members (sampled and scored on first use)."""
        if self._ranks is None:
            rng = np.random.default_rng([self.context.seed, 201])
            start = time.perf_counter()
            values = [self.proxies(self.space.sample(rng), self.config.members) for _ in range(self.config.reference)]
            self._ranks = ReferenceRanks({m: [v[m] for v in values] for m in self.config.members})
            log.info("zerocost: reference of %d architectures scored in %.1f s", self.config.reference,
                     time.perf_counter() - start)
        return self._ranks

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        if fidelity is not None:
            raise ConfigError(f"fidelity: the 'zerocost' evaluator has no fidelity (got {fidelity})")
        self.space.validate(arch)
        ranks = self.ranks if self.config.proxy == "ensemble" else None  # scored once, outside the timing
        start = time.perf_counter()
        values = self.proxies(arch, self.config.wanted())
        reward = values[self.config.proxy] if ranks is None else ranks.score(values, self.config.members)
        metrics: dict[str, Any] = {**values, "time_s": time.perf_counter() - start, "dataset": self.dataset}
        if self.table is not None:
            test = self.table.value(arch, self.table.report_column)
            if test is not None:
                metrics["test_accuracy"] = test
        return Result(reward, metrics, cost=1.0)

    def __repr__(self) -> str:
        return f"<ZeroCostEvaluator {self.dataset} proxy={self.config.proxy}>"
