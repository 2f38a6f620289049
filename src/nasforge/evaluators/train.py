"""Train each architecture from scratch on a proxy budget and score it on a validation split.

The reward is the validation accuracy (percent, as in the tabular benchmarks); the test accuracy is
reported in the metrics and never used as a reward. The proxy is set through the config: fewer
``epochs``, a ``fraction`` of the training images, and smaller networks through ``model_args``
(space-specific knobs such as ``C`` channels or the number of cells; see the space's docstring).
The run's ``fidelity`` (``--fidelity``), when set, is the number of epochs and overrides ``epochs``.
The data are loaded and split once per evaluator; the evaluation ``seed`` seeds the weight
initialisation, the batch order and the augmentation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..arch import Architecture
from ..errors import ConfigError
from ..registry import EVALUATORS, SPACES
from ..result import Result
from ..spaces.base import SearchSpace
from ..train import DataConfig, ImageData, default_cache_dir, load_dataset, make_splits
from ..train.loop import TrainConfig, build_model, resolve_device, train_architecture
from .base import Evaluator
from .costs import CostModel

log = logging.getLogger(__name__)

DEFAULT_DATASET = "digits"


@dataclass
class TrainEvaluatorConfig(TrainConfig, DataConfig):
    """Proxy training of the ``train`` evaluator: every :class:`TrainConfig` and :class:`DataConfig` field
    (``epochs``, ``lr``, ``val_size``, ``fraction``...) plus ``model_args`` for the space's ``build``.

    The proxy defaults to 3 epochs: short training ranks architectures well enough for a search
    (NASNet and ENAS search on short proxies too) while keeping a search of 100 networks affordable.
    """

    epochs: int = 3
    model_args: dict[str, Any] = field(default_factory=dict)  # arguments of the space's network (nasforge show space S lists them)

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        DataConfig.__post_init__(self)
        if self.val_size == 0:
            raise ValueError("val_size must be positive: the search's reward is the validation accuracy")

    def train_config(self, epochs: int | None = None) -> TrainConfig:
        values = {f: getattr(self, f) for f in TrainConfig.__dataclass_fields__}
        if epochs is not None:
            values["epochs"] = epochs
        return TrainConfig(**values)


def check_epochs(fidelity: float) -> int:
    """A fidelity as a number of training epochs (a whole number, at least 1)."""
    if fidelity != int(fidelity) or fidelity < 1:
        raise ConfigError(f"fidelity: the train evaluator's fidelity is its number of epochs, a whole number "
                          f"at least 1; got {fidelity}")
    return int(fidelity)


def is_trainable(space: SearchSpace) -> bool:
    """Whether the space builds image classifiers (registered with ``trainable=True``)."""
    return space.name in SPACES and bool(SPACES.get(space.name).capabilities.get("trainable"))


@EVALUATORS.register("train", trains=True, tabular=False, benchmark=False, any_blocks=True)
class TrainEvaluator(Evaluator):
    """Train from scratch on a proxy budget: reward validation accuracy (%), test accuracy reported."""

    Config = TrainEvaluatorConfig
    cost_unit = "epochs"
    reports_costs = True

    def __init__(
        self,
        space: SearchSpace,
        config: TrainEvaluatorConfig | None = None,
        context: Any = None,
        *,
        data: ImageData | None = None,
    ) -> None:
        super().__init__(space, config, context)
        if not is_trainable(space):
            known = ", ".join(SPACES.names(trainable=True)) or "none registered"
            raise ConfigError(f"evaluator: 'train' needs a trainable space ({known}); {space.name!r} builds no models")
        if data is None:
            ctx = self.context
            data = load_dataset(ctx.dataset or DEFAULT_DATASET, ctx.data, ctx.cache_dir or default_cache_dir())
        self.dataset = data.name
        fidelity = self.context.fidelity  # the run's training length, in epochs
        self.epochs = self.config.epochs if fidelity is None else check_epochs(fidelity)
        self.splits = make_splits(data, self.config.data_config())
        self.device = resolve_device(self.context.device)
        self._check_model_args()
        log.info("train evaluator: %s, %d training / %d validation / %d test images, device %s", data.name,
                 len(self.splits.train), len(self.splits.val), len(self.splits.test), self.device)

    def _build(self, arch: Architecture, seed: int | None = None) -> Any:
        c = self.splits.shape[0]
        return build_model(self.space, arch, num_classes=self.splits.num_classes, in_channels=c, seed=seed,
                           **self.config.model_args)

    def cost_model(self) -> CostModel:
        """The network it trains, on one image of the data set, on the training device."""
        return CostModel(self.space, self._build, tuple(self.splits.shape), self.measure, self.device)

    def _check_model_args(self) -> None:
        # Bad model_args would otherwise fail every evaluation of the search, one by one.
        try:
            self._build(self.space.sample(np.random.default_rng(0)), seed=0)
        except TypeError as exc:
            raise ConfigError(f"evaluator.model_args: {exc}") from None

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        self.space.validate(arch)
        epochs = self.epochs if fidelity is None else check_epochs(fidelity)
        done = train_architecture(self.space, arch, self.splits, self.config.train_config(epochs),
                                  model_args=self.config.model_args, seed=seed, device=self.device)
        outcome = done.outcome
        sizes = {"params": done.params, "flops": done.flops}
        trained = outcome.train
        # The cost unit is an epoch over the whole training split, so a fraction of the data costs less.
        cost = trained.epochs * self.config.fraction
        metrics = {**sizes, "epochs": trained.epochs, "train_time_s": trained.time_s, "dataset": self.dataset}
        if trained.failed:
            return Result.failure(trained.error or "training failed", cost=cost, **metrics)
        return Result(
            100.0 * outcome.val_accuracy,
            {
                "test_accuracy": 100.0 * outcome.test_accuracy,
                "val_accuracy": 100.0 * outcome.val_accuracy,
                "train_accuracy": 100.0 * trained.train_accuracy,
                "train_loss": trained.train_loss,
                **metrics,
            },
            cost=cost,
        )

    @property
    def fidelities(self) -> tuple[float, ...]:
        """Any whole number of epochs up to the run's (``epochs``, or ``--fidelity``)."""
        return tuple(float(e) for e in range(1, self.epochs + 1))

    def __repr__(self) -> str:
        return f"<TrainEvaluator {self.dataset} epochs={self.epochs} device={self.device}>"
