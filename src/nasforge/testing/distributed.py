"""Helpers for testing data-parallel training: start replicas on this machine and train a fixed small model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..train.distributed import free_port, replica_env

__all__ = ["derive_small", "free_port", "replica_env", "run_replicas", "score_small", "sharded_checks", "small_model",
           "threads_after_leaving", "train_small", "decodes_small", "failing_search", "small_oneshot_config"]

if TYPE_CHECKING:
    from ..config import RunConfig


def small_model(batch_norm: bool = False, running_stats: bool = True) -> nn.Module:
    """A small convolutional network (seeded by the caller); without batch norm data-parallel training is the
    one-process training up to float summation order. ``running_stats=False``: the batch norm normalises with
    each batch's statistics in eval mode too (as a super-network's do)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 6, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(6, track_running_stats=running_stats))
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
    config = TrainConfig(epochs=steps_epochs, batch_size=batch_size, lr=0.05, amp=False, cpu_bf16=False)
    result = fit(model, splits.train, splits.normalise, config, generator=torch.Generator().manual_seed(1),
                 flip=False)
    replicas = Replicas.current()
    if replicas is None or replicas.main:
        arrays = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        np.savez(out, loss=np.array(result.train_loss), **arrays)
    shutdown()


def threads_after_leaving(out_dir: str | Path) -> None:
    """Join the process group, import what an optimiser's first step imports (``torch._dynamo``), leave, and write
    the names of this process' threads in the group and after leaving it to ``out_dir/rank{RANK}.json`` (Linux:
    ``/proc``). Threads of a group left behind outlive :func:`~nasforge.train.distributed.shutdown` and can abort
    the process at exit."""
    import importlib
    import json

    from ..train.distributed import init_from_env, shutdown

    def names() -> list[str]:
        return sorted((task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())

    init_from_env("cpu")
    importlib.import_module("torch._dynamo")
    inside = names()
    shutdown()
    (Path(out_dir) / f"rank{os.environ['RANK']}.json").write_text(json.dumps({"in": inside, "after": names()}))


def _replica(rank: int, world: int, port: int, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    os.environ.update(replica_env(rank, world, port))
    fn(*args)


def run_replicas(world: int, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` in ``world`` new processes joined as data-parallel replicas (gloo)."""
    import torch.multiprocessing as mp

    mp.spawn(_replica, args=(world, free_port(), fn, args), nprocs=world, join=True)


def small_oneshot_config(budget: int, space: str = "nb201", strategy: str = "enas",
                         overrides: Sequence[str] = ()) -> RunConfig:
    """The run config of a short one-shot search on digits with a tiny super-network (``overrides``: key=value)."""
    from ..config import make_run_config

    return make_run_config({"space": space, "strategy": strategy, "evaluator": "supernet", "dataset": "digits",
                            "budget": budget, "seed": 0},
                           ["evaluator.model_args={C: 4, N: 1}", "evaluator.batch_size=32",
                            "evaluator.reward_batch=32", *overrides])


def oneshot_small(out: str | Path, budget: int = 12, space: str = "nb201", strategy: str = "enas",
                  overrides: Sequence[str] = ()) -> None:
    """A short one-shot search on digits (tiny super-network), replicated when this process is in a process
    group; every replica saves its shared weights, the rewards it saw and its policy's parameters (``policy``,
    flat; ``init:policy`` before the search) to ``out`` with ``.rankR.npz``. ``overrides`` are ``key=value``."""
    from ..factory import build_components
    from ..run.loop import run_search
    from ..train.distributed import Replicas, init_from_env, shutdown

    init_from_env("cpu")
    torch.set_num_threads(1)
    config = small_oneshot_config(budget, space, strategy, overrides)
    parts = build_components(config)
    initial = {f"init:{k}": v.detach().numpy().copy()
               for k, v in parts.evaluator.supernet.state_dict().items()}  # type: ignore[attr-defined]

    def policy() -> np.ndarray:
        return torch.cat([p.detach().reshape(-1) for p in parts.strategy.policy.parameters()]).numpy().copy()  # type: ignore[attr-defined]

    initial["init:policy"] = policy()
    # as `nasforge search` runs it: every evaluation is a step of the shared weights, a repeated child too
    record = run_search(parts.space, parts.strategy, parts.evaluator, config.budget, seed=config.seed,
                        reuse_results=False)
    replicas = Replicas.current()
    rank = 0 if replicas is None else replicas.rank
    arrays = {k: v.detach().numpy() for k, v in parts.evaluator.supernet.state_dict().items()}  # type: ignore[attr-defined]
    rewards = np.array([t.reward for t in record.trials])
    archs = np.array([str(t.arch) for t in record.trials])
    np.savez(f"{out}.rank{rank}.npz", rewards=rewards, archs=archs, policy=policy(), **arrays, **initial)
    shutdown()



def relaxed_gradients_small(out: str | Path, strategy: str = "darts") -> None:
    """The first- and second-order (both products) architecture gradients (and losses) of a tiny super-network on
    digits, in one process on a batch made of two copies of 16 images, or as one of two replicas, each taking its
    half (one copy) and summing. Batch norm's statistics of a copy are those of both copies, so the two agree up to float
    summation order. Saved to ``out`` with ``.rankR.npz``."""
    from ..config import make_run_config
    from ..factory import build_components
    from ..train.distributed import Replicas, init_from_env, shutdown

    init_from_env("cpu")
    torch.set_num_threads(1)
    config = make_run_config({"space": "nb201", "strategy": strategy, "evaluator": "supernet",
                              "dataset": "digits", "budget": 8, "seed": 0}, ["evaluator.model_args={C: 4, N: 1}"])
    parts = build_components(config)
    ev: Any = parts.evaluator
    ev.child.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # some non-uniform architecture weights, the same in every process
        parts.strategy.policy.logits.normal_(generator=gen)  # type: ignore[attr-defined]
    x, y = ev._batch(ev.splits.val, 16)
    xt, yt = ev._batch(ev.splits.train, 16)
    replicas = Replicas.current()
    if replicas is None:  # the whole batch: both copies
        x, y, xt, yt = torch.cat([x, x]), torch.cat([y, y]), torch.cat([xt, xt]), torch.cat([yt, yt])
    share = 1.0 if replicas is None else 0.5
    relaxed = parts.strategy.relaxed(0.5)  # type: ignore[attr-defined]
    first, loss1, _ = ev.first_order_gradient(relaxed, x, y, share)
    second, loss2, _ = ev.second_order_gradient(relaxed, x, y, (xt, yt), share)
    exact, _, _ = ev.second_order_gradient(relaxed, x, y, (xt, yt), share, exact=True)
    rank = 0 if replicas is None else replicas.rank
    np.savez(f"{out}.rank{rank}.npz", first=first.numpy(), second=second.numpy(), exact=exact.numpy(),
             losses=np.array([loss1, loss2]))
    shutdown()


def sharded_checks(out: str | Path, run_dir: str | Path, folder: str | Path | None = None,
                   darts_dir: str | Path | None = None) -> None:
    """What a replica computes of a fixed model's test accuracy (:func:`score_small`) and of a one-shot
    search's derivation (:func:`derive_small`), and with ``folder`` how often it decodes that image folder
    (:func:`decodes_small`), saved to ``out`` with ``.rankR.npz`` and ``.rankR.json``, and with ``darts_dir`` the
    derivation of that differentiable search (``.rankR.darts.json``); in one process when not in a process group.
    All in one start of the replicas, which costs seconds."""
    import json

    from ..train.distributed import Replicas, init_from_env, shutdown

    torch.set_num_threads(1)
    models = _trained_models()  # before joining the group: every replica trains alone, to the same weights
    init_from_env("cpu")
    replicas = Replicas.current()
    rank = 0 if replicas is None else replicas.rank
    arrays = score_small(models)
    if folder is not None:
        arrays.update(decodes_small(folder))
    np.savez(f"{out}.rank{rank}.npz", **arrays)  # type: ignore[arg-type]
    Path(f"{out}.rank{rank}.json").write_text(json.dumps(derive_small(run_dir)))
    if darts_dir is not None:  # a differentiable search's derivation: perturbation-based selection
        Path(f"{out}.rank{rank}.darts.json").write_text(json.dumps(derive_small(darts_dir)))
    shutdown()


def decodes_small(folder: str | Path) -> dict[str, np.ndarray]:
    """Load the image ``folder`` twice with a new cache (``folder.cache``), as data-parallel replicas when in a
    process group: how many times this process decoded it each time, and the training images it got."""
    from ..train import readers
    from ..train.distributed import Replicas

    decoded: list[int] = []
    original = readers._decode_folder

    def counting(path: Path, name: str) -> readers.ImageData:
        decoded[-1] += 1
        return original(path, name)

    readers._decode_folder = counting
    try:
        for _ in range(2):
            decoded.append(0)
            data = readers.load_dataset("folder", folder, f"{folder}.cache", Replicas.current())
    finally:
        readers._decode_folder = original
    return {"decoded": np.array(decoded), "images": data.train_x}


def _trained_models() -> dict[bool, nn.Module]:
    from ..train import DataConfig, load_dataset, make_splits
    from ..train.loop import TrainConfig, fit

    splits = make_splits(load_dataset("digits"), DataConfig(val_size=0))
    models = {}
    for running in (True, False):
        model = small_model(batch_norm=True, running_stats=running)
        config = TrainConfig(epochs=1, batch_size=32, lr=0.05, amp=False, cpu_bf16=False)
        fit(model, splits.train, splits.normalise, config,
            generator=torch.Generator().manual_seed(1), flip=False)
        models[running] = model
    return models


def score_small(models: dict[bool, nn.Module], batch_size: int = 100) -> dict[str, np.ndarray]:
    """The digits test accuracy of :func:`small_model` with batch norm on running statistics (``models[True]``)
    and on batch statistics only (``models[False]``) by :func:`~nasforge.train.loop.accuracy` in batches of
    ``batch_size`` (``acc_running_True``, ``acc_running_False``), the test images this replica forwarded
    (``seen``), and this replica's share of the training-mode outputs of one batch of 50 test images under
    :meth:`Replicas.synced_batch_norm` (``outputs``)."""
    import contextlib

    from ..train import DataConfig, load_dataset, make_splits
    from ..train.distributed import Replicas
    from ..train.loop import accuracy

    splits = make_splits(load_dataset("digits"), DataConfig(val_size=0))
    replicas = Replicas.current()
    seen = [0]
    hook = models[True].register_forward_pre_hook(lambda _, args: seen.__setitem__(0, seen[0] + len(args[0])))
    out = {f"acc_running_{r}": np.array(accuracy(m, splits.test, splits.normalise, batch_size=batch_size,
                                                  replicas=replicas)) for r, m in models.items()}
    hook.remove()
    model = models[False].train()
    x = splits.normalise(splits.test.x[:50])
    part = slice(0, 50) if replicas is None else replicas.share(50)
    with torch.no_grad(), contextlib.nullcontext() if replicas is None else replicas.synced_batch_norm(model):
        out["outputs"] = model(x[part]).numpy()
    out["seen"] = np.array(seen[0])
    return out


def derive_small(run_dir: str | Path, chunk: int = 70, n_samples: int = 30) -> dict[str, Any]:
    """The derivation from the last checkpoint of the one-shot search in ``run_dir`` (validation chunks of
    ``chunk`` images: several of digits' validation split), replicated when this process is in a process group,
    with ``score_calls``: how many architectures or weightings this process scored."""
    from ..config import make_run_config
    from ..factory import build_components, resolve
    from ..run.rundir import open_store, read_config

    config = resolve(make_run_config(read_config(run_dir).to_yaml_dict(), [f"evaluator.derive_chunk={chunk}"]))
    with open_store(run_dir, readonly=True) as store:
        saved = store.load_checkpoint()
    assert saved is not None, f"{run_dir}: no checkpoint"
    parts = build_components(config)
    parts.strategy.load_state_dict(saved[1]["strategy"])
    evaluator: Any = parts.evaluator
    evaluator.load_state_dict(saved[1]["evaluator"])
    calls, score_on = [0], evaluator.score_on

    def counted(*args: Any) -> float:
        calls[0] += 1
        return score_on(*args)

    evaluator.score_on = counted
    return {**evaluator.derive(parts.strategy, n_samples, config.seed), "score_calls": calls[0]}


def failing_search(out: str | Path, fail_rank: int = 1, fail_at: int = 3) -> None:
    """A short one-shot search (as :func:`oneshot_small`) into ``out/rankR``, whose evaluation number ``fail_at``
    raises on replica ``fail_rank`` only; every replica writes what stopped it (``error``: the exception's type
    and message, or None), its finished trials and its retried attempts to ``out/rankR.json``."""
    import json

    from .. import api
    from ..factory import build_components
    from ..run.rundir import open_store
    from ..train.distributed import Replicas, init_from_env, shutdown

    init_from_env("cpu")
    torch.set_num_threads(1)
    replicas = Replicas.current()
    rank = 0 if replicas is None else replicas.rank
    config = small_oneshot_config(8)
    parts = build_components(config)
    evaluator: Any = parts.evaluator
    if rank == fail_rank:
        evaluate, calls = evaluator.evaluate, [0]

        def failing(*args: Any) -> Any:
            calls[0] += 1
            if calls[0] == fail_at:
                raise RuntimeError("a failure of this replica alone")
            return evaluate(*args)

        evaluator.evaluate = failing
    error = None
    try:
        api.search(config, Path(out) / f"rank{rank}", components=parts)
    except Exception as exc:
        error = {"type": type(exc).__name__, "message": str(exc)}
        shutdown()  # leaving on an error, as the command line does: the others' next collective fails
    else:
        shutdown()
    with open_store(Path(out) / f"rank{rank}", readonly=True) as store:
        store.load(parts.space.from_dict)
        outcome = {"error": error, "finished": len(store.finished()),
                   "failed": sum(t.outcome.failed for t in store.finished()), "attempts": len(store.attempts())}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(outcome))
