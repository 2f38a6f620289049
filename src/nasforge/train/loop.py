"""The one training loop of image classifiers, used by every evaluator that trains them and by final training.

:class:`Stepper` is the one training step (the ``supernet`` evaluator steps it through its children);
language models have theirs in :class:`nasforge.train.text.LMStepper`.

SGD with momentum (optionally Nesterov) and weight decay, a cosine learning-rate schedule stepped
every batch (with optional warm restarts, the NASES setting being ``lr 0.05, lr_min 0.001,
restart_period 10``), gradient clipping, an auxiliary-head loss, scheduled drop-path, label smoothing,
mixed precision on CUDA (bfloat16 autocast on the CPU on request), and the channels-last memory format. A
loss that stops being finite ends training with a failure record instead of an exception, so that one
diverging architecture does not end a search.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ParamSpec, TypeVar

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from ..spaces.base import SearchSpace
from .augment import augment_batch
from .distributed import Replicas, broadcast_state
from .splits import Normalise, Splits, TensorSet

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Hyper-parameters of the training loop.

    Defaults follow the DARTS/ENAS CIFAR recipe (SGD 0.9, weight decay 3e-4, clip 5, cosine to
    0.001) at a batch size that suits small CPU runs. ``restart_period`` (epochs) switches to cosine
    annealing with warm restarts (NASES: ``lr=0.05 lr_min=0.001 restart_period=10``).
    ``crop_padding`` and ``flip`` left at None take the data set's own setting (padding = image side
    / 8, i.e. 4 for CIFAR-10 and 1 for 8x8 digits; flips only where they keep the label).
    ``auxiliary_weight`` applies only to models that return ``(logits, aux_logits)``, and
    ``drop_path_prob`` (the final value, reached linearly) only to models with ``drop_path_prob``.
    """

    epochs: int = 10  # passes over the training images
    batch_size: int = 64  # training images per step
    lr: float = 0.025  # initial SGD learning rate
    lr_min: float = 0.001  # learning rate at the end of the cosine schedule
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # Nesterov momentum
    weight_decay: float = 3e-4  # L2 weight decay
    restart_period: int = 0  # epochs of the first cosine cycle with warm restarts (0: one cosine to the end)
    restart_mult: int = 1  # each restart cycle is this many times longer than the last
    grad_clip: float = 5.0  # clip the gradient norm to this (0: no clipping)
    auxiliary_weight: float = 0.4  # weight of an auxiliary head's loss (models that return two outputs)
    drop_path_prob: float = 0.0  # final drop-path probability, reached linearly (models that support it)
    label_smoothing: float = 0.0  # label smoothing of the cross-entropy
    crop_padding: int | None = None  # random-crop padding in pixels (None: the data set's own, side / 8)
    flip: bool | None = None  # random horizontal flips (None: where they keep the label)
    cutout: int = 0  # side of the cutout square in pixels (0: none)
    amp: bool = True  # mixed precision on CUDA (ignored on the CPU)
    channels_last: bool = True  # train convolutions in the channels-last memory format (faster; same numbers)
    cpu_bf16: bool | None = None  # bfloat16 autocast on the CPU (~1.5x faster); None: where it has bf16 units
    eval_batch_size: int | None = None  # images per batch when scoring (None: 64 on the CPU, 512 on CUDA)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (batch normalisation), got {self.batch_size}")
        if self.lr <= 0 or self.lr_min < 0:
            raise ValueError(f"lr must be positive and lr_min non-negative, got {self.lr}, {self.lr_min}")
        if self.restart_period < 0 or self.restart_mult < 1:
            raise ValueError("restart_period must be >= 0 and restart_mult >= 1")
        if not 0 <= self.drop_path_prob < 1 or not 0 <= self.label_smoothing < 1:
            raise ValueError("drop_path_prob and label_smoothing must be in [0, 1)")


@dataclass(frozen=True)
class Progress:
    """Where training is, for progress displays (``epoch`` counts from 1)."""

    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float
    accuracy: float
    lr: float
    end_of_epoch: bool


ProgressCallback = Callable[[Progress], None]


@dataclass
class TrainResult:
    """What training did; ``failed`` with ``error`` when the loss stopped being finite."""

    epochs: int
    train_loss: float
    train_accuracy: float
    time_s: float
    failed: bool = False
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    images_per_s: float = math.nan  # training images per second after the first epoch (all replicas together)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), where autocast to it trains faster."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers of torch.cpu, absent in some builds
        return False


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` is CUDA when available, else the CPU; anything else is passed to :class:`torch.device`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device: {exc}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} asked for, but CUDA is not available here (use auto or cpu)")
    return resolved


def build_model(
    space: SearchSpace,
    arch: Architecture,
    *,
    num_classes: int,
    in_channels: int,
    seed: int | None = None,
    **model_args: Any,
) -> nn.Module:
    """``space.build(...)`` with the weight initialisation seeded, leaving the global RNG as it was."""
    if seed is None:
        return space.build(arch, num_classes=num_classes, in_channels=in_channels, **model_args)
    # Module constructors draw from torch's global generator: fork it so that nothing outside changes.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build(arch, num_classes=num_classes, in_channels=in_channels, **model_args)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> Any:
    """Cosine annealing stepped per batch, with warm restarts every ``restart_period`` epochs if set."""
    if config.restart_period > 0:
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=config.restart_period * steps_per_epoch, T_mult=config.restart_mult, eta_min=config.lr_min
        )
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch, eta_min=config.lr_min
    )


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()  # batch normalisation cannot train on a single image
    return batches


def _loss(output: Any, y: torch.Tensor, criterion: nn.Module, aux_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(output, (tuple, list)):
        logits, aux = output
        return criterion(logits, y) + aux_weight * criterion(aux, y), logits
    return criterion(output, y), output


class Stepper:
    """Optimiser, schedule, loss and mixed-precision scaler of one training run.

    With ``replicas`` (data-parallel training, :mod:`nasforge.train.distributed`) each step's gradients are
    averaged over the processes before the update, and the model starts from rank 0's weights.
    """

    def __init__(self, model: nn.Module, config: TrainConfig, steps_per_epoch: int, device: torch.device,
                 replicas: Replicas | None = None) -> None:
        self.model, self.config, self.device, self.replicas = model, config, device, replicas
        self.use_amp = config.amp and device.type == "cuda"
        # bfloat16 has float32's range: no loss scaling; emulated (no bf16 instructions) it is slower than float32
        self.use_bf16 = device.type == "cpu" and (cpu_has_bf16() if config.cpu_bf16 is None else config.cpu_bf16)
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0, weight_decay=config.weight_decay,
        )
        self.scheduler = make_scheduler(self.optimizer, config, steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if config.channels_last:
            # in place (the parameters stay the same objects): 4-d weights only, other tensors are unchanged
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if replicas is not None:
            broadcast_state(model)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format the model's weights have (channels-last images when configured)."""
        if self.config.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def precision(self) -> torch.autocast:
        """The step's autocast: float16 AMP on CUDA, bfloat16 on a CPU with bf16 units (``cpu_bf16``), else off.
        Also for forward passes that score with the training's numbers (a super-network's rewards)."""
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16 if self.use_bf16 else None,
                              enabled=self.use_amp or self.use_bf16)

    def step(self, x: torch.Tensor, y: torch.Tensor, share: float = 1.0) -> tuple[float, torch.Tensor, float]:
        """One update; returns the loss (not finite: no update was made), the logits and the rate used.

        Data-parallel, ``x`` and ``y`` are this replica's part of the batch, ``share`` its fraction of the batch,
        and the loss returned is the whole batch's."""
        x = self.layout(x)
        with self.precision():
            loss, logits = _loss(self.model(x), y, self.criterion, self.config.auxiliary_weight)
        value = float(loss.detach())
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        if math.isfinite(value):
            self.scaler.scale(loss).backward()
        if self.replicas is not None:  # every replica joins the reduction, a diverged one too
            value = self.replicas.reduce_step(self.params, value, share)
        if not math.isfinite(value):
            return value, logits, lr
        if self.config.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return value, logits, lr


P = ParamSpec("P")
R = TypeVar("R")


def _seed_of(generator: torch.Generator) -> int:
    """A seed determined by the generator's current state, which is left as it is."""
    return int.from_bytes(hashlib.sha256(generator.get_state().numpy().tobytes()).digest()[:8], "little")


def _seeds_global_rng(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with torch's global generator forked and seeded from ``fn``'s ``generator`` argument.

    Dropout and drop-path draw from the global generator (modules take no generator argument), so
    without this the same ``generator`` would give other losses after other code ran; forking leaves
    the caller's generator as it was.
    """

    @functools.wraps(fn)
    def seeded(*args: P.args, **kwargs: P.kwargs) -> R:
        generator, device = kwargs["generator"], resolve_device(kwargs.get("device", "cpu"))  # type: ignore[arg-type]
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, not {type(generator).__name__}")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(_seed_of(generator))
            return fn(*args, **kwargs)

    return seeded


@_seeds_global_rng
def fit(
    model: nn.Module,
    data: TensorSet,
    normalise: Normalise,
    config: TrainConfig,
    *,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
    flip: bool = False,
    callback: ProgressCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data``; ``generator`` decides batch order and augmentation.

    ``flip`` is the data set's default for horizontal flips (``config.flip`` overrides it).
    """
    device = resolve_device(device)
    model.to(device)
    padding = config.crop_padding if config.crop_padding is not None else data.x.shape[-1] // 8
    do_flip = flip if config.flip is None else config.flip
    steps = len(_batches(len(data), config.batch_size, torch.Generator().manual_seed(0)))
    replicas = Replicas.current()
    stepper = Stepper(model, config, steps, device, replicas)
    result = TrainResult(0, math.nan, math.nan, 0.0)
    start = time.perf_counter()
    timed_images, timed_s = 0, 0.0
    for epoch in range(1, config.epochs + 1):
        if hasattr(model, "drop_path_prob"):
            setattr(model, "drop_path_prob", config.drop_path_prob * (epoch - 1) / config.epochs)  # noqa: B010
        model.train()
        total_loss, correct, seen, images = 0.0, 0, 0, 0
        epoch_start = time.perf_counter()
        for step, idx in enumerate(_batches(len(data), config.batch_size, generator), start=1):
            # data-parallel, a replica augments its share but draws the whole batch's numbers, as all replicas do
            part = slice(0, len(idx)) if replicas is None else replicas.share(len(idx))
            x = normalise(data.x[idx[part]].to(device, non_blocking=True))
            x = augment_batch(x, generator, padding=padding, flip=do_flip, cutout_size=config.cutout,
                              rows=(len(idx), part))
            y = data.y[idx[part]].to(device, non_blocking=True)
            share = (part.stop - part.start) / len(idx)
            loss, logits, lr = stepper.step(x, y, share)
            if not math.isfinite(loss):
                result.failed, result.error = True, f"training loss became {loss} in epoch {epoch}, step {step}"
                log.warning("%s", result.error)
                result.time_s = time.perf_counter() - start
                return result
            total_loss += loss * len(idx)
            images += len(idx)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if callback is not None:
                callback(Progress(epoch, config.epochs, step, steps, total_loss / images, correct / seen, lr,
                                  step == steps))
        if epoch > 1 or config.epochs == 1:  # the first epoch pays for warm-up (allocations, caches)
            timed_images, timed_s = timed_images + images, timed_s + time.perf_counter() - epoch_start
        if replicas is not None:
            correct, seen = (int(v) for v in replicas.sum([correct, seen]))
        result.epochs, result.train_loss, result.train_accuracy = epoch, total_loss / images, correct / seen
        result.images_per_s = timed_images / timed_s if timed_s > 0 else math.nan
        result.history.append({"epoch": epoch, "loss": result.train_loss, "accuracy": result.train_accuracy,
                               "lr": lr})
        # INFO with the numbers attached: the command line shows them in its progress display
        log.info("epoch %d/%d: loss %.4f accuracy %.4f", epoch, config.epochs, result.train_loss, result.train_accuracy,
                 extra={"train_progress": Progress(epoch, config.epochs, steps, steps, result.train_loss,
                                                   result.train_accuracy, lr, True)})
    result.time_s = time.perf_counter() - start
    if replicas is not None:
        broadcast_state(model)  # batch-norm statistics differ per replica: all keep rank 0's
    return result


@torch.no_grad()
def accuracy(
    model: nn.Module, data: TensorSet, normalise: Normalise, *, batch_size: int | None = None,
    device: str | torch.device = "cpu", replicas: Replicas | None = None,
) -> float:
    """Top-1 accuracy (a fraction) of ``model`` in eval mode on ``data``; nan for an empty set.

    With ``replicas`` (every replica calls this alike) each scores its share of every batch of ``batch_size``
    and the counts are summed: the accuracy of one process, in about 1/world of the time. Batch norms that
    normalise with batch statistics see the whole batch's (:meth:`Replicas.synced_batch_norm`)."""
    if len(data) == 0:
        return math.nan
    device = resolve_device(device)
    if batch_size is None:
        # on the CPU small batches stay in cache: 64 images scored 1.6x as fast per image as 512 (NB201 network)
        batch_size = 512 if device.type == "cuda" else 64
    channels_last = any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last)
                        and not p.is_contiguous() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        correct = 0
        with contextlib.nullcontext() if replicas is None else replicas.synced_batch_norm(model):
            for start in range(0, len(data), batch_size):
                part = slice(start, start + batch_size)
                if replicas is not None:
                    part = replicas.shift(start, min(start + batch_size, len(data)))
                x = normalise(data.x[part].to(device))
                if channels_last and x.dim() == 4:  # a model trained channels-last scores fastest so
                    x = x.contiguous(memory_format=torch.channels_last)
                logits = model(x)
                correct += int((logits.argmax(1).cpu() == data.y[part]).sum())
        if replicas is not None:
            correct = int(replicas.sum([correct])[0])
        return correct / len(data)
    finally:
        model.train(was_training)


@dataclass
class TrainOutcome:
    """Training plus the accuracies (fractions) it reached on the validation and test sets."""

    train: TrainResult
    val_accuracy: float
    test_accuracy: float


def train_and_evaluate(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: ProgressCallback | None = None,
) -> TrainOutcome:
    """Train on ``splits.train`` (order and augmentation seeded by ``seed``), then score val and test."""
    generator = torch.Generator().manual_seed(seed)
    trained = fit(model, splits.train, splits.normalise, config, generator=generator, device=device,
                  flip=splits.flip, callback=callback)
    if trained.failed:
        return TrainOutcome(trained, math.nan, math.nan)
    replicas = Replicas.current()  # data-parallel: each replica scores its share of the images
    return TrainOutcome(
        trained,
        accuracy(model, splits.val, splits.normalise, batch_size=config.eval_batch_size, device=device,
                 replicas=replicas),
        accuracy(model, splits.test, splits.normalise, batch_size=config.eval_batch_size, device=device,
                 replicas=replicas),
    )


@dataclass
class ArchTraining:
    """One architecture trained from scratch: the model, its size, and what training reached."""

    model: nn.Module
    params: int
    flops: int
    outcome: TrainOutcome


def train_architecture(
    space: SearchSpace,
    arch: Architecture,
    splits: Splits,
    config: TrainConfig,
    *,
    model_args: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: ProgressCallback | None = None,
) -> ArchTraining:
    """Build ``arch`` for the data of ``splits`` (init seeded by ``seed``), measure it, train and score it."""
    from ..ops.measure import count_flops, count_params

    model = build_model(space, arch, num_classes=splits.num_classes, in_channels=splits.shape[0], seed=seed,
                        **(model_args or {}))
    params, flops = count_params(model), count_flops(model, (1, *splits.shape))
    outcome = train_and_evaluate(model, splits, config, seed=seed, device=device, callback=callback)
    return ArchTraining(model, params, flops, outcome)
