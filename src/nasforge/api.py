"""The public entry points of nasforge.

A search combines a search space, a strategy and an evaluator, all named in a :class:`~nasforge.RunConfig`::

    import nasforge as nf

    config = nf.RunConfig(space="nb201", strategy="re", benchmark="nb201-cifar10.csv", budget=100, seed=0)
    record, result = nf.search(config, out="runs/re0")   # a run directory: config.yaml, run.db, result.json
    print(result["best"]["arch"], result["best"]["test_accuracy"])
    record, result = nf.resume("runs/re0")               # continue a killed run: nothing lost or repeated

The pieces can also be built and driven by hand (:func:`create_space`, :func:`create_strategy`,
:func:`create_evaluator`, :func:`~nasforge.run_search`). A one-shot (weight-sharing) search's answer can be
derived again or retrained afterwards (:mod:`nasforge.oneshot`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from .arch import Architecture
from .config import RunConfig
from .evaluators.base import StatefulEvaluator
from .factory import (
    Components,
    build_components,
    create_evaluator,
    create_executor,
    create_space,
    create_strategy,
)
from .oneshot import derive, finish_derivation, retrain_ranked, train_command
from .run.loop import Callback, SearchRecord, run_search
from .run.rundir import (
    check_same_config,
    keep_derivations,
    open_store,
    prepare_run_dir,
    read_config,
    read_result,
    result_dict,
    resume_config,
    write_result,
)
from .run.store import RunStore
from .spaces.base import SearchSpace

log = logging.getLogger(__name__)

__all__ = [
    "Components", "build_components", "create_evaluator", "create_executor", "create_space", "create_strategy",
    "derive", "load_record", "parse_arch", "read_run_config", "resume", "retrain_ranked", "search",
    "train_command",
]


def search(
    config: RunConfig,
    out: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    components: Components | None = None,
) -> tuple[SearchRecord, dict[str, Any]]:
    """Run (or continue) the search ``config`` describes; with ``out``, keep everything in that directory.

    Returns the record and the ``result.json`` content (a partial one is written if the search is interrupted).
    """
    parts = components or build_components(config)
    config = parts.config  # the run directory records the settings the components really run with
    if out is not None:  # refused before an executor starts (a local Ray instance takes seconds)
        check_same_config(out, config)
    # The executor comes before the run directory: a cluster that cannot be joined is an error that leaves no
    # run behind (a run directory recording it would refuse the corrected command).
    executor = create_executor(config, parts.evaluator)
    try:
        store = prepare_run_dir(out, config) if out is not None else RunStore(None)
    except BaseException:
        executor.close()
        raise
    result: dict[str, Any] | None = None
    try:
        record = run_search(
            parts.space,
            parts.strategy,
            parts.evaluator,
            config.budget,
            store=store,
            executor=executor,
            callbacks=callbacks,
            fidelity=None,
            seed=config.seed,
            max_retries=config.max_retries,
            # A one-shot evaluation trains the shared weights: a repeated child must train them again.
            reuse_results=not isinstance(parts.evaluator, StatefulEvaluator),
        )
        result = _final_result(config, record, parts)
    finally:
        if out is not None:
            if result is None:  # interrupted: a partial result.json still shows what was found
                _write_partial_result(out, config, parts, store)
            else:
                result = keep_derivations(out, result)
                write_result(out, result)
        store.close()
        parts.evaluator.close()
    return record, result


def _write_partial_result(out: str | Path, config: RunConfig, parts: Components, store: RunStore) -> None:
    """``result.json`` of an interrupted search. A failure here is logged, never raised: it would hide why the
    search stopped (the run database keeps everything recorded either way)."""
    try:
        store.load(parts.space.from_dict)
        partial = SearchRecord(parts.space, store.finished(), config.budget)
        write_result(out, keep_derivations(out, result_dict(config, partial, parts.evaluator.optimum())))
    except Exception as exc:
        log.warning("could not write the partial %s: %s", Path(out) / "result.json", exc)


def _final_result(config: RunConfig, record: SearchRecord, parts: Components) -> dict[str, Any]:
    """``result.json`` of a finished search; one-shot searches add the architecture derived from the policy."""
    result = result_dict(config, record, parts.evaluator.optimum())
    from .train.distributed import Replicas  # torch.distributed: imported only by a search that gets here

    replicas = Replicas.current()
    if replicas is not None:  # data-parallel (--nproc, torchrun): how many processes trained
        result["replicas"] = replicas.world
    if isinstance(parts.evaluator, StatefulEvaluator):
        derived = parts.evaluator.derive(parts.strategy, seed=config.seed)
        if derived:
            result["derived"] = finish_derivation(config, derived)
    return result


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
