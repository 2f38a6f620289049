"""PNAS' accuracy predictor: an ensemble of small regressors trained on folds, whose mean ranks cells.

Liu et al. ("Progressive Neural Architecture Search", 2018) predict a cell's accuracy from its structure with an
LSTM that reads the cell's block tokens (inputs and operations), and compare it with an MLP over a fixed encoding;
each is used as an ensemble of 5 trained on different folds of the data (each member leaves one fold out), whose
mean prediction is less variable than one model's. Both kinds are here, for any search space:

- ``lstm``: the tokens are the cell's active decisions in order (a block's input choice, then its operations),
  each token the decision's group and option label, so that an operation or an input pair has the same token in
  every block and a model trained on small cells can read larger ones (the point of PNAS). A growable space's
  ``blocks`` decision is left out: the sequence's length says it.
- ``mlp``: the space's :meth:`~nasforge.spaces.base.SearchSpace.encode` vector (one-hot of active decisions).

Targets are standardised with the training data's mean and spread (rewards of any scale); members are trained
full-batch with Adam on the squared error, ``fit`` continuing from the current weights (PNAS fine-tunes its
predictor as cells arrive) and :meth:`EnsemblePredictor.reset` drawing new ones. All randomness comes from the
``torch.Generator`` given to the constructor; nothing touches torch's global generator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..spaces.base import BLOCKS, SearchSpace

KINDS = ("lstm", "mlp")


class Tokeniser:
    """A cell as token ids: its active decisions (but ``blocks``), each as ``group:label`` (0 is padding)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        vocab: dict[str, int] = {}
        self.ids: list[list[int]] = []  # per decision, the token of each option (empty for 'blocks')
        for d in space.decisions:
            row = []
            if d.name != BLOCKS:
                for c in range(d.n_choices):
                    row.append(vocab.setdefault(f"{d.group}:{d.label(c)}", len(vocab) + 1))
            self.ids.append(row)
        self.size = len(vocab) + 1

    def tokens(self, arch: Architecture) -> list[int]:
        mask = self.space.active(arch.choices)
        return [row[c] for row, c, m in zip(self.ids, arch.choices, mask) if m and row]

    def batch(self, archs: Sequence[Architecture]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded token ids ``(n, longest)`` and the lengths (at least 1: an empty cell reads one pad)."""
        seqs = [self.tokens(a) or [0] for a in archs]
        lengths = torch.tensor([len(s) for s in seqs])
        out = torch.zeros(len(seqs), int(lengths.max()) if seqs else 1, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s)
        return out, lengths


class EnsembleLSTM(nn.Module):
    """``members`` independent LSTM regressors computed together: each embeds the tokens, runs an LSTM over them
    and maps its state at the last token to a score. Returns ``(members, n)``.

    The members are batched (their weights stacked on a first axis, one matrix product per time step for all)
    because each is tiny and the sequences are a few tokens long: five separate ``nn.LSTM`` cost five times the
    dispatch overhead that dominates here.
    """

    def __init__(self, members: int, vocab: int, hidden: int, embedding: int) -> None:
        super().__init__()
        self.embed = nn.Parameter(torch.empty(members, vocab, embedding))
        self.w_ih = nn.Parameter(torch.empty(members, embedding, 4 * hidden))
        self.w_hh = nn.Parameter(torch.empty(members, hidden, 4 * hidden))
        self.bias = nn.Parameter(torch.empty(members, 1, 4 * hidden))
        self.w_out = nn.Parameter(torch.empty(members, hidden, 1))
        self.b_out = nn.Parameter(torch.empty(members, 1, 1))

    def reset(self, generator: torch.Generator) -> None:
        """PyTorch's initialisation of ``nn.Embedding``, ``nn.LSTM`` and ``nn.Linear``, from ``generator``."""
        hidden = self.w_hh.shape[1]
        with torch.no_grad():
            self.embed.normal_(0.0, 1.0, generator=generator)
            for p in (self.w_ih, self.w_hh, self.bias, self.w_out, self.b_out):
                p.uniform_(-hidden ** -0.5, hidden ** -0.5, generator=generator)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        members, n, steps = self.embed.shape[0], tokens.shape[0], tokens.shape[1]
        x = torch.bmm(self.embed[:, tokens.reshape(-1)], self.w_ih).reshape(members, n, steps, -1) + \
            self.bias.unsqueeze(2)
        h = x.new_zeros(members, n, self.w_hh.shape[1])
        c = torch.zeros_like(h)
        states = []
        for t in range(steps):
            i, f, g, o = (x[:, :, t] + torch.bmm(h, self.w_hh)).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            states.append(h)
        # padding is at the end: the state at a sequence's last token is its final state
        last = torch.stack(states, 2)[:, torch.arange(n), lengths - 1]
        return (torch.bmm(last, self.w_out) + self.b_out).squeeze(-1)


class EnsembleMLP(nn.Module):
    """``members`` independent MLPs (two hidden ReLU layers) over the space's encoding, computed together."""

    def __init__(self, members: int, inputs: int, hidden: int) -> None:
        super().__init__()
        sizes = [(inputs, hidden), (hidden, hidden), (hidden, 1)]
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(members, a, b)) for a, b in sizes)
        self.biases = nn.ParameterList(nn.Parameter(torch.empty(members, 1, b)) for _, b in sizes)

    def reset(self, generator: torch.Generator) -> None:
        """PyTorch's initialisation of ``nn.Linear`` (uniform in +-1/sqrt(fan_in)), from ``generator``."""
        with torch.no_grad():
            for w, b in zip(self.weights, self.biases):
                bound = w.shape[1] ** -0.5
                w.uniform_(-bound, bound, generator=generator)
                b.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if k < len(self.weights) - 1:
                h = torch.relu(h)
        return h.squeeze(-1)


class EnsemblePredictor:
    """``members`` regressors of one ``kind`` ("lstm" or "mlp"), member ``m`` trained without fold ``m``.

    Observation ``i`` (in the order given to :meth:`fit`) is in fold ``i % members``, so folds stay fixed as data
    grow. :meth:`predict` returns the members' mean, on the rewards' scale.
    """

    def __init__(self, space: SearchSpace, generator: torch.Generator, kind: str = "lstm", members: int = 5,
                 hidden: int = 64, embedding: int = 32, lr: float = 0.01) -> None:
        if kind not in KINDS:
            raise ValueError(f"predictor kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if members < 1 or hidden < 1 or embedding < 1 or lr <= 0:
            raise ValueError("need members, hidden and embedding >= 1 and lr > 0")
        self.space = space
        self.kind = kind
        self.lr = lr
        self.generator = generator
        self.n_members = members
        self.tokeniser = Tokeniser(space) if kind == "lstm" else None
        self.model: nn.Module = EnsembleLSTM(members, self.tokeniser.size, hidden, embedding) if self.tokeniser \
            else EnsembleMLP(members, space.encoding_size, hidden)
        self.y_mean, self.y_std = 0.0, 1.0
        self.trained = False
        self.reset()

    def reset(self) -> None:
        """New weights for every member, from the generator (PNAS trains from scratch on the first cells)."""
        self.model.reset(self.generator)  # type: ignore[operator]
        self.trained = False

    def _inputs(self, archs: Sequence[Architecture]) -> tuple[torch.Tensor, ...]:
        if self.tokeniser is not None:
            return self.tokeniser.batch(archs)
        return (torch.from_numpy(np.array([self.space.encode(a) for a in archs], dtype=np.float32)),)

    def fit(self, archs: Sequence[Architecture], rewards: Sequence[float], steps: int) -> None:
        """``steps`` full-batch Adam steps per member on its folds, from the current weights."""
        if not archs or steps <= 0:
            return
        y = np.asarray(rewards, dtype=np.float64)
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if y.std() > 0 else 1.0
        target = torch.from_numpy(((y - self.y_mean) / self.y_std).astype(np.float32))
        inputs = self._inputs(archs)
        # member m learns from every fold but m: a 0/1 weight per (member, observation), so that all members
        # train in one batched computation (their losses are independent, and Adam is per parameter)
        fold = np.arange(len(archs)) % self.n_members
        weight = (fold[None, :] != np.arange(self.n_members)[:, None]).astype(np.float32)
        weight[weight.sum(1) == 0] = 1.0  # fewer observations than members: such a member sees them all
        w = torch.from_numpy(weight / weight.sum(1, keepdims=True))
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        self.model.train()
        for _ in range(steps):
            opt.zero_grad()
            loss = (w * (self.model(*inputs) - target) ** 2).sum()
            loss.backward()
            opt.step()
        self.trained = True

    def predict_members(self, archs: Sequence[Architecture], batch: int = 4096) -> np.ndarray:
        """Every member's prediction, ``(members, n)``, on the rewards' scale."""
        out = np.zeros((self.n_members, len(archs)))
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(archs), batch):
                out[:, start : start + batch] = self.model(*self._inputs(archs[start : start + batch])).numpy()
        return out * self.y_std + self.y_mean

    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        """The ensemble's mean prediction of each architecture's reward."""
        if not archs:
            return np.zeros(0)
        return self.predict_members(archs).mean(0)
