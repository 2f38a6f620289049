"""Fair comparison of strategies: every strategy over many seeds on the same space and evaluator.

Each (strategy, seed) pair is one search with an in-memory record; its incumbent curve, the
evaluation at which it first held the benchmark's optimum, and its overhead (strategy time only)
are saved as ``runs/<strategy>/seed_<k>.json`` in the output directory, so a killed bench continues
where it stopped. :func:`summarise` turns those into ``summary.json`` and :func:`plot_curves` into
``curves.png``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import RunConfig, build, config_class, to_dict
from .errors import ConfigError, RunDirError
from .registry import STRATEGIES
from .threads import worker_threads

log = logging.getLogger(__name__)

#: budgets at which summary.json reports the incumbent test accuracy
REPORT_BUDGETS = (25, 50, 100, 200, 300, 500)


@dataclass
class BenchSpec:
    """What a bench runs: a base run config, the strategies (with their own overrides) and the seeds."""

    base: RunConfig
    strategies: list[str]
    seeds: list[int]
    strategy_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run_config(self, strategy: str, seed: int) -> RunConfig:
        return replace(self.base, strategy=strategy, seed=seed,
                       strategy_args=dict(self.strategy_args.get(strategy, {})))

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base.to_yaml_dict(), "strategies": self.strategies,
                "strategy_args": self.strategy_args, "seeds": self.seeds}


def make_spec(base: RunConfig, strategies: Sequence[str], seeds: Sequence[int],
              overrides: Sequence[str] = ()) -> BenchSpec:
    """A checked spec; ``overrides`` of the form ``re.population=50`` apply to one strategy only."""
    names = [STRATEGIES.canonical(s) for s in strategies]
    per: dict[str, dict[str, Any]] = {n: {} for n in names}
    from .config import parse_scalar

    for item in overrides:
        key, sep, raw = item.partition("=")
        head, dot, rest = key.partition(".")
        if not sep or not dot or STRATEGIES.canonical(head) not in per:
            raise ConfigError(f"override {item!r}: expected <strategy>.<field>=<value> for one of {', '.join(names)}")
        per[STRATEGIES.canonical(head)][rest] = parse_scalar(raw)
    for n in names:  # type-check now, not in a worker
        cls = config_class(STRATEGIES.get(n).factory)
        if cls is not None:
            per[n] = to_dict(build(cls, per[n], n))
    if not seeds:
        raise ConfigError("seeds: at least one seed is needed")
    return BenchSpec(base, names, list(seeds), per)


# ---------------------------------------------------------------------- one job (runs in a worker)
_WORKER: dict[str, Any] = {}


def _init_worker(base: RunConfig) -> None:
    """Load the space and evaluator once per worker process (a table is parsed once, not per seed)."""
    import torch

    from .factory import create_evaluator, create_space

    torch.set_num_threads(worker_threads(base))
    space = create_space(base.space, **base.space_args)
    _WORKER.update(space=space, evaluator=create_evaluator(base, space), base=base)


def run_job(config: RunConfig) -> dict[str, Any]:
    """One search with an in-memory record; returns its compact curve."""
    from .factory import create_strategy, objective_settings
    from .objectives import objective_matrix, parse_objectives
    from .run.loop import run_search

    space, evaluator = _WORKER["space"], _WORKER["evaluator"]
    strategy = create_strategy(config.strategy, space, config.seed, **objective_settings(config, strict=False).strategy_args)
    start = time.perf_counter()
    record = run_search(space, strategy, evaluator, config.budget, seed=config.seed)
    wall = time.perf_counter() - start
    optimum = evaluator.optimum()
    best_key = None if optimum is None else space.key(optimum[0])
    incumbents = record.incumbents()
    found = next((i + 1 for i, inc in enumerate(incumbents) if inc is not None and space.key(inc.arch) == best_key), None)
    return {
        "strategy": config.strategy,
        "seed": config.seed,
        "budget": config.budget,
        "incumbent_test_accuracy": [None if inc is None or inc.result is None else inc.result.test_accuracy
                                    for inc in incumbents],
        "incumbent_reward": [None if inc is None else inc.reward for inc in incumbents],
        "samples_to_optimum": found,
        "overhead_ms": [round(1000 * t.overhead_s, 4) for t in record.trials],
        "n_repeats": sum(t.cached for t in record.trials),
        "n_failed": sum(t.result is not None and t.result.failed for t in record.trials),
        "wall_s": wall,
        "best_arch": None if record.best is None else str(record.best.arch),
        **({"objective_values": [None if np.isnan(row).any() else row.tolist() for row in objective_matrix(
            [t.result for t in record.trials], parse_objectives(config.objectives))]} if config.objectives else {}),
    }


# ---------------------------------------------------------------------- the bench
def _job_path(out: Path, strategy: str, seed: int) -> Path:
    return out / "runs" / strategy / f"seed_{seed}.json"


def run_bench(spec: BenchSpec, out: str | Path, workers: int = 1,
              on_done: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every missing (strategy, seed) job, then write ``summary.json`` and ``curves.png``."""
    out = Path(out)
    spec_file = out / "bench.json"
    if spec_file.exists():
        previous = json.loads(spec_file.read_text())
        if previous != json.loads(json.dumps(spec.to_dict())):
            raise RunDirError(f"{out}: holds a bench of another configuration; choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps(spec.to_dict(), indent=2))
    jobs = [spec.run_config(s, seed) for seed in spec.seeds for s in spec.strategies
            if not _job_path(out, s, seed).exists()]
    _init_worker(spec.base)  # also validates the evaluator config before any worker starts
    log.info("bench: %d jobs to run, %d already done", len(jobs), len(spec.seeds) * len(spec.strategies) - len(jobs))

    def save(res: dict[str, Any]) -> None:
        path = _job_path(out, res["strategy"], res["seed"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(res))
        os.replace(tmp, path)
        if on_done:
            on_done(res)

    if spec.base.executor == "ray":
        _run_on_ray(spec.base, jobs, workers, save)
    elif workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            save(run_job(job))
    else:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec.base,)) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]
            for fut in cf.as_completed(futures):
                save(fut.result())

    results = {s: [json.loads(_job_path(out, s, seed).read_text()) for seed in spec.seeds] for s in spec.strategies}
    optimum = _WORKER["evaluator"].optimum()
    summary = summarise(results, spec, optimum)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot_curves(results, out / "curves.png", title=f"{spec.base.space}: {len(spec.seeds)} seeds",
                optimum=summary.get("optimum", {}).get("test_accuracy"))
    if spec.base.objectives:  # multi-objective: hypervolume over evaluations (nasforge/hypervolume.py)
        from .hypervolume import plot_hypervolume, summarise_hypervolume

        summary["hypervolume"], hv = summarise_hypervolume(results, spec.base.objectives, REPORT_BUDGETS)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if hv:
            plot_hypervolume(hv, out / "hypervolume.png", title=f"{spec.base.space}: {','.join(spec.base.objectives)}, "
                                                                 f"{len(spec.seeds)} seeds")
    return summary


class _BenchActor:
    """A Ray actor that loads the space and evaluator once and runs bench jobs."""

    def __init__(self, base: RunConfig) -> None:
        _init_worker(base)

    def run(self, config: RunConfig) -> dict[str, Any]:
        return run_job(config)


def _run_on_ray(base: RunConfig, jobs: list[RunConfig], workers: int,
                save: Callable[[dict[str, Any]], None]) -> None:
    """Bench jobs on a Ray cluster (``--executor ray``): one actor per worker, seeds as they free up."""
    from ray.util import ActorPool

    from .run.ray_executor import ensure_ray

    started = ensure_ray(replace(base, workers=workers))
    import ray

    try:
        actor = ray.remote(num_cpus=base.cpus_per_trial, num_gpus=base.gpus_per_trial)(_BenchActor)
        pool = ActorPool([actor.remote(base) for _ in range(max(1, min(workers, len(jobs))))])
        for res in pool.map_unordered(lambda a, job: a.run.remote(job), jobs):
            save(res)
    finally:
        if started:
            ray.shutdown()


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "q25": float(np.quantile(values, 0.25)),
            "q75": float(np.quantile(values, 0.75))}


def incumbent_matrix(runs: list[dict[str, Any]]) -> np.ndarray:
    """Seeds x evaluations matrix of incumbent test accuracy (nan before the first success)."""
    n = max(len(r["incumbent_test_accuracy"]) for r in runs)
    mat = np.full((len(runs), n), np.nan)
    for i, r in enumerate(runs):
        vals = [np.nan if v is None else v for v in r["incumbent_test_accuracy"]]
        mat[i, : len(vals)] = vals
    return mat


def summarise(results: dict[str, list[dict[str, Any]]], spec: BenchSpec, optimum: Any) -> dict[str, Any]:
    budget = spec.base.budget
    summary: dict[str, Any] = {
        "space": spec.base.space,
        "evaluator": spec.base.evaluator,
        "benchmark": spec.base.benchmark,
        "fidelity": spec.base.fidelity,
        "budget": budget,
        "n_seeds": len(spec.seeds),
        "strategies": {},
    }
    if optimum is not None:
        arch, res = optimum
        summary["optimum"] = {"arch": str(arch), "reward": res.reward, "test_accuracy": res.test_accuracy}
    for name, runs in results.items():
        mat = incumbent_matrix(runs)
        entry: dict[str, Any] = {
            "incumbent_test_accuracy": {
                str(b): _stats(mat[:, b - 1]) for b in REPORT_BUDGETS if b <= budget and b <= mat.shape[1]
            },
        }
        if optimum is not None:
            steps = np.array([budget if r["samples_to_optimum"] is None else r["samples_to_optimum"] for r in runs])
            entry["samples_to_optimum"] = {
                "mean": float(steps.mean()),
                "median": float(np.median(steps)),
                "found_fraction": float(np.mean([r["samples_to_optimum"] is not None for r in runs])),
            }
        overhead = np.concatenate([np.asarray(r["overhead_ms"], dtype=float) for r in runs])
        per_run_median = [float(np.median(r["overhead_ms"])) for r in runs]
        entry["overhead_ms_per_query"] = {
            "median": float(np.median(overhead)),
            "mean": float(overhead.mean()),
            "p95": float(np.quantile(overhead, 0.95)),
            "worst_run_median": float(max(per_run_median)),
        }
        entry["total_overhead_s"] = float(overhead.sum() / 1000.0)
        entry["mean_repeats"] = float(np.mean([r["n_repeats"] for r in runs]))
        summary["strategies"][name] = entry
    return summary


def plot_curves(results: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "",
                optimum: float | None = None) -> Path:
    """Mean incumbent test accuracy against evaluations, with the interquartile band, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    lows = []
    for name, runs in results.items():
        mat = incumbent_matrix(runs)
        x = np.arange(1, mat.shape[1] + 1)
        with np.errstate(all="ignore"):
            mean = np.nanmean(mat, axis=0)
            q25, q75 = np.nanquantile(mat, 0.25, axis=0), np.nanquantile(mat, 0.75, axis=0)
        ax.plot(x, mean, label=name, lw=1.6)
        ax.fill_between(x, q25, q75, alpha=0.15)
        lows.append(np.nanmean(mat[:, min(9, mat.shape[1] - 1)]))
    if optimum is not None:
        ax.axhline(optimum, color="k", ls="--", lw=0.8, label="optimum")
        ax.set_ylim(max(min(lows) - 0.5, optimum - 10), optimum + 0.3)
    ax.set_xscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("incumbent test accuracy (mean, IQR band)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
