"""One-shot search of recurrent cells on Penn Treebank: a language-model super-network evaluator (ENAS, EDNAS).

The recurrent counterpart of :mod:`nasforge.evaluators.supernet`. The super-network is the space's
language model holding every candidate edge (:meth:`~nasforge.spaces.enas_rnn.EnasRNNSpace.supernet`);
each evaluation of a child ``a`` proposed by the strategy's policy is one step of ENAS' alternation:

1. the shared weights are trained by SGD on ``train_steps`` windows of truncated back-propagation
   through time over the training text, through the cell of ``a`` only (AWD-LSTM's recipe, which ENAS
   and EDNAS build on: lr 20, gradient clipping 0.25, windows of about ``bptt`` words whose length varies,
   the learning rate scaled by the window's length), each window one step of
   :class:`~nasforge.train.text.LMStepper`, the step final training takes too;
2. with the weights fixed, ``a`` reads one validation window; the reward is ENAS' ``c / perplexity``
   with ``c = 80`` (ENAS' PTB setting), so that rewards are of order one and need no tuning per corpus.

Hidden states. Training carries one hidden state from window to window (detached: truncated BPTT) and,
as ENAS' code does, across children: the state is a summary of the text read so far, which every child
reads through the same shared weights, and resetting it at every child change (i.e. at every step when
the policy samples a new child per step) would train the shared weights on windows that always start
from zero, unlike the long-context reading they are scored on. It is reset at the start of every
training epoch, where the text starts again, and after a loss that is not finite. A reward is computed
from a zero hidden state: the state that another child left has no meaning for this one, and all
children scored on a window then see exactly the same input, which makes rewards comparable.

Dropout masks come from a random state of the evaluator's own (saved in checkpoints), not from torch's
global generator, so that a search is reproducible and resumes exactly. The search loop checkpoints
the evaluator at every epoch of shared-weight training (weights, optimiser, generators, data cursors,
hidden state); a killed search resumes from the last checkpoint and redoes the evaluations after it.

Data-parallel (``--nproc N``, torchrun): every replica runs the search alike and holds the same shared weights;
each trains on its contiguous share of the training text's columns (every replica reads the same windows, with
its part of the hidden state), the gradients are averaged (:class:`~nasforge.train.text.LMStepper`), and the
rewards, the derivation's scores and the test perplexity sum the replicas' losses and word counts over their
columns, so that every replica gets the reward one process gets (up to float summation order) and the policies
stay alike. Checkpoints hold the whole batch's hidden state (gathered from the replicas), so a search resumes
with any number of processes. Each replica draws dropout masks for its own columns from a stream of its own;
with dropout the search is thus not the one-process search, without dropout it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError
from ..registry import EVALUATORS
from ..result import Result
from ..spaces.base import SearchSpace
from ..spaces.enas_rnn import EnasRNNSpace
from ..train.distributed import Replicas
from ..train.loop import resolve_device
from ..train.text import (
    Corpus,
    LMStepper,
    batchify,
    column_share,
    evaluate_perplexity,
    lm_loss,
    load_corpus,
    perplexity,
    replica_seed,
    window_lengths,
)
from .base import EvalContext, StatefulEvaluator, refuse_fidelity
from .supernet import derive_from_policy

log = logging.getLogger(__name__)

DATASET = "ptb"


@dataclass
class SupernetLMConfig:
    """Shared-weight training of the language-model super-network, and the reward.

    Defaults are ENAS' / AWD-LSTM's PTB settings: SGD with learning rate 20, gradient norm clipped at
    0.25, batches of 64 columns, windows of 35 words (varying in length when ``vary_length``; ENAS'
    code uses AWD-LSTM's variable lengths), weight decay 8e-7 (DARTS' and EDNAS' recurrent search).
    ``train_steps`` windows of training per evaluated child. ``reward_c / perplexity`` is the reward
    (ENAS: c = 80). ``valid_batch_size`` columns of the validation text, read ``bptt`` words at a time,
    give the reward windows. ``model_args`` go to the super-network (fields of
    :class:`~nasforge.spaces.enas_rnn.EnasRNNModelArgs`: ``emb_size``, ``hidden_size``, dropouts).
    ``report_test`` adds the shared weights' perplexity on the whole test text to every result (slow).
    """

    batch_size: int = 64  # training text columns (sequences in a batch)
    bptt: int = 35  # words per truncated back-propagation step
    vary_length: bool = True  # vary bptt around its mean per step (AWD-LSTM)
    lr: float = 20.0  # SGD learning rate of the shared weights
    clip: float = 0.25  # gradient norm clipping
    weight_decay: float = 8e-7  # L2 weight decay of the shared weights
    train_steps: int = 1  # shared-weight steps per evaluated child
    reward_c: float = 80.0  # reward c / validation perplexity (ENAS: c = 80)
    valid_batch_size: int = 64  # columns of the validation text a reward reads
    report_test: bool = False  # also score test perplexity (the strategy never sees it)
    model_args: dict[str, Any] = field(default_factory=dict)  # arguments of the language model (nasforge show space enas-rnn lists them)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.valid_batch_size < 1 or self.bptt < 1:
            raise ValueError("batch_size, valid_batch_size and bptt must be positive")
        if self.train_steps < 0:
            raise ValueError(f"train_steps must be >= 0, got {self.train_steps}")
        if self.lr <= 0 or self.clip < 0 or self.weight_decay < 0 or self.reward_c <= 0:
            raise ValueError("lr and reward_c must be positive, clip and weight_decay non-negative")


@EVALUATORS.register("supernet-lm", spaces=("enas-rnn",), trains=True, oneshot=True, benchmark=False)
class SupernetLMEvaluator(StatefulEvaluator):
    """Weight sharing for recurrent cells: train the language-model super-network through each proposed
    cell, reward ``c / validation perplexity``."""

    Config = SupernetLMConfig
    reported_metric = "test_perplexity"

    def __init__(self, space: SearchSpace, config: SupernetLMConfig | None = None, context: Any = None) -> None:
        super().__init__(space, config, context)
        if not isinstance(space, EnasRNNSpace):
            raise ConfigError(f"evaluator: supernet-lm searches recurrent cells (enas-rnn), not {space.name!r}")
        self.rnn_space = space
        refuse_fidelity("supernet-lm", self.context)
        self.corpus = _load(self.context)
        cfg = self.config
        self.device = resolve_device(self.context.device)
        seed = self.context.seed
        # Module constructors and dropout draw from torch's global generator: fork it so that nothing outside
        # changes, and keep a state of our own for the dropout masks.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.supernet = self.rnn_space.supernet(self.corpus.vocab_size, **cfg.model_args).to(self.device)
            self.dropout_state = torch.get_rng_state()
        try:
            train_data = batchify(self.corpus.train, cfg.batch_size).to(self.device)
            self.valid_data = batchify(self.corpus.valid, cfg.valid_batch_size).to(self.device)
        except ValueError as exc:
            raise ConfigError(f"evaluator: the corpus is too small for these batch sizes: {exc}") from None
        # data-parallel: this replica's columns of the training text (every replica reads the same windows)
        self.replicas = Replicas.current()
        self.train_data, self.share = column_share(train_data, self.replicas, "evaluator.batch_size")
        self.stepper = LMStepper.sgd(self.supernet, lr=cfg.lr, weight_decay=cfg.weight_decay, bptt=cfg.bptt,
                                     clip=cfg.clip, replicas=self.replicas)
        self.optimizer = self.stepper.optimizer
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = 0
        self.epoch = 0
        self._new_epoch()
        self.valid_start = 0
        self.budget = self.context.budget if self.context.epochs is None else self.context.epochs * self.checkpoint_every
        log.info("supernet-lm evaluator: %s, %d training / %d validation tokens, %d words, %d shared parameters",
                 space.name, len(self.corpus.train), len(self.corpus.valid), self.corpus.vocab_size,
                 sum(p.numel() for p in self.supernet.parameters()))

    # ----------------------------------------------------------------- data cursor
    def _new_epoch(self) -> None:
        generator = self.generator if self.config.vary_length else None
        self.lengths = window_lengths(self.train_data.shape[0], self.config.bptt, generator)
        self.window = 0
        self.start = 0
        self.hidden = self.supernet.init_hidden(self.train_data.shape[1])

    def _next_window(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.window >= len(self.lengths):
            self.epoch += 1
            self._new_epoch()
        length = self.lengths[self.window]
        x = self.train_data[self.start : self.start + length]
        y = self.train_data[self.start + 1 : self.start + 1 + length]
        self.window += 1
        self.start += length
        return x, y

    @property
    def checkpoint_every(self) -> int:
        """Evaluations per epoch of shared-weight training: the search loop checkpoints at each epoch's end."""
        windows = max(math.ceil((self.train_data.shape[0] - 1) / self.config.bptt), 1)
        return max(windows // max(self.config.train_steps, 1), 1)

    @contextlib.contextmanager
    def _own_randomness(self) -> Iterator[None]:
        # Dropout masks draw from torch's global generator: swap ours in, and put the caller's back.
        with torch.random.fork_rng(devices=[]):
            if self.replicas is None:
                torch.set_rng_state(self.dropout_state)
                try:
                    yield
                finally:
                    self.dropout_state = torch.get_rng_state()
                return
            # Data-parallel: each replica draws its columns' masks from a stream of its own (with one stream,
            # column i of every replica's share would get the same masks); the state they share (and checkpoint)
            # moves on alike on every replica, whatever each drew.
            seed = int.from_bytes(hashlib.sha256(self.dropout_state.numpy().tobytes()).digest()[:8], "little") >> 1
            torch.manual_seed(replica_seed(seed, self.replicas.rank))
            try:
                yield
            finally:
                self.dropout_state = torch.Generator().manual_seed(seed).get_state()

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Shared weights, optimiser, generators, data cursors and hidden state (for checkpoints).

        Data-parallel, every replica calls this alike (the search loop checkpoints on all of them): the hidden
        state saved is the whole batch's, gathered from the replicas' columns."""
        return {"supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "dropout": self.dropout_state.clone(),
                "steps": self.steps, "epoch": self.epoch, "lengths": list(self.lengths), "window": self.window,
                "start": self.start, "hidden": self._whole_hidden(), "valid_start": self.valid_start}

    def _whole_hidden(self) -> torch.Tensor:
        """The hidden state of all the batch's columns (this replica's alone holds its share of them)."""
        hidden = self.hidden.detach().cpu().clone()
        if self.replicas is None:
            return hidden
        whole = hidden.new_zeros(self.config.batch_size, *hidden.shape[1:])
        whole[self.replicas.share(self.config.batch_size)] = hidden
        torch.distributed.all_reduce(whole)  # each column is non-zero on one replica only: the sum places them
        return whole

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        # Checkpoints written before LMStepper saved the last window's scaled rate: the base rate is the config's.
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr
        self.generator.set_state(state["generator"])
        self.dropout_state = state["dropout"].clone()
        self.steps, self.epoch = state["steps"], state["epoch"]
        self.lengths, self.window, self.start = list(state["lengths"]), state["window"], state["start"]
        hidden = state["hidden"]
        if self.replicas is not None:
            hidden = hidden[self.replicas.share(self.config.batch_size)]
        self.hidden = hidden.to(self.device)
        self.valid_start = state["valid_start"]

    # ----------------------------------------------------------------- training and scoring
    def child(self, arch: Architecture) -> nn.Module:
        """The super-network seen through the cell of ``arch``, with the language-model contract."""
        return _Child(self.supernet, self.rnn_space.plan(arch))

    def train_step(self, arch: Architecture) -> float:
        """One :class:`LMStepper` step of the shared weights through ``arch`` on the next training window;
        returns the loss per word (not finite: no update, and the hidden state starts again from zero)."""
        x, y = self._next_window()
        with self._own_randomness():  # the backward pass and the update draw nothing: only dropout does
            value, hidden = self.stepper.step(x, y, self.hidden, self.child(arch), share=self.share)
        self.steps += 1
        self.hidden = hidden if math.isfinite(value) else self.supernet.init_hidden(self.train_data.shape[1])
        return value

    def validation_window(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next validation window (``bptt`` words of ``valid_batch_size`` columns), cycling over the text."""
        total = self.valid_data.shape[0]
        if self.valid_start >= total - 1:
            self.valid_start = 0
        length = min(self.config.bptt, total - 1 - self.valid_start)
        s = self.valid_start
        self.valid_start += length
        return self.valid_data[s : s + length], self.valid_data[s + 1 : s + 1 + length]

    @torch.no_grad()
    def perplexity(self, arch: Architecture, window: tuple[torch.Tensor, torch.Tensor] | None = None) -> float:
        """Perplexity of ``arch`` with the shared weights on one validation window, from a zero hidden state.

        Data-parallel, each replica reads its share of the window's columns and the summed losses and word
        counts are summed over the replicas: every replica gets the same number, one process' up to float order."""
        self.supernet.eval()
        x, y = window if window is not None else self.validation_window()
        if self.replicas is None:
            loss, _ = lm_loss(self.child(arch), x, y, self.supernet.init_hidden(x.shape[1]))
            return perplexity(float(loss))
        part = self.replicas.share(x.shape[1])
        total, words = 0.0, 0.0
        if part.stop > part.start:  # more replicas than columns: some read none
            x, y = x[:, part], y[:, part]
            loss, _ = lm_loss(self.child(arch), x, y, self.supernet.init_hidden(x.shape[1]))
            total, words = float(loss) * y.numel(), float(y.numel())
        total, words = self.replicas.sum([total, words])
        return perplexity(total / words)

    def reward(self, perplexity: float) -> float:
        """ENAS' reward ``c / perplexity``."""
        return self.config.reward_c / perplexity

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        self.space.validate(arch)
        losses = [self.train_step(arch) for _ in range(self.config.train_steps)]
        if any(not math.isfinite(v) for v in losses):
            return Result.failure(f"shared-weight loss became {losses[-1]} at step {self.steps}: "
                                  "lower evaluator.lr or clip harder", cost=len(losses))
        ppl = self.perplexity(arch)
        metrics: dict[str, Any] = {"valid_perplexity": ppl, "step": self.steps, "epoch": self.epoch}
        if losses:
            metrics["train_loss"] = float(sum(losses) / len(losses))
        if self.config.report_test:
            metrics["test_perplexity"] = self.test_perplexity(arch)
        return Result(self.reward(ppl), metrics, cost=float(len(losses)))

    def test_perplexity(self, arch: Architecture) -> float:
        """Perplexity of ``arch`` with the shared weights on the whole test text (hidden state carried)."""
        return evaluate_perplexity(self.child(arch), self.corpus.test, self.config.bptt, self.config.valid_batch_size,
                                   self.device, self.replicas)

    def derive(self, strategy: Any, n_samples: int = 100, seed: int = 0) -> dict[str, Any] | None:
        """Best of ``n_samples`` policy samples on one validation window, and the most likely cell; scores are
        rewards (``c / perplexity``)."""
        window = self.validation_window()

        def score(arch: Architecture) -> tuple[float, dict[str, float]]:
            ppl = self.perplexity(arch, window)
            return self.reward(ppl), {"valid_perplexity": ppl}

        return derive_from_policy(self.space, strategy, score, n_samples, seed)

    def __repr__(self) -> str:
        return f"<SupernetLMEvaluator {self.space.name} steps={self.steps} epoch={self.epoch} device={self.device}>"


class _Child(nn.Module):
    """The super-network seen through one cell, with the language-model contract ``(tokens, hidden)``."""

    def __init__(self, supernet: nn.Module, plan: Any) -> None:
        super().__init__()
        self.supernet = supernet
        self.plan = plan

    def init_hidden(self, batch_size: int) -> torch.Tensor:
        return self.supernet.init_hidden(batch_size)  # type: ignore[operator]  # nn.Module types attributes as Tensor | Module

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.supernet(tokens, hidden, self.plan)


def _load(ctx: EvalContext) -> Corpus:
    dataset = ctx.dataset
    if dataset != DATASET:
        raise ConfigError(f"dataset: the supernet-lm evaluator reads Penn Treebank: use --dataset {DATASET} "
                          f"--data PATH (got {dataset!r})")
    data = ctx.data
    if not data:
        raise ConfigError("data: the supernet-lm evaluator needs --data, a folder or .zip holding ptb.train.txt, "
                          "ptb.valid.txt and ptb.test.txt")
    return load_corpus(data)
