"""Final training of a recurrent cell as a word-level language model (ENAS / EDNAS PTB), from scratch.

The recipe is AWD-LSTM's, which ENAS' and EDNAS' recurrent code builds on: SGD at learning rate 20,
gradient norm clipped at 0.25, windows of about ``bptt`` words whose length varies, weight decay; each
step is :class:`~nasforge.train.text.LMStepper`'s, the one the super-network evaluator trains with. After
every epoch the validation perplexity is measured; the weights with the best one are kept, and when an
epoch does not improve on it the learning rate is divided by ``lr_decay`` (the annealing of PyTorch's
word-language-model example, simpler than AWD-LSTM's switch to averaged SGD and enough for short runs).
The test perplexity is that of the kept weights.

Data-parallel (``nasforge train --nproc N``, torchrun), every process reads the same windows of its share of the
training text's columns and the gradients are averaged (:class:`~nasforge.train.text.LMStepper`); validation and
test perplexities are split by columns too and summed, so every process keeps the same weights and takes the same
learning-rate decisions. Each process draws its own dropout masks for its columns (:func:`~nasforge.train.text.replica_seed`),
so with dropout the run is not the one-process run; without dropout it is, up to float summation order.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from ..arch import Architecture
from ..spaces.base import SearchSpace
from .distributed import Replicas
from .loop import resolve_device
from .text import Corpus, LMStepper, TrainingDiverged, batchify, evaluate_perplexity, replica_seed

log = logging.getLogger(__name__)


@dataclass
class LMTrainConfig:
    """Hyper-parameters of language-model training (defaults: ENAS' / AWD-LSTM's PTB settings)."""

    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 10
    bptt: int = 35
    vary_length: bool = True
    lr: float = 20.0
    lr_decay: float = 4.0  # lr divided by this after an epoch that does not improve validation perplexity
    clip: float = 0.25
    weight_decay: float = 8e-7

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.bptt < 1:
            raise ValueError("epochs, batch_size, eval_batch_size and bptt must be positive")
        if self.lr <= 0 or self.lr_decay < 1 or self.clip < 0 or self.weight_decay < 0:
            raise ValueError("need lr > 0, lr_decay >= 1, clip >= 0 and weight_decay >= 0")


@dataclass
class LMTraining:
    """The outcome of :func:`train_language_model` (perplexities are nan when training diverged at once)."""

    model: nn.Module
    params: int
    valid_perplexity: float
    test_perplexity: float
    epochs: int
    time_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    failed: bool = False
    error: str | None = None


def train_language_model(
    space: SearchSpace,
    arch: Architecture,
    corpus: Corpus,
    config: LMTrainConfig,
    *,
    model_args: dict[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callable[[dict[str, float]], None] | None = None,
) -> LMTraining:
    """Build the language model of ``arch`` (init and dropout seeded by ``seed``), train it, score it.

    ``callback`` receives each epoch's record (``epoch``, ``train_loss``, ``valid_perplexity``, ``lr``).
    """
    device = resolve_device(device)
    start = time.perf_counter()
    replicas = Replicas.current()  # data-parallel: each process trains and scores its share of the columns
    # Module constructors and dropout masks draw from torch's global generator: fork it, leave it as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = space.build(arch, vocab_size=corpus.vocab_size, **(model_args or {})).to(device)
        params = sum(p.numel() for p in model.parameters())
        stepper = LMStepper.sgd(model, lr=config.lr, weight_decay=config.weight_decay, bptt=config.bptt,
                                clip=config.clip, replicas=replicas)
        if replicas is not None:
            torch.manual_seed(replica_seed(seed, replicas.rank))
        lengths = torch.Generator().manual_seed(seed) if config.vary_length else None
        train = batchify(corpus.train, config.batch_size).to(device)
        best, best_state, history, error = math.inf, None, [], None
        for epoch in range(1, config.epochs + 1):
            try:
                loss = stepper.epoch(train, lengths)
            except TrainingDiverged as exc:
                error = str(exc)
                break
            valid = evaluate_perplexity(model, corpus.valid, config.bptt, config.eval_batch_size, device, replicas)
            record = {"epoch": epoch, "train_loss": loss, "valid_perplexity": valid,
                      "lr": stepper.lr, "time_s": time.perf_counter() - start}
            history.append(record)
            log.info("epoch %d: train loss %.3f, valid perplexity %.2f", epoch, loss, valid)
            if callback is not None:
                callback(record)
            if valid < best:
                best, best_state = valid, copy.deepcopy(model.state_dict())
            else:
                for group in stepper.optimizer.param_groups:
                    group["lr"] /= config.lr_decay
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate_perplexity(model, corpus.test, config.bptt, config.eval_batch_size, device, replicas) \
        if best_state is not None else math.nan
    valid = best if math.isfinite(best) else math.nan
    return LMTraining(model, params, valid, test, len(history), time.perf_counter() - start, history,
                      failed=error is not None and best_state is None, error=error)
