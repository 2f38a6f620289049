"""The public entry points: build a space, strategy and evaluator from a config, and run a search."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .arch import Architecture
from .config import RunConfig, config_class, make_run_config, replace, resolve_args
from .errors import ConfigError, RunDirError
from .evaluators.base import Evaluator
from .registry import EVALUATORS, SPACES, STRATEGIES
from .run.executors import EXECUTORS, Executor
from .run.loop import Callback, SearchRecord, run_search
from .run.rundir import (derived_pick, open_store, prepare_run_dir, read_config, read_result, result_dict,
                         resume_config, write_result)
from .run.store import RunStore
from .spaces.base import SearchSpace
from .strategies.base import Strategy

log = logging.getLogger(__name__)


def create_space(name: str, **args: Any) -> SearchSpace:
    """A registered search space by name, with its typed parameters."""
    entry = SPACES.get(name)
    return entry.factory(resolve_args(entry.factory, args, "space"))


def create_strategy(name: str, space: SearchSpace, seed: int = 0, **args: Any) -> Strategy:
    """A registered strategy for ``space``, seeded, with typed hyper-parameters."""
    entry = STRATEGIES.get(name)
    return entry.factory(space, resolve_args(entry.factory, args, "strategy"), seed)


def create_evaluator(config: RunConfig, space: SearchSpace) -> Evaluator:
    entry = EVALUATORS.get(config.evaluator)
    supported = entry.capabilities.get("spaces")
    if supported and space.name not in supported:
        raise ConfigError(
            f"evaluator: {entry.name!r} works with spaces {', '.join(supported)}, not {space.name!r}"
        )
    return entry.factory(space, resolve_args(entry.factory, config.evaluator_args, "evaluator"), config)


@dataclass
class Components:
    space: SearchSpace
    strategy: Strategy
    evaluator: Evaluator


def build_components(config: RunConfig) -> Components:
    """Space, strategy and evaluator of a run config (errors name the offending field)."""
    space = create_space(config.space, **config.space_args)
    strategy = create_strategy(config.strategy, space, config.seed, **resolved(config).strategy_args)
    evaluator = create_evaluator(config, space)
    return Components(space, strategy, evaluator)


def resolved(config: RunConfig) -> RunConfig:
    """``config`` with the settings its components really run with where they depend on the run: for a
    one-shot evaluator, the strategy's :func:`oneshot_defaults` under the user's own ``strategy_args``."""
    if not EVALUATORS.get(config.evaluator).capabilities.get("oneshot"):
        return config
    return replace(config, strategy_args={**oneshot_defaults(config), **config.strategy_args})


def oneshot_defaults(config: RunConfig) -> dict[str, Any]:
    """Strategy settings for weight sharing, below the user's own: the strategy's ``ONESHOT`` values (the
    paper's settings for thousands of policy updates), repeats allowed (a repeated child costs one
    training step like any other), and a warm-up of a quarter of the budget in which the policy does
    not learn, so that every operation's shared weights train before the rewards they give are trusted."""
    cls = config_class(STRATEGIES.get(config.strategy).factory)
    fields = getattr(cls, "__dataclass_fields__", {})
    out: dict[str, Any] = dict(getattr(cls, "ONESHOT", {}))
    if "avoid_repeats" in fields:
        out["avoid_repeats"] = False
    if "warmup" in fields:
        out["warmup"] = config.budget // 4
    return out


def create_executor(config: RunConfig, evaluator: Evaluator) -> Executor:
    entry = EXECUTORS.get(config.executor)
    if config.workers > 1 and not entry.capabilities.get("parallel"):
        raise ConfigError(f"workers: the {entry.name} executor has one worker; choose --executor process or ray")
    return entry.factory(evaluator, config)


def search(
    config: RunConfig,
    out: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    components: Components | None = None,
) -> tuple[SearchRecord, dict[str, Any]]:
    """Run (or continue) the search ``config`` describes; with ``out``, keep everything in that directory.

    Returns the record and the ``result.json`` content.
    """
    config = resolved(config)  # the run directory records the settings the components really ran with
    parts = components or build_components(config)
    store = prepare_run_dir(out, config) if out is not None else RunStore(None)
    result: dict[str, Any] | None = None
    try:
        record = run_search(
            parts.space,
            parts.strategy,
            parts.evaluator,
            config.budget,
            store=store,
            executor=create_executor(config, parts.evaluator),
            callbacks=callbacks,
            fidelity=None,
            seed=config.seed,
            max_retries=config.max_retries,
            # A one-shot evaluation trains the shared weights: a repeated child must train them again.
            reuse_results=not EVALUATORS.get(config.evaluator).capabilities.get("oneshot", False),
        )
        result = _final_result(config, record, parts)
    finally:
        if out is not None:
            if result is None:  # interrupted: a partial result.json still shows what was found
                store.load(parts.space.from_dict)
                partial = SearchRecord(parts.space, store.finished(), config.budget)
                write_result(out, result_dict(config, partial, parts.evaluator.optimum()))
            else:
                write_result(out, result)
        store.close()
        parts.evaluator.close()
    return record, result


def _final_result(config: RunConfig, record: SearchRecord, parts: Components) -> dict[str, Any]:
    """``result.json`` of a finished search; one-shot searches add the architecture derived from the policy."""
    result = result_dict(config, record, parts.evaluator.optimum())
    derive = getattr(parts.evaluator, "derive", None)
    derived = derive(parts.strategy, seed=config.seed) if derive is not None else None
    if derived:
        result["derived"] = _with_train_command(config, derived)
    return result


def _with_train_command(config: RunConfig, derived: dict[str, Any]) -> dict[str, Any]:
    pick = derived_pick(derived)
    caps = SPACES.get(config.space).capabilities
    if pick and (caps.get("trainable") or caps.get("language_model")):  # what `nasforge train` trains
        derived["train_command"] = train_command(config, pick["arch"])
    return derived


def derive(run_dir: str | Path, n_samples: int = 100, seed: int | None = None,
           overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Derive a one-shot search's architecture again from its last checkpoint (shared weights and policy).

    ``overrides`` are ``evaluator.KEY=VALUE`` settings of the derivation, e.g. ``evaluator.derive_batch=5000``.
    The new derivation replaces ``derived`` in ``result.json``; the earlier ones stay in
    ``derived_history``. Returns the new one.
    """
    config = read_config(run_dir)
    for item in overrides:
        if not item.strip().startswith("evaluator."):
            raise ConfigError(f"override {item!r}: a derivation only takes evaluator.KEY=VALUE settings")
    config = resolved(make_run_config(config.to_yaml_dict(), list(overrides), source=f"{run_dir} + overrides"))
    if not EVALUATORS.get(config.evaluator).capabilities.get("oneshot", False):
        raise ConfigError(f"{run_dir}: evaluator {config.evaluator!r} is not one-shot; its best trial is the result")
    with open_store(run_dir) as store:
        saved = store.load_checkpoint()
    if saved is None:
        raise RunDirError(f"{run_dir}: no checkpoint yet (the search stopped before the end of its first epoch)")
    n_done, state = saved
    if n_done < config.budget:
        log.warning("%s: deriving from the checkpoint after %d of %d evaluations (a search still running, "
                    "killed, or written before searches checkpointed at their end)", run_dir, n_done, config.budget)
    parts = build_components(config)
    try:
        parts.strategy.load_state_dict(state["strategy"])
        parts.evaluator.load_state_dict(state["evaluator"])
        derived = parts.evaluator.derive(parts.strategy, n_samples, config.seed if seed is None else seed)
    finally:
        parts.evaluator.close()
    if not derived:
        raise ConfigError(f"{run_dir}: strategy {config.strategy!r} has no policy to derive from")
    derived = {**_with_train_command(config, derived), "checkpoint": n_done,
               "overrides": list(overrides)}
    result = read_result(run_dir)
    if "derived" in result:
        result["derived_history"] = [*result.get("derived_history", []), result["derived"]]
    result["derived"] = derived
    write_result(run_dir, result)
    return derived


def proxy_trainer(config: RunConfig, epochs: int) -> Evaluator:
    """The ``train`` evaluator at a one-shot search's proxy: its data, validation split, resolution and child
    model size (the super-network's own options dropped), training for ``epochs`` epochs."""
    from .evaluators.train import TrainEvaluator, TrainEvaluatorConfig
    from .supernet import SupernetOptions

    search = resolve_args(EVALUATORS.get(config.evaluator).factory, config.evaluator_args, "evaluator")
    options = set(SupernetOptions.__dataclass_fields__)  # super-network settings, not the child's
    proxy = TrainEvaluatorConfig(
        epochs=epochs,
        model_args={k: v for k, v in search.model_args.items() if k not in options},
        **vars(search.data_config()),
    )
    return TrainEvaluator(create_space(config.space, **config.space_args), proxy, config)


def retrain_ranked(run_dir: str | Path, top: int = 10, epochs: int = 5, seed: int = 0) -> dict[str, Any]:
    """Train a one-shot search's best-scored candidates briefly from scratch and pick the best on validation.

    The shared weights rank a derivation's candidates with systematic errors (on NAS-Bench-201 they favour
    parameter-free operations; docs/benchmarks.md). This trains the ``top`` best-scored of them
    (``derived.ranked``) for ``epochs`` epochs each at the search's own proxy (:func:`proxy_trainer`) and
    keeps the one with the best validation accuracy: ``top x epochs`` more epochs of the proxy.
    ``derived.retrained`` in ``result.json`` records every candidate's validation accuracy and
    ``derived.retrained_best`` becomes the run's pick (its ``train_command``, ``nasforge train --from RUN``,
    ``nasforge export RUN``). Returns the updated derivation.
    """
    if top < 1 or epochs < 1:
        raise ConfigError(f"retraining needs top >= 1 and epochs >= 1, got top={top}, epochs={epochs}")
    config = read_config(run_dir)
    result = read_result(run_dir)
    derived = result.get("derived") or {}
    if "ranked" not in derived:
        raise RunDirError(f"{run_dir}: its derivation lists no ranked candidates; run `nasforge derive {run_dir}`")
    if not SPACES.get(config.space).capabilities.get("trainable"):
        raise ConfigError(f"{run_dir}: retraining candidates trains image classifiers; space {config.space!r} "
                          "builds none (train a recurrent cell with `nasforge train --from RUN`)")
    evaluator = proxy_trainer(config, epochs)
    candidates = []
    for cand in derived["ranked"][:top]:
        outcome = evaluator.evaluate(evaluator.space.parse(cand["arch"]), seed=seed)
        if outcome.failed:  # recorded with its reason, left out of the pick
            candidates.append({**cand, "retrained": None, "error": outcome.error})
            log.warning("retraining %s failed: %s", cand["arch"], outcome.error)
            continue
        candidates.append({**cand, "retrained": outcome.reward})
        log.info("retrained %s for %d epochs: validation %.2f (shared weights %.2f)", cand["arch"], epochs,
                 outcome.reward, cand["score"])
    finite = [c for c in candidates if c["retrained"] is not None]
    derived["retrained"] = {"epochs": epochs, "seed": seed, "candidates": candidates}
    derived.pop("retrained_best", None)
    if finite:
        best = max(finite, key=lambda c: c["retrained"])  # first of equals: the shared weights' order
        derived["retrained_best"] = {"arch": best["arch"], "score": best["retrained"]}
    result["derived"] = _with_train_command(config, derived)
    write_result(run_dir, result)
    return result["derived"]


def train_command(config: RunConfig, arch: str) -> str:
    """The ``nasforge train`` command that trains ``arch`` of this run's space from scratch."""
    import shlex

    parts = ["nasforge", "train", "--space", config.space, "--arch", arch, "--dataset", config.dataset or "digits"]
    if config.data:
        parts += ["--data", config.data]
    for key, value in config.space_args.items():
        parts += ["--set", f"space.{key}={value}"]
    return shlex.join([*parts, "--epochs", "50", "--out", "runs/final"])


def resume(run_dir: str | Path, callbacks: Sequence[Callback] = (),
           budget: int | None = None) -> tuple[SearchRecord, dict[str, Any]]:
    """Continue the search recorded in ``run_dir`` from where it stopped; ``budget`` extends it (or ends it
    sooner). A finished run is left as it is: its record and ``result.json`` are returned."""
    config, done = resume_config(run_dir, budget)
    if done >= config.budget:
        log.info("%s: finished (%d of %d evaluations); nothing to do", run_dir, done, config.budget)
        _, record, store = load_record(run_dir)
        store.close()
        result = read_result(run_dir) or result_dict(config, record)
        if result.get("budget") != config.budget:  # a budget shortened to what was done
            result.update(budget=config.budget, complete=True)
            write_result(run_dir, result)
        return record, result
    return search(config, run_dir, callbacks)


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run directory was created with."""
    return read_config(run_dir)


def load_record(run_dir: str | Path) -> tuple[RunConfig, SearchRecord, RunStore]:
    """Read a run directory: its config, the finished trials, and the store (snapshots, state)."""
    config = read_config(run_dir)
    space = create_space(config.space, **config.space_args)
    store = open_store(run_dir, readonly=True)
    store.load(space.from_dict)
    return config, SearchRecord(space, store.finished(), config.budget), store


def parse_arch(space: str | SearchSpace, text: str) -> Architecture:
    """Architecture from its string form in ``space``."""
    sp = create_space(space) if isinstance(space, str) else space
    return sp.parse(text)
