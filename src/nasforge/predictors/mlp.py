"""A small neural performance predictor: an MLP on architecture encodings (AlphaX's meta-DNN).

AlphaX (Wang et al. 2018) scores the rollouts of its tree search with a "meta-DNN", a multi-layer
perceptron trained on every architecture evaluated so far. :class:`MLPPredictor` is that network with
its training: full-batch Adam on mean squared error, warm-started between fits, so that a refit after a
few new observations costs a few dozen cheap steps. Its weights, optimiser and generator are torch
objects a strategy keeps as attributes, so they are saved and restored exactly by :mod:`nasforge.codec`.

:func:`encode_rows` encodes many choice tuples at once (vectorised where a space has no inactive
decisions), since a tree search scores dozens of rollouts per query.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..spaces.base import SearchSpace


def encode_rows(space: SearchSpace, rows: Sequence[Sequence[int]]) -> np.ndarray:
    """``space.encode`` of many canonical choice tuples, as a float32 matrix (one row each)."""
    if not len(rows):
        return np.zeros((0, space.encoding_size), dtype=np.float32)
    if type(space).active is SearchSpace.active and type(space).encode is SearchSpace.encode:
        # every decision always active: the one-hot positions are plain offsets
        offsets = np.cumsum([0] + [d.n_choices for d in space.decisions[:-1]])
        idx = np.asarray(rows, dtype=np.int64) + offsets
        out = np.zeros((len(idx), space.encoding_size), dtype=np.float32)
        np.put_along_axis(out, idx, 1.0, axis=1)
        return out
    return np.stack([space.encode(Architecture(space.name, tuple(r))) for r in rows]).astype(np.float32)


class MLPPredictor(nn.Module):
    """MLP from an encoding to one score, trained warm-started by :meth:`fit`."""

    def __init__(self, n_inputs: int, hidden: int = 64, layers: int = 2, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):  # seeded initialisation, the caller's generator untouched
            torch.manual_seed(seed)
            blocks: list[nn.Module] = []
            width = n_inputs
            for _ in range(layers):
                blocks += [nn.Linear(width, hidden), nn.ReLU()]
                width = hidden
            blocks.append(nn.Linear(width, 1))
            self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[:, 0]

    def optimizer(self, lr: float = 0.01, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
        """The Adam optimiser :meth:`fit` expects (kept by the caller, so that it is saved with its state)."""
        return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)

    def fit(self, optimizer: torch.optim.Optimizer, X: np.ndarray, y: np.ndarray, steps: int) -> float:
        """``steps`` full-batch steps of ``optimizer`` on the mean squared error; returns the last loss."""
        xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
        yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
        loss = torch.zeros(())
        for _ in range(steps):
            loss = ((self(xt) - yt) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return float(loss.detach())

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Scores of the rows of ``X`` (float64)."""
        with torch.no_grad():
            return self(torch.as_tensor(np.asarray(X, dtype=np.float32))).double().numpy()
