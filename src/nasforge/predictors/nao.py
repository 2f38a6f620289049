"""NAO's encoder-predictor-decoder (Luo, Tian, Qin, Chen & Liu, "Neural Architecture Optimization", 2018).

An LSTM encoder reads an architecture as one token per decision and maps it to a continuous embedding
(the projected mean of its outputs, as NAO's predictor reads the mean of the encoder's states); an MLP
predicts the architecture's score from the embedding; an LSTM decoder, unrolled over the decisions
from the embedding, gives per-decision option logits (options a decision does not have are masked).
:func:`fit` trains the three jointly on ``lam * prediction MSE + (1 - lam) * reconstruction
cross-entropy``. A strategy moves embeddings along the predictor's gradient and decodes them.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..spaces.base import SearchSpace


def tokens(space: SearchSpace, archs: Sequence[Architecture]) -> torch.Tensor:
    """One token per decision: its option's position in ``space.encode``, or a shared id if inactive."""
    offsets = np.cumsum([0] + [d.n_choices for d in space.decisions[:-1]])
    inactive = space.encoding_size
    rows = []
    for a in archs:
        mask = space.active(a.choices)
        rows.append([int(o + c) if m else inactive for o, c, m in zip(offsets, a.choices, mask)])
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(space.decisions))


def targets(space: SearchSpace, archs: Sequence[Architecture]) -> tuple[torch.Tensor, torch.Tensor]:
    """Choices (batch, decisions) and the float mask of active decisions (the reconstruction ignores the rest)."""
    choices = torch.tensor([a.choices for a in archs], dtype=torch.long).reshape(len(archs), len(space.decisions))
    active = torch.tensor([space.active(a.choices) for a in archs], dtype=torch.float32).reshape(choices.shape)
    return choices, active


class EncoderPredictorDecoder(nn.Module):
    """NAO's three networks in one module (so that one optimiser trains them jointly)."""

    def __init__(self, space: SearchSpace, hidden: int = 32, embedding_dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        n_choices = [d.n_choices for d in space.decisions]
        width = max(n_choices)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, the caller's generator untouched
            torch.manual_seed(seed)
            self.embed = nn.Embedding(space.encoding_size + 1, hidden)
            self.encoder = nn.LSTM(hidden, hidden, batch_first=True)
            self.to_embedding = nn.Linear(hidden, embedding_dim)
            self.predictor = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            self.dec_in = nn.Linear(embedding_dim, hidden)
            self.dec_step = nn.Parameter(0.1 * torch.randn(len(n_choices), hidden))
            self.decoder = nn.LSTM(hidden, hidden, batch_first=True)
            self.head = nn.Linear(hidden, width)
        mask = torch.zeros(len(n_choices), width)
        for i, n in enumerate(n_choices):
            mask[i, n:] = -math.inf
        self.register_buffer("mask", mask)

    def encode(self, toks: torch.Tensor) -> torch.Tensor:
        h, _ = self.encoder(self.embed(toks))
        return self.to_embedding(h.mean(1))

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self.predictor(z)[:, 0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-decision option logits (batch, decisions, widest decision); missing options at -inf."""
        x = self.dec_in(z)[:, None, :] + self.dec_step[None]
        h, _ = self.decoder(x)
        return self.head(h) + self.mask


def fit(model: EncoderPredictorDecoder, optimizer: torch.optim.Optimizer, toks: torch.Tensor,
        choices: torch.Tensor, active: torch.Tensor, y: torch.Tensor, steps: int, lam: float) -> tuple[float, float]:
    """``steps`` full-batch joint steps; returns the last prediction MSE and reconstruction cross-entropy."""
    mse = rec = torch.zeros(())
    for _ in range(steps):
        z = model.encode(toks)
        mse = ((model.predict(z) - y) ** 2).mean()
        logp = torch.log_softmax(model.decode(z), dim=-1)
        nll = -logp.gather(-1, choices[..., None])[..., 0]
        rec = (nll * active).sum() / active.sum().clamp(min=1.0)
        loss = lam * mse + (1.0 - lam) * rec
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(mse.detach()), float(rec.detach())
