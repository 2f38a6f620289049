"""Helpers for testing data-parallel training: start replicas on this machine and train a fixed small model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..train.distributed import free_port, replica_env

__all__ = ["free_port", "replica_env", "run_replicas", "small_model", "train_small"]


def small_model(batch_norm: bool = False) -> nn.Module:
    """A small convolutional network (seeded by the caller); without batch norm data-parallel training is the
    one-process training up to float summation order."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 6, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(6))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 10)]
    return nn.Sequential(*layers)


def train_small(out: str | Path, steps_epochs: int = 2, batch_norm: bool = False, batch_size: int = 32) -> None:
    """Train :func:`small_model` on digits with :func:`~nasforge.train.loop.fit` (replicated when this process is
    in a process group) and save its weights to ``out`` (``.npz``) from rank 0."""
    from ..train import DataConfig, load_dataset, make_splits
    from ..train.distributed import Replicas, init_from_env, shutdown
    from ..train.loop import TrainConfig, fit

    init_from_env("cpu")
    torch.set_num_threads(1)
    splits = make_splits(load_dataset("digits"), DataConfig(val_size=0, fraction=0.25))
    model = small_model(batch_norm)
    config = TrainConfig(epochs=steps_epochs, batch_size=batch_size, lr=0.05, amp=False)
    result = fit(model, splits.train, splits.normalise, config, generator=torch.Generator().manual_seed(1),
                 flip=False)
    replicas = Replicas.current()
    if replicas is None or replicas.main:
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        np.savez(out, loss=np.array(result.train_loss), **arrays)
    shutdown()


def _replica(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    os.environ.update(replica_env(rank, world, port))
    fn(*args)


def run_replicas(world: int, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in ``world`` new processes joined as data-parallel replicas (gloo)."""
    import torch.multiprocessing as mp

    mp.spawn(_replica, args=(world, free_port(), fn, args), nprocs=world, join=True)


def oneshot_small(out: str | Path, budget: int = 12, space: str = "nb201", strategy: str = "enas") -> None:
    """A short one-shot search on digits (tiny super-network), replicated when this process is in a process
    group; every replica saves its shared weights and the rewards it saw to ``out`` with ``.rankR.npz``."""
    from ..config import make_run_config
    from ..factory import build_components
    from ..run.loop import run_search
    from ..train.distributed import Replicas, init_from_env, shutdown

    init_from_env("cpu")
    torch.set_num_threads(1)
    config = make_run_config({"space": space, "strategy": strategy, "evaluator": "supernet", "dataset": "digits",
                              "budget": budget, "seed": 0},
                             ["evaluator.model_args={C: 4, N: 1}", "evaluator.batch_size=32", "evaluator.reward_batch=32"])
    parts = build_components(config)
    record = run_search(parts.space, parts.strategy, parts.evaluator, config.budget, seed=config.seed)
    replicas = Replicas.current()
    rank = 0 if replicas is None else replicas.rank
    arrays = {k: v.detach().numpy() for k, v in parts.evaluator.supernet.state_dict().items()}  # type: ignore[attr-defined]
    rewards = np.array([t.reward for t in record.trials])
    archs = np.array([str(t.arch) for t in record.trials])
    np.savez(f"{out}.rank{rank}.npz", rewards=rewards, archs=archs, **arrays)
    shutdown()
