"""One-shot evaluation with shared weights (ENAS, EDNAS): every child is a sub-graph of one super-network.

Each evaluation of an architecture ``a`` proposed by the strategy's policy is one step of the alternation
ENAS and EDNAS describe, with M = 1 child per step:

1. the shared weights are trained for ``train_steps`` SGD steps on training minibatches, through the
   operations of ``a`` only (the policy is fixed meanwhile: the strategy updates only in ``tell``);
2. with the weights fixed, ``a`` is scored on one validation minibatch: its accuracy is the reward that
   REINFORCE in the strategy learns from.

The budget of the search is thus the number of child steps, and the learning-rate schedule spans it.
Batch normalisation in the shared operations uses each batch's own statistics (as ENAS computes its
rewards in training mode), so one validation minibatch scores a child meaningfully. The test accuracy
reported for an architecture is that of the shared weights on the whole test set (``report_test``), never
shown to the strategy. The evaluator keeps its weights in memory, so one-shot searches run on the
sequential executor. At the end of every epoch of shared-weight training the search loop stores a joint
checkpoint (weights, optimiser, schedule, data order, and the strategy's policy and generator); a killed
search resumes from the last one and redoes the evaluations after it.

Differentiable strategies (``darts``, ``gdas``: registry capability ``differentiable``) are attached to the
evaluator (:meth:`SupernetEvaluator.attach`; the factory does it) and an evaluation is then one step of their
alternation instead: an architecture step on a validation minibatch of ``batch_size`` images through the
relaxed super-network (every operation weighted, or GDAS' one sampled operation per edge), whose accuracy is
the reward, then ``train_steps`` steps of the network's weights through a relaxed architecture with the
architecture weights fixed. With the strategy's ``order=2`` the architecture gradient is DARTS' second-order one
(:meth:`SupernetEvaluator.second_order_gradient`). Only cell super-networks (``nb201``, ``darts``) have the relaxed forward.

A search ends with a derivation (:meth:`SupernetEvaluator.derive`): the best-scored of the policy's samples and its
most likely architecture, and for a strategy whose weights are trained as the whole mixture (``darts``) the
perturbation-based selection (:mod:`~nasforge.evaluators.perturbation`), which is then the pick
(``derive_method``).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from ..registry import EVALUATORS
from ..result import Result
from ..spaces.base import SearchSpace
from ..supernet import SUPERNETS, CellSupernet, Relaxed, build_supernet
from ..train import DataConfig, default_cache_dir, load_dataset, make_splits
from ..train.augment import augment_batch
from ..train.distributed import Replicas
from ..train.loop import Stepper, TrainConfig, accuracy, resolve_device
from .base import StatefulEvaluator, refuse_fidelity
from .train import DEFAULT_DATASET

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

#: best-scored candidates a derivation lists besides its pick
DERIVE_KEEP = 10
#: the ways a derivation picks (``SupernetConfig.derive_method``)
DERIVE_METHODS = ("auto", "sample", "perturb")


@dataclass
class SupernetConfig(TrainConfig, DataConfig):
    """Shared-weight training (every :class:`TrainConfig` / :class:`DataConfig` field) and the reward.

    ``train_steps`` SGD steps of the shared weights per evaluated child (ENAS trains the shared weights for
    a whole epoch between controller phases; one step per sampled child interleaves the same two updates
    more finely). ``reward_batch`` validation images score a child. ``derive_batch`` validation images
    (the same for every candidate, normalised in equal chunks of at most ``derive_chunk``) score the candidates
    of the final derivation: EDNAS uses one minibatch, but comparing 100 candidates on 128 images picks
    the luckiest (one minibatch's accuracy varies by about 4 points, more than most candidates differ).
    On NAS-Bench-201 the ranking one chunk of 1,024 images gives varies with the chunk, and 4,096 rank
    more steadily (``benchmarks/oneshot_nb201_ranking.py``, docs/benchmarks.md). ``model_args`` go to the
    super-network (the space's model arguments plus ``shared_affine`` and ``running_stats``).
    """

    train_steps: int = 1  # shared-weight SGD steps per evaluated child
    reward_batch: int = 128  # validation images that score a child
    derive_batch: int = 4096  # validation images that score each candidate of the final derivation
    # the derivation forwards its images in equal chunks of at most this many, each normalised with its own batch
    # statistics (a few hundred estimate them well); it bounds the memory of a forward through the whole mixture,
    # and data-parallel at full size two processes each forwarding 1,024 images slow each other down
    # (docs/benchmarks.md, "Data-parallel training")
    derive_chunk: int = 1024  # largest chunk of the derivation's validation images in one forward pass
    report_test: bool = False  # also score test accuracy (never shown to the strategy; slow)
    model_args: dict[str, Any] = field(default_factory=dict)  # the super-network's model arguments (the space's, plus shared_affine and running_stats)
    # a training-free proxy (synflow, nwot, ensemble... of the zerocost evaluator) whose rank among the
    # derivation's candidates is averaged with the shared weights' rank; empty: the shared weights alone
    derive_proxy: str = ""  # proxy combined with the shared weights' rank in the derivation ("": none)
    derive_proxy_weight: float = 0.5  # the proxy's share of that average (1: the proxy's rank alone picks)
    # how the answer is derived: "sample" (the best-scored of the policy's samples), "perturb" (perturbation-based
    # selection on the architecture weights' mixture, differentiable strategies), "auto" (perturb for strategies
    # that train the mixture: darts; sample otherwise)
    derive_method: str = "auto"  # sample | perturb | auto
    # the paper's fine-tuning between perturbation decisions: after each decision (so also before the pick is
    # scored), this many SGD steps of the shared weights through the mixture as fixed so far (a fresh optimiser at
    # lr / 10, one cosine to lr_min over all of them); the weights are put back afterwards, so deriving changes
    # nothing
    derive_tune_steps: int = 0  # weight steps between perturbation decisions (0: none)

    def __post_init__(self) -> None:
        TrainConfig.__post_init__(self)
        DataConfig.__post_init__(self)
        if self.train_steps < 0 or min(self.reward_batch, self.derive_batch, self.derive_chunk) < 1:
            raise ValueError("train_steps must be >= 0, reward_batch, derive_batch and derive_chunk >= 1")
        if self.derive_tune_steps < 0:
            raise ValueError(f"derive_tune_steps must be >= 0, got {self.derive_tune_steps}")
        if self.val_size == 0:
            raise ValueError("val_size must be positive: rewards come from the validation split")
        if self.derive_method not in DERIVE_METHODS:
            raise ValueError(f"derive_method must be one of {', '.join(DERIVE_METHODS)}, got {self.derive_method!r}")
        if not 0 <= self.derive_proxy_weight <= 1:
            raise ValueError(f"derive_proxy_weight must be in [0, 1], got {self.derive_proxy_weight}")
        if self.derive_proxy:
            from .zerocost import ZeroCostConfig

            ZeroCostConfig(proxy=self.derive_proxy)  # an unknown proxy is named now, not after the search

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{f: getattr(self, f) for f in TrainConfig.__dataclass_fields__})


@contextlib.contextmanager
def _frozen_running_stats(model: nn.Module, norms: list[nn.modules.batchnorm._BatchNorm] | None = None) -> Iterator[None]:
    """Batch norms in training mode normalise with the batch's statistics without updating their buffers.

    Scoring a child must not move the running averages (``running_stats=True``) that training keeps:
    with ``track_running_stats`` off, a batch norm in training mode neither reads nor writes them.
    ``norms``: the model's batch norms that track running statistics, when the caller keeps the list (walking a
    super-network's modules for every scored child is a noticeable part of a small child's step).
    """
    if norms is None:
        norms = _tracking_norms(model)
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def _tracking_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


class _Child(nn.Module):
    """The super-network seen through one architecture, so that the one training step can drive it."""

    def __init__(self, supernet: nn.Module) -> None:
        super().__init__()
        self.supernet = supernet
        self.arch: Architecture | Relaxed | None = None

    def forward(self, x: torch.Tensor) -> Any:
        return self.supernet(x, self.arch)


@EVALUATORS.register("supernet", spaces=tuple(SUPERNETS.names()), trains=True, oneshot=True, benchmark=False,
                     any_blocks=tuple(SUPERNETS.names(any_blocks=True)),
                     differentiable=True)
class SupernetEvaluator(StatefulEvaluator):
    """Weight sharing: train the super-network through each proposed child, reward its validation accuracy."""

    Config = SupernetConfig

    def __init__(self, space: SearchSpace, config: SupernetConfig | None = None, context: Any = None) -> None:
        super().__init__(space, config, context)
        ctx = self.context
        refuse_fidelity("supernet", ctx)
        data = load_dataset(ctx.dataset or DEFAULT_DATASET, ctx.data, ctx.cache_dir or default_cache_dir(),
                            Replicas.current())  # data-parallel: decoded once, by rank 0
        cfg = self.config
        self.splits = make_splits(data, cfg.data_config())
        self.device = resolve_device(ctx.device)
        seed = ctx.seed
        # Module constructors draw from torch's global generator: fork it so that nothing outside changes.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = build_supernet(space, num_classes=self.splits.num_classes,
                                           in_channels=self.splits.shape[0], **cfg.model_args).to(self.device)
        self.child = _Child(self.supernet)
        self.budget = ctx.budget if ctx.epochs is None else ctx.epochs * self.checkpoint_every
        # The cosine schedule spans the whole search: budget x train_steps updates.
        schedule = TrainConfig(**{**vars(cfg.train_config()), "epochs": 1})
        # data-parallel (torch.distributed): every replica runs this search alike, trains on its share of each
        # batch and scores on its share of each validation batch (a differentiable strategy's architecture
        # gradient too); gradients and scores are summed over replicas (rewards, architecture steps and the
        # derivation are one process')
        self.replicas = Replicas.current()
        self.stepper = Stepper(self.child, schedule, max(self.budget * cfg.train_steps, 1), self.device,
                               self.replicas)
        self.generator = torch.Generator().manual_seed(seed)
        self.padding = cfg.crop_padding if cfg.crop_padding is not None else self.splits.shape[-1] // 8
        self.flip = self.splits.flip if cfg.flip is None else cfg.flip
        self.steps = 0
        self.relaxation: Any = None  # an attached differentiable strategy (DARTS, GDAS)
        self._norms = _tracking_norms(self.supernet)
        log.info("supernet evaluator: %s on %s, %d training / %d validation images, %d shared parameters",
                 space.name, data.name, len(self.splits.train), len(self.splits.val),
                 sum(p.numel() for p in self.supernet.parameters()))

    def attach(self, strategy: Any) -> None:
        """Let a differentiable strategy (DARTS, GDAS) drive every evaluation: see the module docstring."""
        if not isinstance(self.supernet, CellSupernet):
            cells = [n for n in SUPERNETS.names()
                     if isinstance(f := SUPERNETS.get(n).factory, type) and issubclass(f, CellSupernet)]
            raise ConfigError(f"strategy: {type(strategy).__name__} weighs the operations of a cell super-network; "
                              f"space {self.space.name!r} has none (cell spaces: {', '.join(cells)})")
        self.relaxation = strategy

    @property
    def checkpoint_every(self) -> int:
        """Evaluations per epoch of shared-weight training: the search loop checkpoints at each epoch's end."""
        steps = max(len(self.splits.train) // self.config.batch_size, 1)
        return max(steps // max(self.config.train_steps, 1), 1)

    def state_dict(self) -> dict[str, Any]:
        """Shared weights, optimiser, schedule and data-order generator (for checkpoints)."""
        return {"supernet": self.supernet.state_dict(), "optimizer": self.stepper.optimizer.state_dict(),
                "scheduler": self.stepper.scheduler.state_dict(), "scaler": self.stepper.scaler.state_dict(),
                "generator": self.generator.get_state(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.stepper.optimizer.load_state_dict(state["optimizer"])
        self.stepper.scheduler.load_state_dict(state["scheduler"])
        self.stepper.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self.steps = state["steps"]

    def _batch(self, data: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(data), (min(size, len(data)),), generator=self.generator)
        x = self.splits.normalise(data.x[idx].to(self.device))
        return x, data.y[idx].to(self.device)

    def train_step(self, arch: Architecture) -> float:
        """One SGD step of the shared weights through ``arch``; returns the loss (not finite: no update)."""
        self.child.arch = arch
        self._train_mode()
        x, y, share = self._share(*self._training_batch())
        loss, _, _ = self.stepper.step(x, y, share)
        self.steps += 1
        return loss

    def _share(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """This replica's part of a batch and its fraction of the batch (all of it in one process)."""
        if self.replicas is None:
            return x, y, 1.0
        part = self.replicas.share(len(y))
        return x[part], y[part], (part.stop - part.start) / len(y)

    def validation_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A random validation minibatch of ``reward_batch`` images."""
        return self._batch(self.splits.val, self.config.reward_batch)

    def derive_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``derive_batch`` distinct validation images in equal chunks of at most ``derive_chunk`` (batch statistics
        per chunk)."""
        val = self.splits.val
        total = min(self.config.derive_batch, len(val))
        chunks = -(-total // self.config.derive_chunk)  # equal chunks: no small last one with noisy statistics
        order = torch.randperm(len(val), generator=self.generator)[:total]  # distinct images
        return [(self.splits.normalise(val.x[idx].to(self.device)), val.y[idx].to(self.device))
                for idx in order.tensor_split(chunks)]

    def score_on(self, arch: Architecture | Relaxed, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        """Accuracy (percent) of ``arch`` over whole ``batches`` in this process (each with its own batch
        statistics); data-parallel derivation splits the candidates between the replicas, not the images."""
        counts = [self._correct(arch, x, y) for x, y in batches]
        return 100.0 * sum(c for c, _ in counts) / max(sum(n for _, n in counts), 1.0)

    @torch.no_grad()
    def score(self, arch: Architecture, batch: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
        """Accuracy (percent) of ``arch`` with the shared weights on one validation minibatch.

        Data-parallel, each replica scores its share of the minibatch with its share's batch statistics (as each
        trains on its share), and the counts are summed: every replica gets the same reward."""
        x, y = batch if batch is not None else self.validation_batch()
        x, y, _ = self._share(x, y)
        return self._percent(*self._correct(arch, x, y))

    def _percent(self, correct: float, seen: float) -> float:
        """Accuracy (percent) of this replica's counts summed over the replicas: every replica gets the same
        reward, so their strategies stay alike."""
        if self.replicas is not None:
            correct, seen = self.replicas.sum([correct, seen])
        return 100.0 * correct / max(seen, 1.0)

    @torch.no_grad()
    def _correct(self, arch: Architecture | Relaxed, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """Correct predictions of ``arch`` on ``x`` and the number of images, normalised with the batch's
        statistics (as ENAS scores its children) and no running statistics moved; in the training step's
        precision (bfloat16 where the CPU has bf16 units: ``evaluator.cpu_bf16=false`` for float32)."""
        self.child.arch = arch
        self._train_mode()
        with _frozen_running_stats(self.child, self._norms), self.stepper.precision():
            out = self.child(self.stepper.layout(x))
        logits = out[0] if isinstance(out, tuple) else out
        return float((logits.argmax(1) == y).sum()), float(len(y))

    def _train_mode(self) -> None:
        """Training mode (batch statistics); the modules are walked only when something (a test pass) left it."""
        if not self.supernet.training:
            self.child.train()

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        self.space.validate(arch)
        if self.relaxation is not None:
            return self._relaxed_step()
        losses = [self.train_step(arch) for _ in range(self.config.train_steps)]
        if any(not math.isfinite(v) for v in losses):
            return Result.failure(f"shared-weight loss became {losses[-1]} at step {self.steps}",
                                  cost=len(losses))
        metrics: dict[str, Any] = {"train_loss": float(sum(losses) / max(len(losses), 1)), "step": self.steps}
        if self.config.report_test:
            self.child.arch = arch
            # batch-statistics normalisation: the batch size is part of the score, kept at 512
            metrics["test_accuracy"] = 100.0 * accuracy(self.child, self.splits.test, self.splits.normalise,
                                                        batch_size=512, device=self.device, replicas=self.replicas)
        return Result(self.score(arch), metrics, cost=float(len(losses)))

    def _relaxed_step(self) -> Result:
        """An architecture step on a validation minibatch, then ``train_steps`` weight steps (first-order DARTS
        order); the reward is the relaxed network's accuracy on that minibatch."""
        strategy = self.relaxation
        total = max(self.budget * self.config.train_steps, 1)
        # data-parallel, each replica takes its share of the batch, and gradients, loss and counts are summed
        x, y, share = self._share(*self._batch(self.splits.val, self.config.batch_size))
        self.child.train()  # batch statistics, as in the weight steps
        with torch.set_grad_enabled(strategy.learning):
            relaxed = strategy.relaxed(self.steps / total)
        if strategy.learning and strategy.config.order == 2:
            grad, arch_value, logits = self.second_order_gradient(relaxed, x, y, share=share,
                                                                  exact=strategy.config.hvp == "exact")
        elif strategy.learning:
            grad, arch_value, logits = self.first_order_gradient(relaxed, x, y, share=share)
        else:  # warm-up: the relaxed network is only scored
            with _frozen_running_stats(self.child), torch.no_grad():
                self.child.arch = relaxed
                logits, arch_loss = self._relaxed_loss(x, y)
            arch_value = self._summed([], float(arch_loss), share)[1]
        if not math.isfinite(arch_value):
            return Result.failure(f"architecture loss became {arch_value} at step {self.steps}", cost=1.0)
        if strategy.learning:
            strategy.learn(relaxed, grad, arch_value)
        reward = self._percent(float((logits.argmax(1) == y).sum()), float(len(y)))
        losses = []
        for _ in range(self.config.train_steps):
            with torch.no_grad():
                mixed = strategy.relaxed(self.steps / total).detach()
            self.child.arch = mixed
            self.child.train()
            loss, _, _ = self.stepper.step(*self._share(*self._training_batch()))
            self.steps += 1
            losses.append(loss)
        if any(not math.isfinite(v) for v in losses):
            return Result.failure(f"shared-weight loss became {losses[-1]} at step {self.steps}", cost=len(losses))
        metrics = {"train_loss": float(sum(losses) / max(len(losses), 1)), "arch_loss": arch_value,
                   "step": self.steps}
        return Result(reward, metrics, cost=float(len(losses)))

    def _training_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """An augmented training minibatch of ``batch_size`` images."""
        x, y = self._batch(self.splits.train, self.config.batch_size)
        return augment_batch(x, self.generator, padding=self.padding, flip=self.flip,
                             cutout_size=self.config.cutout), y

    def _relaxed_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and cross-entropy of the network as ``self.child.arch`` weighs it (batch statistics)."""
        out = self.child(x)
        logits = out[0] if isinstance(out, tuple) else out
        return logits, nn.functional.cross_entropy(logits, y)

    def _summed(self, tensors: list[torch.Tensor], value: float, share: float) -> tuple[list[torch.Tensor], float]:
        """Data-parallel, the whole batch's gradients and loss from each replica's on its ``share`` of it (see
        :meth:`~nasforge.train.distributed.Replicas.weighted_sum`); in one process, as they are."""
        if self.replicas is None:
            return tensors, value
        return self.replicas.weighted_sum(tensors, value, share, self.device)

    def first_order_gradient(self, relaxed: Relaxed, x: torch.Tensor, y: torch.Tensor, share: float = 1.0
                             ) -> tuple[torch.Tensor, float, torch.Tensor]:
        """First-order DARTS: the gradient of the validation loss on ``(x, y)`` with respect to
        ``relaxed.weights``, the network's weights as they are. Returns the gradient, the loss and its logits.
        Data-parallel, ``(x, y)`` is this replica's ``share`` of the batch, and the gradient and loss are the whole
        batch's (the logits stay this replica's)."""
        leaf = relaxed.weights.detach().requires_grad_()
        with _frozen_running_stats(self.child):
            self.child.arch = replace(relaxed, weights=leaf)
            logits, loss = self._relaxed_loss(x, y)
            (grad,) = torch.autograd.grad(loss, [leaf])
        (grad,), value = self._summed([grad], float(loss.detach()), share)
        return grad, value, logits.detach()

    def second_order_gradient(self, relaxed: Relaxed, x: torch.Tensor, y: torch.Tensor,
                              train: tuple[torch.Tensor, torch.Tensor] | None = None, share: float = 1.0,
                              exact: bool = False) -> tuple[torch.Tensor, float, torch.Tensor]:
        """DARTS' second-order architecture gradient (Liu et al. 2019, eqs. 6-8) with respect to
        ``relaxed.weights``: the validation loss on ``(x, y)`` after one virtual SGD step of the network's weights
        on the training batch ``train`` (by default a fresh one; the optimiser's rate, momentum and weight decay),
        minus the rate times the Hessian-vector product, by central differences (``exact``: by double
        backpropagation). The weights are as before afterwards. Returns the gradient, the validation loss and its
        logits. Data-parallel, ``(x, y)`` and ``train`` are this replica's ``share`` of their batches (of one
        size), and every gradient is the whole batch's, so that all replicas take the one process' step (the
        logits stay this replica's)."""
        xt, yt = train if train is not None else self._share(*self._training_batch())[:2]
        leaf = relaxed.weights.detach().requires_grad_()
        arch = replace(relaxed, weights=leaf)
        params: list[torch.Tensor] = [p for p in self.supernet.parameters() if p.requires_grad]
        group = self.stepper.optimizer.param_groups[0]
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        originals = [p.detach().clone() for p in params]

        def grads(loss: torch.Tensor, wrt: list[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
            out = torch.autograd.grad(loss, wrt, allow_unused=True)
            return self._summed([torch.zeros_like(w) if g is None else g for g, w in zip(out, wrt)],
                                float(loss.detach()), share)

        def shift(direction: list[torch.Tensor], scale: float) -> None:
            with torch.no_grad():
                for p, w0, d in zip(params, originals, direction):
                    p.copy_(w0 + scale * d)

        try:
            with _frozen_running_stats(self.child):
                self.child.arch = relaxed.detach()
                step = grads(self._relaxed_loss(xt, yt)[1], params)[0]
                with torch.no_grad():  # w' = w - lr (g + decay w + momentum buffer), as the optimiser would step
                    for p, g in zip(params, step):
                        update = g + decay * p
                        buf = self.stepper.optimizer.state.get(p, {}).get("momentum_buffer")
                        if buf is not None:
                            update += momentum * buf
                        p.sub_(lr * update)
                self.child.arch = arch
                logits, val_loss = self._relaxed_loss(x, y)
                (direct, *v), value = grads(val_loss, [leaf, *params])
                if exact:  # d/d alpha (grad_w L_train(w, alpha) . v) at the weights before the virtual step
                    shift(v, 0.0)  # back to w
                    train_grads = torch.autograd.grad(self._relaxed_loss(xt, yt)[1], params, create_graph=True,
                                                      allow_unused=True)
                    dot = sum(((g * u).sum() for g, u in zip(train_grads, v) if g is not None), torch.zeros(()))
                    term = grads(dot, [leaf])[0][0]
                else:
                    eps = 0.01 / max(math.sqrt(sum(float((g * g).sum()) for g in v)), 1e-12)
                    hessian = []
                    for sign in (1.0, -1.0):
                        shift(v, sign * eps)
                        hessian.append(grads(self._relaxed_loss(xt, yt)[1], [leaf])[0][0])
                    term = (hessian[0] - hessian[1]) / (2 * eps)
        finally:
            with torch.no_grad():
                for p, w0 in zip(params, originals):
                    p.copy_(w0)
        return direct - lr * term, value, logits.detach()

    def derive(self, strategy: Any, n_samples: int = 100, seed: int = 0) -> dict[str, Any] | None:
        """Best of ``n_samples`` policy samples on ``derive_batch`` validation images (the same for all),
        and the most likely architecture; with ``derive_method`` perturb (or auto, for a strategy that trains the
        mixture) also the perturbation-based selection (``"perturbed"``, then the derivation's pick)."""
        batches = self.derive_batches()
        derived = derive_from_policy(self.space, strategy, lambda a: (self.score_on(a, batches), {}), n_samples,
                                     seed, rerank=self._proxy_rerank() if self.config.derive_proxy else None,
                                     replicas=self.replicas)
        if derived is not None and self.perturbs(strategy):
            derived["perturbed"] = self.perturbation_derive(strategy, batches, seed)
        return derived

    def perturbs(self, strategy: Any) -> bool:
        """Whether the derivation selects by perturbation for ``strategy`` (see ``derive_method``)."""
        method = self.config.derive_method
        mixture = getattr(strategy, "trains_mixture", None)
        if method == "perturb" and (mixture is None or not isinstance(self.supernet, CellSupernet)):
            raise ConfigError(f"evaluator.derive_method: perturb removes operations from the mixture of a "
                              f"differentiable strategy's cell super-network; strategy {type(strategy).__name__} on "
                              f"space {self.space.name!r} has none (use sample)")
        return method == "perturb" or (method == "auto" and bool(mixture))

    def perturbation_derive(self, strategy: Any, batches: list[tuple[torch.Tensor, torch.Tensor]],
                            seed: int) -> dict[str, Any]:
        """Perturbation-based selection (:mod:`~nasforge.evaluators.perturbation`) on the strategy's architecture
        weights, each perturbed mixture scored on ``batches``; decisions it does not make (a cell's number of
        blocks) come from the policy's most likely architecture. With ``derive_tune_steps`` the network is
        fine-tuned between decisions, the pick's score is the fine-tuned network's, and the search's weights are
        put back at the end."""
        from .perturbation import select_inputs, select_operations

        assert isinstance(self.supernet, CellSupernet)  # perturbs() checked it
        edges = self.supernet.relaxed_decisions()
        with torch.no_grad():
            weights = strategy.policy.weights().detach()

        governed = getattr(strategy.policy, "governed", {})

        def scores(ws: list[torch.Tensor]) -> list[float]:  # data-parallel, each replica scores its part
            return _score_all(ws, lambda w: self.score_on(Relaxed(w), batches), self.replicas)

        tune = self._tuner(len(edges) + sum(len(options) > 1 for options in governed.values()))
        with self._weights_kept():
            fixed, op_steps = select_operations(self.space, weights, edges, scores, np.random.default_rng(seed), tune)
            chosen, _, input_steps = select_inputs(self.space, fixed, governed, scores, tune)
            choices = strategy.most_likely()
            for d in edges:
                choices[d] = int(fixed[d].argmax())
            for s, c in chosen.items():
                choices[s] = c
            arch = self.space.make(choices)
            picked = self.score_on(arch, batches)  # after the last decision's fine-tuning, if any
        log.info("perturbation-based selection: %s", arch)
        return {"arch": str(arch), "score": picked, "steps": op_steps + input_steps,
                "tune_steps": self.config.derive_tune_steps}

    @contextlib.contextmanager
    def _weights_kept(self) -> Iterator[None]:
        """Put the shared weights and the data-order generator back as they were (after fine-tuning)."""
        weights = {k: v.detach().clone() for k, v in self.supernet.state_dict().items()}
        generator = self.generator.get_state()
        try:
            yield
        finally:
            self.supernet.load_state_dict(weights)
            self.generator.set_state(generator)

    def _tuner(self, decisions: int) -> Callable[[torch.Tensor], None] | None:
        """Fine-tuning after each of ``decisions`` perturbation decisions (``derive_tune_steps``; None: none):
        SGD steps of the shared weights through the mixture as fixed so far, with a fresh optimiser."""
        cfg = self.config
        if not cfg.derive_tune_steps:
            return None
        lr = cfg.lr / 10
        schedule = replace(cfg.train_config(), epochs=1, lr=lr, lr_min=min(cfg.lr_min, lr))
        stepper = Stepper(self.child, schedule, max(decisions * cfg.derive_tune_steps, 1), self.device,
                          self.replicas)

        def tune(weights: torch.Tensor) -> None:
            self.child.arch = Relaxed(weights.clone())
            self.child.train()
            for _ in range(cfg.derive_tune_steps):
                stepper.step(*self._share(*self._training_batch()))

        return tune

    def _proxy_rerank(self) -> Callable[[list[Architecture], list[float]], list[tuple[float, dict]]]:
        """The derivation's combination with ``derive_proxy``: each candidate's score becomes the weighted mean
        (``derive_proxy_weight`` for the proxy) of its rank (a fraction, ties averaged) by the shared weights and
        by the proxy among the candidates (:func:`combine_ranks`)."""
        from .zerocost import ZeroCostConfig, ZeroCostEvaluator

        # the proxy scores the standalone network (the space's own size), the one the answer will be trained as
        # on the images the shared weights see (the same split and resolution)
        zerocost = ZeroCostEvaluator(self.space, ZeroCostConfig(proxy=self.config.derive_proxy,
                                                                **vars(self.config.data_config())),
                                     replace(self.context, benchmark=None, fidelity=None))

        share = self.config.derive_proxy_weight

        def rerank(archs: list[Architecture], scores: list[float]) -> list[tuple[float, dict]]:
            proxy = [zerocost.evaluate(a).reward for a in archs]
            combined = combine_ranks(scores, proxy, share)
            return [(float(c), {"supernet": s, "proxy": q}) for c, s, q in zip(combined, scores, proxy)]

        return rerank

    def cost_model(self) -> Any:
        """A child trained on its own at the super-network's size, for costs a run asks for (never built otherwise)."""
        from .costs import CostModel

        return CostModel(self.space, lambda a: self.space.build(a, num_classes=self.splits.num_classes,
                                                                in_channels=self.splits.shape[0],
                                                                **self.config.model_args),
                         tuple(self.splits.shape), self.measure, self.device)

    def __repr__(self) -> str:
        return f"<SupernetEvaluator {self.space.name} steps={self.steps} device={self.device}>"


def combine_ranks(scores: list[float], proxy: list[float], share: float) -> np.ndarray:
    """Per candidate, the weighted mean (``share`` for the proxy) of its rank by ``scores`` and by ``proxy``, each a
    fraction from 0 (worst) to 1 (best), ties averaged: the derivation's combination with a proxy."""
    from scipy.stats import rankdata

    n = max(len(scores) - 1, 1)
    return (1 - share) * (rankdata(scores) - 1) / n + share * (rankdata(proxy) - 1) / n


def derive_from_policy(space: SearchSpace, strategy: Any, score: Callable[[Architecture], tuple[float, dict]],
                       n_samples: int = 100, seed: int = 0, keep: int = DERIVE_KEEP,
                       rerank: Callable[[list[Architecture], list[float]], list[tuple[float, dict]]] | None = None,
                       replicas: Replicas | None = None) -> dict[str, Any] | None:
    """The result of a one-shot search, as EDNAS derives it: ``n_samples`` architectures sampled from the
    trained policy, each scored (on the same validation data), the best kept; and the policy's most likely
    architecture. ``score`` returns the score and any further numbers to record. The ``keep`` best-scored
    distinct candidates are listed under ``"ranked"`` (best first), for a user who retrains several. ``rerank``
    turns the scores of all candidates (the most likely architecture among them) into the final scores and
    numbers to record (a combination with a training-free proxy). With ``replicas`` (data-parallel) each replica
    scores its share of the candidates whole and the scores are exchanged: the result is one process'. None for
    strategies without a policy (their best trial is the result)."""
    policy = getattr(strategy, "policy", None)
    if policy is None:
        return None
    with torch.no_grad():
        drawn = policy.trace(n_samples, torch.Generator().manual_seed(seed)).choices.tolist()
        greedy = policy.trace(1).choices[0].tolist()
    candidates = sorted({space.make(c) for c in drawn if space.is_valid(c)}, key=str)
    top = space.make(greedy) if space.is_valid(greedy) else None
    pool = candidates + ([top] if top is not None and top not in candidates else [])
    scores = dict(zip(pool, _score_all(pool, score, replicas)))
    if rerank is not None:
        scores = dict(zip(pool, rerank(pool, [scores[a][0] for a in pool])))
    out: dict[str, Any] = {"n_samples": n_samples, "n_distinct": len(candidates)}
    ranked = sorted(((scores[a], a) for a in candidates), key=lambda item: -item[0][0])  # stable: string order
    if ranked:
        (best, extra), arch = ranked[0]
        out["sampled_best"] = {"arch": str(arch), "score": best, **extra}
        out["ranked"] = [{"arch": str(a), "score": value} for (value, _), a in ranked[:keep]]
    if top is not None:
        value, extra = scores[top]
        out["most_likely"] = {"arch": str(top), "score": value, **extra}
    return out


def _score_all(archs: list[T], score: Callable[[T], R], replicas: Replicas | None) -> list[R]:
    """``score`` of every architecture (or weighting); data-parallel, replica r scores every world-th one from the
    r-th and all replicas receive every score (no communication inside a forward pass)."""
    if replicas is None:
        return [score(a) for a in archs]
    mine = [score(a) for a in archs[replicas.rank::replicas.world]]
    shares = replicas.gather(mine)
    return [shares[i % replicas.world][i // replicas.world] for i in range(len(archs))]
