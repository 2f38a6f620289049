"""Word-level language-model data (Penn Treebank) and training by truncated back-propagation through time.

:func:`load_corpus` reads Mikolov's preprocessed PTB, ``ptb.train.txt``, ``ptb.valid.txt`` and
``ptb.test.txt``, from a folder or a ``.zip`` (a ``__MACOSX/`` folder inside is ignored). Each line
gets an end-of-sentence token, which gives the standard 929,589 / 73,760 / 82,430 tokens and a
10,000-word vocabulary. The whole corpus tokenises in about a second, so nothing is cached.

Training follows the recipe of AWD-LSTM (Merity et al. 2018) that ENAS and EDNAS build on: the token
stream is cut into ``batch_size`` parallel columns (:func:`batchify`), read in windows of about
``bptt`` steps whose length may vary (:func:`bptt_batches`), the hidden state is carried from window to
window but detached (truncated back-propagation), and gradients are clipped by norm. :class:`LMStepper`
is the one training step of every language model, final training and super-network alike.
"""

from __future__ import annotations

import hashlib
import logging
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, DataError, NasforgeError
from .distributed import Replicas, broadcast_state
from .loop import resolve_device

log = logging.getLogger(__name__)

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
PTB_FILES = {split: f"ptb.{split}.txt" for split in SPLITS}
EXPECTED_LAYOUT = "a folder or .zip holding ptb.train.txt, ptb.valid.txt and ptb.test.txt"


class TrainingDiverged(NasforgeError, FloatingPointError):
    """The training loss stopped being finite."""


@dataclass
class Corpus:
    """A tokenised corpus: the vocabulary (built from the training text) and each split's token ids.

    Attributes:
        words: the vocabulary, in order of first appearance in the training text.
        train, valid, test: 1-D ``LongTensor`` s of token ids.
    """

    words: list[str]
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    @classmethod
    def from_lines(cls, train: Iterable[str], valid: Iterable[str], test: Iterable[str]) -> Corpus:
        """Tokenise three texts given as lines (an end-of-sentence token is appended to each line).

        Words of the validation and test text missing from the training vocabulary become ``<unk>``
        when the vocabulary has it, else they are an error (PTB's test words are all in training).
        """
        train_tokens = tokenize(train)
        if not train_tokens:
            raise DataError("the training text is empty")
        index: dict[str, int] = {}
        for word in train_tokens:
            index.setdefault(word, len(index))
        return cls(
            list(index),
            _ids(train_tokens, index, "train"),
            _ids(tokenize(valid), index, "valid"),
            _ids(tokenize(test), index, "test"),
        )

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The words of token ids."""
        return [self.words[int(i)] for i in ids]


def tokenize(lines: Iterable[str]) -> list[str]:
    """Whitespace-separated words, with ``<eos>`` after each line (blank lines count as a sentence end too)."""
    tokens: list[str] = []
    for line in lines:
        tokens.extend(line.split())
        tokens.append(EOS)
    return tokens


def _ids(tokens: Sequence[str], index: dict[str, int], split: str) -> torch.Tensor:
    unk = index.get(UNK)
    unknown = [w for w in set(tokens) if w not in index]
    if unknown and unk is None:
        raise DataError(
            f"{split}: {len(unknown)} word(s) not in the training vocabulary (e.g. {sorted(unknown)[0]!r}) "
            f"and no {UNK} token to map them to"
        )
    return torch.tensor([index.get(w, unk) for w in tokens], dtype=torch.long)


def load_corpus(path: str | Path) -> Corpus:
    """Penn Treebank (or any corpus in its layout) from a folder or a ``.zip`` file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found ({EXPECTED_LAYOUT})")
    texts = _read_zip(path) if path.is_file() else _read_folder(path)
    corpus = Corpus.from_lines(*(texts[split].splitlines() for split in SPLITS))
    log.info("corpus %s: %d / %d / %d tokens, %d words", path, len(corpus.train), len(corpus.valid),
             len(corpus.test), corpus.vocab_size)
    return corpus


def _read_folder(path: Path) -> dict[str, str]:
    missing = [name for name in PTB_FILES.values() if not (path / name).is_file()]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} ({EXPECTED_LAYOUT})")
    return {split: _decode((path / name).read_bytes(), path / name) for split, name in PTB_FILES.items()}


def _read_zip(path: Path) -> dict[str, str]:
    try:
        with zipfile.ZipFile(path) as archive:
            members: dict[str, str] = {}
            for info in archive.infolist():
                name = info.filename
                if info.is_dir() or name.startswith("__MACOSX/") or "/__MACOSX/" in name:
                    continue
                base = name.rsplit("/", 1)[-1]
                if base in PTB_FILES.values():
                    if base in members:
                        raise DataError(f"{path}: {base} appears twice ({members[base]} and {name})")
                    members[base] = name
            missing = [name for name in PTB_FILES.values() if name not in members]
            if missing:
                raise DataError(f"{path}: the zip has no {', '.join(missing)} ({EXPECTED_LAYOUT})")
            return {split: _decode(archive.read(members[name]), f"{path}:{members[name]}")
                    for split, name in PTB_FILES.items()}
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a zip file ({EXPECTED_LAYOUT})") from None


def _decode(data: bytes, where: object) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


# --------------------------------------------------------------------------- batches
def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D token stream into ``batch_size`` columns, ``(T, batch_size)``; the remainder is dropped."""
    if ids.dim() != 1:
        raise ValueError(f"batchify expects a 1-D token stream, got shape {tuple(ids.shape)}")
    steps = ids.numel() // batch_size
    if batch_size < 1 or steps < 2:
        raise ValueError(f"{ids.numel()} tokens are too few for batch size {batch_size} (need 2 per column)")
    return ids[: steps * batch_size].view(batch_size, steps).t().contiguous()


def column_share(data: torch.Tensor, replicas: Replicas | None, what: str = "batch_size") -> tuple[torch.Tensor, float]:
    """This replica's contiguous share of the columns of a batchified ``(T, B)`` stream and its fraction of
    them (all of it, 1.0, in one process). ``what`` names the setting in the error when ``B`` columns are too
    few to give every replica one."""
    if replicas is None:
        return data, 1.0
    columns = data.shape[1]
    if columns < replicas.world:
        raise ConfigError(f"{what}: {columns} columns cannot be split among {replicas.world} data-parallel "
                          f"processes (each needs at least one); raise it or lower --nproc")
    part = replicas.share(columns)
    return data[:, part], (part.stop - part.start) / columns


def replica_seed(seed: int, rank: int) -> int:
    """The seed of data-parallel replica ``rank``'s dropout masks in a run seeded by ``seed``: replicas with
    the same stream would give column ``i`` of each one's share the same masks."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{rank}".encode()).digest()[:8], "little") >> 1


def window_lengths(total: int, bptt: int, generator: torch.Generator | None = None) -> list[int]:
    """Lengths of the successive windows over ``total`` time steps (the last input has no target).

    Without a generator every window is ``bptt`` long. With one, lengths vary as in AWD-LSTM (used
    by ENAS): a base of ``bptt`` (probability 0.95) or ``bptt / 2``, then a normal draw around it with
    standard deviation 5, at least 5 steps, and at most ``bptt + 20`` (DARTS' ``max_seq_len_delta``) so
    that a rare long draw cannot exhaust memory.
    """
    if bptt < 1:
        raise ValueError(f"bptt must be positive, got {bptt}")
    lengths, start = [], 0
    while start < total - 1:
        length = bptt
        if generator is not None:
            base = bptt if float(torch.rand((), generator=generator)) < 0.95 else bptt / 2
            draw = base + 5.0 * float(torch.randn((), generator=generator))
            length = min(max(5, int(draw)), bptt + 20)
        length = min(length, total - 1 - start)
        lengths.append(length)
        start += length
    return lengths


def bptt_batches(
    data: torch.Tensor, bptt: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(inputs, targets)`` windows of a batchified ``(T, B)`` stream; targets are the inputs shifted by one.

    ``generator`` makes the window lengths vary (see :func:`window_lengths`); without it they are fixed.
    """
    start = 0
    for length in window_lengths(data.shape[0], bptt, generator):
        yield data[start : start + length], data[start + 1 : start + 1 + length]
        start += length


# --------------------------------------------------------------------------- training and evaluation
#: perplexities are capped at exp(700): exp overflows a float past ~709 nats (an untrained or diverging model)
MAX_LOG_PERPLEXITY = 700.0


def perplexity(loss: float) -> float:
    """``exp(loss)`` of a mean loss per word (nats), capped at ``exp(700)`` instead of overflowing."""
    return math.exp(min(loss, MAX_LOG_PERPLEXITY))  # nan stays nan


def _detach(hidden: Any) -> Any:
    # Truncated back-propagation: keep the state's value, cut its history (tensors or tuples, e.g. an LSTM's).
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(_detach(h) for h in hidden)


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
    """Mean cross-entropy per word of ``model(x, hidden)`` against ``y``, and the hidden state it ends in."""
    logits, hidden = model(x, hidden)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)), hidden


class LMStepper:
    """The one training step of a language model by truncated back-propagation through time.

    Used by final training (:func:`train_lm_epoch`, :func:`nasforge.train.lm.train_language_model`) and by
    the language-model super-network evaluator (:mod:`nasforge.evaluators.supernet_lm`), which steps the
    shared weights through one child at a time (``step(..., module=child)``).

    A step reads one window ``(x, y)`` from the hidden state it is given (detached: truncated BPTT),
    and, when the loss is finite, updates the weights: the learning rate is scaled by
    ``len(window) / bptt`` for this step (AWD-LSTM, which ENAS and EDNAS build on: a short window counts
    less, so that the rate per word stays the same), gradients are clipped by norm when ``clip > 0``, and
    the optimiser steps. The optimiser's own learning rate is left as it was, so a schedule or a decay
    applied to it between steps (``param_groups[i]["lr"]``) is what the next step scales. A loss that is
    not finite makes no update; the caller decides whether that ends training or restarts the state.

    With ``replicas`` (data-parallel) the model starts from rank 0's weights, each step's gradients are
    averaged over the replicas (weighted by their shares of the columns) before the rate scaling, the clipping
    and the update, and the loss a step returns is the whole batch's.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, bptt: int, clip: float,
                 replicas: Replicas | None = None) -> None:
        if bptt < 1 or clip < 0:
            raise ValueError(f"need bptt >= 1 and clip >= 0, got bptt={bptt}, clip={clip}")
        self.model, self.optimizer, self.bptt, self.clip = model, optimizer, bptt, clip
        self.replicas = replicas
        self.params = [p for p in model.parameters() if p.requires_grad]
        if replicas is not None:
            broadcast_state(model)

    @classmethod
    def sgd(cls, model: nn.Module, *, lr: float, weight_decay: float, bptt: int, clip: float,
            replicas: Replicas | None = None) -> LMStepper:
        """The AWD-LSTM / ENAS recipe: plain SGD (no momentum) with weight decay."""
        return cls(model, torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay), bptt=bptt, clip=clip,
                   replicas=replicas)

    @property
    def lr(self) -> float:
        """The base learning rate (of the first parameter group), before the per-window scaling."""
        return float(self.optimizer.param_groups[0]["lr"])

    def step(self, x: torch.Tensor, y: torch.Tensor, hidden: Any, module: nn.Module | None = None,
             share: float = 1.0) -> tuple[float, Any]:
        """One update on the window ``x -> y`` from ``hidden``; returns the loss per word (nats) and the
        detached hidden state the window ends in (not finite: no update was made).

        ``module`` runs the forward pass instead of the stepper's model, e.g. a super-network seen through
        one child; its parameters must be among the model's (the optimiser's and the clipped ones).
        Data-parallel, ``x``, ``y`` and ``hidden`` are this replica's columns, ``share`` its fraction of the
        batch's columns (:func:`column_share`), and the loss returned is the whole batch's.
        """
        forward = self.model if module is None else module
        forward.train()
        loss, hidden = lm_loss(forward, x, y, _detach(hidden))
        value = float(loss.detach())
        if self.replicas is not None:  # every replica joins the reduction, a diverged one too
            self.optimizer.zero_grad(set_to_none=True)
            if math.isfinite(value):
                loss.backward()
            value = self.replicas.reduce_step(self.params, value, share)
        if not math.isfinite(value):
            return value, _detach(hidden)
        base = [group["lr"] for group in self.optimizer.param_groups]
        try:
            for group, lr in zip(self.optimizer.param_groups, base):
                group["lr"] = lr * x.shape[0] / self.bptt
            if self.replicas is None:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            # after the reduction: the rate and the clipping see the whole batch's gradient, as in one process
            if self.clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.optimizer.step()
        finally:
            for group, lr in zip(self.optimizer.param_groups, base):
                group["lr"] = lr
        return value, _detach(hidden)

    def epoch(self, data: torch.Tensor, generator: torch.Generator | None = None) -> float:
        """One pass over a batchified ``(T, B)`` stream (on the model's device), the hidden state carried
        from window to window; returns the mean loss per word (nats).

        With ``generator`` the window lengths vary (:func:`window_lengths`). A loss that is not finite
        raises :class:`TrainingDiverged` before any update with it. Data-parallel, ``data`` is the whole
        stream: each replica trains on its share of the columns and the loss returned is the whole batch's.
        """
        local, share = column_share(data, self.replicas)
        hidden = self.model.init_hidden(local.shape[1])  # type: ignore[operator]  # the language-model contract
        total, count = 0.0, 0
        for window, (x, y) in enumerate(bptt_batches(local, self.bptt, generator), start=1):
            value, hidden = self.step(x, y, hidden, share=share)
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"language-model training loss became {value} at window {window} "
                    f"(lr {self.lr}, clip {self.clip}): lower the learning rate or clip harder"
                )
            words = y.shape[0] * data.shape[1]  # the whole batch's
            total += value * words
            count += words
        return total / count


@torch.no_grad()
def evaluate_perplexity(
    model: nn.Module, data: torch.Tensor, bptt: int, batch_size: int, device: str | torch.device = "cpu",
    replicas: Replicas | None = None,
) -> float:
    """Perplexity of ``model`` on a 1-D token stream, read as ``batch_size`` columns in windows of ``bptt``.

    ``model`` follows the language-model contract ``model(tokens (T, B), hidden) -> (logits, hidden)``
    with ``model.init_hidden(B)``; it is put in evaluation mode. The state carries over every window.
    A model so wrong that the perplexity would overflow a float gets ``exp(700)`` (:func:`perplexity`).
    With ``replicas`` (every replica calls this alike) each reads its share of the columns and the losses and
    word counts are summed: one process' perplexity up to float summation order.
    """
    device = resolve_device(device)
    model.to(device).eval()
    columns = batchify(data, batch_size).to(device)
    part = slice(0, batch_size) if replicas is None else replicas.share(batch_size)
    total, count = 0.0, 0.0
    if part.stop > part.start:  # more replicas than columns: some read none
        columns = columns[:, part]
        hidden = model.init_hidden(columns.shape[1])  # type: ignore[operator]  # nn.Module types attributes as Tensor | Module
        for x, y in bptt_batches(columns, bptt):
            loss, hidden = lm_loss(model, x, y, hidden)
            total += float(loss) * y.numel()
            count += y.numel()
    if replicas is not None:
        total, count = replicas.sum([total, count])
    return perplexity(total / count)


def train_lm_epoch(
    model: nn.Module,
    data: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    bptt: int,
    clip: float,
    device: str | torch.device = "cpu",
    generator: torch.Generator | None = None,
) -> float:
    """One epoch over a batchified ``(T, B)`` stream by truncated BPTT; returns the mean loss per token (nats).

    :meth:`LMStepper.epoch` with ``optimizer``: the hidden state is carried between windows and
    detached, each window's learning rate is scaled by ``length / bptt`` (with ``generator`` the
    lengths vary, :func:`window_lengths`), ``clip`` > 0 clips the gradient norm (ENAS: 0.25), and a loss
    that is not finite raises :class:`TrainingDiverged` before any update with it.
    """
    device = resolve_device(device)
    model.to(device)
    return LMStepper(model, optimizer, bptt=bptt, clip=clip).epoch(data.to(device), generator)
