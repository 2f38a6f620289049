"""After a one-shot search: derive its answer again, retrain its best-scored candidates, and the command that
trains the pick from scratch.

A one-shot search (a :class:`~nasforge.evaluators.base.StatefulEvaluator`: shared weights) ends with a
derivation: architectures sampled from the trained policy, scored with the shared weights. The functions here
work on a finished run directory: :func:`derive` derives again from the last checkpoint with other settings,
:func:`retrain_ranked` trains the best-scored candidates briefly at the search's proxy and picks on validation.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from .config import RunConfig, make_run_config, resolve_args
from .errors import ConfigError, RunDirError
from .evaluators.base import StatefulEvaluator
from .factory import build_components, check_seed, create_space, is_oneshot, resolve
from .final import FinalConfig, load_final_data, search_model_args, train_final
from .registry import EVALUATORS, SPACES
from .run.rundir import RunLock, derived_pick, keep_derivations, open_store, read_config, read_result, write_result

if TYPE_CHECKING:
    from .train.distributed import Replicas

log = logging.getLogger(__name__)


def finish_derivation(config: RunConfig, derived: dict[str, Any]) -> dict[str, Any]:
    """``derived`` with the ``nasforge train`` command of its pick, for spaces ``nasforge train`` trains."""
    pick = derived_pick(derived)
    caps = SPACES.get(config.space).capabilities
    if pick and (caps.get("trainable") or caps.get("language_model")):
        derived["train_command"] = train_command(config, pick["arch"])
    return derived


def derive(run_dir: str | Path, n_samples: int = 100, seed: int | None = None,
           overrides: Sequence[str] = (), *, write: bool = True) -> dict[str, Any]:
    """Derive a one-shot search's architecture again from its last checkpoint (shared weights and policy).

    ``overrides`` are ``evaluator.KEY=VALUE`` settings of the derivation, e.g. ``evaluator.derive_batch=5000``.
    The new derivation replaces ``derived`` in ``result.json``; the earlier ones stay in
    ``derived_history``. Returns the new one. Data-parallel (``nasforge derive --nproc N``, torchrun), the replicas
    split the candidates and the perturbation's fine-tuning steps, and rank 0 alone writes. A run directory that
    another process is writing (a search still running) is refused with :class:`RunDirError` before any work.
    ``write=False`` only returns the derivation: it takes no lock and writes nothing, so it reads a search still
    running (its latest checkpoint) or a read-only copy of a run. ``seed``: the run's own if None.
    """
    if seed is not None:
        check_seed(seed)
    config = read_config(run_dir)
    for item in overrides:
        if not item.strip().startswith("evaluator."):
            raise ConfigError(f"override {item!r}: a derivation only takes evaluator.KEY=VALUE settings")
    config = resolve(make_run_config(config.to_yaml_dict(), list(overrides), source=f"{run_dir} + overrides"))
    if not is_oneshot(config):
        raise ConfigError(f"{run_dir}: evaluator {config.evaluator!r} is not one-shot; its best trial is the result")
    if not write:
        return _derive_from_checkpoint(run_dir, config, n_samples, seed, overrides)
    with _writing(run_dir):
        result = read_result(run_dir)  # read first: a damaged file fails before minutes of scoring
        derived = _derive_from_checkpoint(run_dir, config, n_samples, seed, overrides)
        _write_once(run_dir, keep_derivations(run_dir, {**result, "derived": derived}, old=result))
        return derived


def _derive_from_checkpoint(run_dir: str | Path, config: RunConfig, n_samples: int, seed: int | None,
                            overrides: Sequence[str]) -> dict[str, Any]:
    with open_store(run_dir, readonly=True) as store:
        saved = store.load_checkpoint()
    if saved is None:
        raise RunDirError(f"{run_dir}: no checkpoint yet (the search stopped before the end of its first epoch)")
    n_done, state = saved
    if n_done < config.budget:
        log.warning("%s: deriving from the checkpoint after %d of %d evaluations (a search killed, or written "
                    "before searches checkpointed at their end)", run_dir, n_done, config.budget)
    parts = build_components(config)
    evaluator = parts.evaluator
    assert isinstance(evaluator, StatefulEvaluator)  # is_oneshot: the registry entry and the class agree
    try:
        parts.strategy.load_state_dict(state["strategy"])
        evaluator.load_state_dict(state["evaluator"])
        derived = evaluator.derive(parts.strategy, n_samples, config.seed if seed is None else seed)
    finally:
        evaluator.close()
    if not derived:
        raise ConfigError(f"{run_dir}: strategy {config.strategy!r} has no policy to derive from")
    derived = {**finish_derivation(config, derived), "checkpoint": n_done, "overrides": list(overrides)}
    replicas = _replicas()
    if replicas is not None:  # data-parallel: how many processes derived
        derived["replicas"] = replicas.world
    return derived


@contextlib.contextmanager
def _writing(run_dir: str | Path) -> Iterator[None]:
    """The run directory's lock, held by the process that will write ``result.json`` from before it reads the
    run until it has written: a derivation or retraining never interleaves with a search still writing the run
    (which would overwrite it at its end) or with another derivation. Data-parallel, rank 0 alone locks."""
    replicas = _replicas()
    if replicas is not None and not replicas.main:
        yield
        return
    try:
        lock = RunLock(run_dir)
    except RunDirError as exc:
        raise RunDirError(f"{exc} (to derive from its latest checkpoint now without writing: "
                          "`nasforge derive --no-write`, or write=False)") from None
    with lock:
        yield


def _replicas() -> Replicas | None:
    """The data-parallel replicas this process is one of, or None."""
    from .train.distributed import Replicas  # torch.distributed: imported only by a derivation that gets here

    return Replicas.current()


def _write_once(run_dir: str | Path, result: dict[str, Any]) -> None:
    """``result.json`` written by this process, or by rank 0 alone among data-parallel replicas (which all hold
    the same result)."""
    replicas = _replicas()
    if replicas is None or replicas.main:
        write_result(run_dir, result)


def proxy_config(config: RunConfig, epochs: int, seed: int | None = None) -> FinalConfig:
    """The final-training settings of a one-shot search's proxy: its data, validation split and resolution, its
    child model size (the super-network's own options dropped), ``epochs`` epochs, seeded with the run's seed
    unless ``seed`` is given. Everything else is the training defaults (the ``train`` evaluator's)."""
    search = resolve_args(EVALUATORS.get(config.evaluator).factory, config.evaluator_args, "evaluator")
    return FinalConfig(dataset=config.dataset, data=config.data, cache_dir=config.cache_dir, device=config.device,
                       seed=config.seed if seed is None else seed, space_args=dict(config.space_args),
                       model_args=search_model_args(config), train_args={"epochs": epochs},
                       data_args=vars(search.data_config()))


def retrain_ranked(run_dir: str | Path, top: int = 10, epochs: int = 5, seed: int | None = None, *,
                   write: bool = True, derived: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train a one-shot search's best-scored candidates briefly from scratch and pick the best on validation.

    The shared weights rank a derivation's candidates with systematic errors (on NAS-Bench-201 they favour
    parameter-free operations; docs/benchmarks.md). This trains the ``top`` best-scored of them
    (``derived.ranked``) for ``epochs`` epochs each with the library's final training at the search's own
    proxy (:func:`proxy_config`: the run's data, validation split, resolution, model size and seed) and keeps
    the one with the best validation accuracy: ``top x epochs`` more epochs of the proxy (each training
    data-parallel among replicas, as ``nasforge train --nproc`` trains). ``derived.retrained``
    in ``result.json`` records every candidate's validation accuracy and ``derived.retrained_best`` becomes the
    run's pick (its ``train_command``, ``nasforge train --from RUN``, ``nasforge export RUN``). Returns the
    updated derivation.

    ``derived`` retrains that derivation's candidates instead of ``result.json``'s (one that :func:`derive`
    returned with ``write=False``); ``write=False`` takes no lock and writes nothing.
    """
    if top < 1 or epochs < 1:
        raise ConfigError(f"retraining needs top >= 1 and epochs >= 1, got top={top}, epochs={epochs}")
    if not write:
        return _retrain(run_dir, derived or read_result(run_dir).get("derived") or {}, top, epochs, seed)
    with _writing(run_dir):
        old = read_result(run_dir)
        new = _retrain(run_dir, derived or old.get("derived") or {}, top, epochs, seed)
        result = {**old, "derived": new}  # a derivation given replaces the run's, which is kept in its history
        _write_once(run_dir, keep_derivations(run_dir, result, old=old) if derived else result)
        return new


def _retrain(run_dir: str | Path, derived: dict[str, Any], top: int, epochs: int, seed: int | None
             ) -> dict[str, Any]:
    """``derived`` with its ``top`` best-ranked candidates retrained and the best of them picked."""
    config = read_config(run_dir)
    if "ranked" not in derived:
        raise RunDirError(f"{run_dir}: its derivation lists no ranked candidates; run `nasforge derive {run_dir}`")
    if not SPACES.get(config.space).capabilities.get("trainable"):
        raise ConfigError(f"{run_dir}: retraining candidates trains image classifiers; space {config.space!r} "
                          "builds none (train a recurrent cell with `nasforge train --from RUN`)")
    proxy = proxy_config(config, epochs, seed)
    space = create_space(config.space, **config.space_args)
    data = load_final_data(space, proxy)  # once for every candidate
    candidates = []
    for cand in derived["ranked"][:top]:
        outcome = train_final(space, space.parse(cand["arch"]), proxy, data=data).result
        if outcome.get("failed"):  # recorded with its reason, left out of the pick
            candidates.append({**cand, "retrained": None, "error": outcome.get("error")})
            log.warning("retraining %s failed: %s", cand["arch"], outcome.get("error"))
            continue
        candidates.append({**cand, "retrained": outcome["val_accuracy"]})
        log.info("retrained %s for %d epochs: validation %.2f (shared weights %.2f)", cand["arch"], epochs,
                 outcome["val_accuracy"], cand["score"])
    finite = [c for c in candidates if c["retrained"] is not None]
    derived = {**derived, "retrained": {"epochs": epochs, "seed": proxy.seed, "candidates": candidates}}
    derived.pop("retrained_best", None)
    if finite:
        best = max(finite, key=lambda c: c["retrained"])  # first of equals: the shared weights' order
        derived["retrained_best"] = {"arch": best["arch"], "score": best["retrained"]}
    return finish_derivation(config, derived)


def train_command(config: RunConfig, arch: str) -> str:
    """The ``nasforge train`` command that trains ``arch`` of this run's space from scratch as the final network:
    at the space's default model size and full resolution, not the search's proxy (``nasforge train --from RUN``
    keeps the search's size)."""
    parts = ["nasforge", "train", "--space", config.space, "--arch", arch, "--dataset", config.dataset or "digits"]
    if config.data:
        parts += ["--data", config.data]
    for key, value in config.space_args.items():
        parts += ["--set", f"space.{key}={value}"]
    return shlex.join([*parts, "--epochs", "50", "--out", "runs/final"])
