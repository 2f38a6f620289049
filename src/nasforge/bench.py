"""Fair comparison of strategies: every strategy over many seeds on the same space and evaluator.

Each (strategy, seed) pair is one search with an in-memory record; its incumbent curve, the cumulative
cost of its evaluations (the evaluator's ``cost_unit``: epochs trained, or a surrogate's seconds), the
evaluation at which it first held the benchmark's optimum (at the highest fidelity), and its overhead
(strategy time only) are saved as ``runs/<strategy>/seed_<k>.json`` in the output directory, so a killed
bench continues where it stopped. :func:`summarise` turns those into ``summary.json`` (incumbent test
accuracy over evaluations and over cumulative cost, with quartiles) and ``summary.md``;
:func:`plot_curves`, :func:`plot_cost_curves` and :func:`plot_samples_to_optimum` draw ``curves.png``,
``curves_by_cost.png`` and ``samples_to_optimum.png``.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import RunConfig, build, config_class, to_dict
from .errors import ConfigError, RunDirError
from .registry import EXECUTORS, STRATEGIES
from .threads import worker_threads

log = logging.getLogger(__name__)

#: budgets at which summary.json reports the incumbent test accuracy
REPORT_BUDGETS = (25, 50, 100, 200, 300, 500)
#: how often (seconds) a bench running its jobs in processes looks whether it was asked to stop
STOP_POLL_S = 0.2


def report_budgets(budget: int) -> tuple[int, ...]:
    """The budgets a bench reports at: those of :data:`REPORT_BUDGETS` it reaches, and its own."""
    return tuple(sorted({b for b in REPORT_BUDGETS if b <= budget} | {budget}))
#: points of the cumulative-cost grid of ``incumbent_test_accuracy_by_cost`` (log-spaced)
COST_POINTS = 40
#: why a mean incumbent test curve may go down (written beside the figures)
DIP_NOTE = (
    "A mean incumbent test curve can dip: the incumbent is chosen by the search's reward (validation accuracy), "
    "never by test accuracy, so a new incumbent with a better validation accuracy can have a worse test accuracy; "
    "a multi-fidelity search's incumbent is the best result at the highest fidelity reached, so it changes to the "
    "first result at a higher fidelity even when that one is worse; and over evaluations, a seed joins the mean "
    "only after its first successful evaluation. Over cumulative cost the curves stop where the cheapest seed "
    "of the strategy stopped, so every point is a mean over all seeds."
)


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
    from .factory import check_seed

    check_seed(base.seed)
    return BenchSpec(base, names, [check_seed(s, "seeds") for s in seeds], per)


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    """The first setting in which two ``bench.json`` contents differ: ``key: old in the bench, new now``."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            diff = _first_difference(old.get(key), new.get(key), f"{where}{key}.")
            if diff:
                return diff
        return None
    return None if old == new else f"{where.rstrip('.')}: {old!r} in the bench, {new!r} now"


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
    from .factory import create_prior, create_strategy, objective_settings
    from .objectives import objective_matrix, parse_objectives
    from .run.loop import run_search

    space, evaluator = _WORKER["space"], _WORKER["evaluator"]
    strategy = create_strategy(config.strategy, space, config.seed, **objective_settings(config, strict=False).strategy_args)
    strategy.prior = create_prior(config, space)  # --prior: per job, since the run's seed fixes the proxy's draws
    start = time.perf_counter()
    record = run_search(space, strategy, evaluator, config.budget, seed=config.seed)
    wall = time.perf_counter() - start
    optimum = evaluator.optimum()
    best_key = None if optimum is None else space.key(optimum[0])
    incumbents = record.incumbents()
    top = max(evaluator.fidelities or (0.0,))  # the optimum counts as found when held at the highest fidelity

    def holds_optimum(inc: Any) -> bool:
        return space.key(inc.arch) == best_key and (inc.fidelity is None or inc.fidelity >= top)

    found = next((i + 1 for i, inc in enumerate(incumbents) if inc is not None and holds_optimum(inc)), None)
    costs = np.cumsum([t.outcome.cost for t in record.trials])
    return {
        "strategy": config.strategy,
        "seed": config.seed,
        "budget": config.budget,
        "incumbent_test_accuracy": [None if inc is None or inc.result is None else inc.result.test_accuracy
                                    for inc in incumbents],
        "incumbent_reward": [None if inc is None else inc.reward for inc in incumbents],
        "samples_to_optimum": found,
        "cumulative_cost": [round(float(c), 6) for c in costs],
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
    wanted = json.loads(json.dumps(spec.to_dict()))
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another --out")
    if spec_file.exists():
        diff = _first_difference(json.loads(spec_file.read_text()), wanted)
        if diff:
            raise RunDirError(f"{out}: holds a bench of another configuration ({diff}); choose another --out")
    # the whole config is checked before bench.json records it: a bench.json of a bad config would refuse the
    # corrected command
    EXECUTORS.get(spec.base.executor)  # an unknown name is refused with the known ones
    _init_worker(spec.base)  # the evaluator's settings (and its data) once here, before any worker starts
    if not spec_file.exists():
        try:
            out.mkdir(parents=True, exist_ok=True)
            spec_file.write_text(json.dumps(spec.to_dict(), indent=2))
        except OSError as exc:
            raise RunDirError(f"{out}: cannot create the bench directory ({exc.strerror})") from None
    jobs = [spec.run_config(s, seed) for seed in spec.seeds for s in spec.strategies
            if not _job_path(out, s, seed).exists()]
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
        _run_in_processes(spec.base, jobs, workers, save)

    results = {s: [json.loads(_job_path(out, s, seed).read_text()) for seed in spec.seeds] for s in spec.strategies}
    evaluator = _WORKER["evaluator"]
    summary = summarise(results, spec, evaluator.optimum(), cost_unit=evaluator.cost_unit)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    title = bench_title(spec)
    best = summary.get("optimum", {}).get("test_accuracy")
    plot_curves(results, out / "curves.png", title=title, optimum=best)
    plot_cost_curves(results, out / "curves_by_cost.png", title=title, optimum=best, cost_unit=evaluator.cost_unit)
    if "optimum" in summary:
        plot_samples_to_optimum(results, out / "samples_to_optimum.png", title=title, budget=spec.base.budget)
    if spec.base.objectives:  # multi-objective: hypervolume over evaluations (nasforge/hypervolume.py)
        from .hypervolume import plot_hypervolume, summarise_hypervolume

        summary["hypervolume"], hv = summarise_hypervolume(results, spec.base.objectives, report_budgets(spec.base.budget))
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if hv:
            plot_hypervolume(hv, out / "hypervolume.png", title=f"{spec.base.space}: {','.join(spec.base.objectives)}, "
                                                                 f"{len(spec.seeds)} seeds")
    return summary


def bench_title(spec: BenchSpec) -> str:
    """What a figure shows: the space, the benchmark (its file name) or evaluator, the budget and the seeds."""
    where = Path(spec.base.benchmark).name if spec.base.benchmark else spec.base.evaluator
    return f"{spec.base.space} on {where}: budget {spec.base.budget}, {len(spec.seeds)} seeds"


def _init_process_worker(base: RunConfig) -> None:
    from .run.process import become_worker

    become_worker()  # Ctrl-C is the parent's to handle (see _run_in_processes)
    _init_worker(base)


def _run_in_processes(base: RunConfig, jobs: list[RunConfig], workers: int,
                      save: Callable[[dict[str, Any]], None]) -> None:
    """Bench jobs in ``workers`` spawned processes, each saved as it finishes.

    The workers ignore Ctrl-C, and the parent holds Ctrl-C and SIGTERM while the jobs run: asked to stop, it
    cancels the jobs not started and ends the workers at once (a job is one search held in memory and saved when
    whole, so one stopped half-way runs again on resume), and only then the interrupt goes on. Raised wherever it
    landed, in the pool's bookkeeping or its shutdown, it left the pool half shut down and the process waiting at
    exit for workers that waited for jobs; and the workers, hit by the same Ctrl-C, died with tracebacks."""
    from .interrupts import deferred_interrupts, workers_ignore_ctrl_c

    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_process_worker, initargs=(base,))
    pending: set[cf.Future] = set()
    with deferred_interrupts() as stop:
        try:
            with workers_ignore_ctrl_c():  # the pool starts its workers as jobs are submitted
                pending = {pool.submit(run_job, job) for job in jobs}
            while pending and not stop:
                done, pending = cf.wait(pending, timeout=STOP_POLL_S, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    save(fut.result())
        finally:
            if pending:  # stopped, or a job failed: what is left is of no use
                _stop_pool(pool)
            else:
                pool.shutdown()


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel the pool's jobs not started and end its workers now, not when their jobs finish."""
    from .run.process import end_processes

    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    for p in procs:
        p.terminate()
    end_processes(procs)
    pool.shutdown(cancel_futures=True)  # its thread sees the workers gone, fails their futures, and ends


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


def _band(mat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and quartiles over seeds (rows) of each column, nan where no seed has a value yet."""
    with warnings.catch_warnings():  # all-nan columns (before any seed's first incumbent) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanmean(mat, axis=0), np.nanquantile(mat, 0.25, axis=0), np.nanquantile(mat, 0.75, axis=0))


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


def cost_grid(results: dict[str, list[dict[str, Any]]], points: int = COST_POINTS) -> np.ndarray:
    """Log-spaced cumulative costs from the cheapest first evaluation to the costliest seed's total (3 digits)."""
    costs = [np.asarray(r["cumulative_cost"], dtype=float) for runs in results.values() for r in runs
             if r.get("cumulative_cost")]
    positive = [c[c > 0] for c in costs]
    if not positive or not any(len(c) for c in positive):
        return np.zeros(0)
    lo = min(float(c[0]) for c in positive if len(c))
    hi = max(float(c[-1]) for c in positive if len(c))
    grid = np.geomspace(lo, hi, points) if hi > lo else np.array([lo])
    return np.unique([float(f"{g:.3g}") for g in grid])


def incumbent_at_cost(runs: list[dict[str, Any]], grid: np.ndarray) -> np.ndarray:
    """Seeds x grid matrix: each seed's incumbent test accuracy once it has spent that much (nan before its
    first incumbent, and past the cheapest seed's total, so that every point averages all seeds)."""
    mat = np.full((len(runs), len(grid)), np.nan)
    if not runs or any(not r.get("cumulative_cost") for r in runs):
        return mat
    limit = min(r["cumulative_cost"][-1] for r in runs)
    for i, r in enumerate(runs):
        cost = np.asarray(r["cumulative_cost"], dtype=float)
        acc = np.array([np.nan if v is None else v for v in r["incumbent_test_accuracy"]], dtype=float)
        k = np.searchsorted(cost, grid * (1 + 1e-9), side="right") - 1  # the last evaluation within the cost
        ok = (k >= 0) & (grid <= limit * (1 + 1e-9))
        mat[i, ok] = acc[k[ok]]
    return mat


def cost_to_reach(runs: list[dict[str, Any]], target: float) -> float | None:
    """The cumulative cost at which the strategy's mean incumbent test accuracy (over all its seeds) first
    reaches ``target``, exactly (at one of the seeds' evaluations), or None if it never does."""
    if not runs or any(not r.get("cumulative_cost") for r in runs):
        return None
    points = np.unique(np.concatenate([np.asarray(r["cumulative_cost"], dtype=float) for r in runs]))
    mean, _, _ = _band(incumbent_at_cost(runs, points))
    hit = np.flatnonzero(mean >= target)
    return None if len(hit) == 0 else float(points[hit[0]])


def summarise(results: dict[str, list[dict[str, Any]]], spec: BenchSpec, optimum: Any,
              cost_unit: str = "cost") -> dict[str, Any]:
    budget = spec.base.budget
    summary: dict[str, Any] = {
        "space": spec.base.space,
        "evaluator": spec.base.evaluator,
        "benchmark": spec.base.benchmark,
        "fidelity": spec.base.fidelity,
        "budget": budget,
        "n_seeds": len(spec.seeds),
        "cost_unit": cost_unit,
        "strategies": {},
        "incumbent_test_accuracy_by_cost": {},
        "notes": [DIP_NOTE],
    }
    grid = cost_grid(results)
    if optimum is not None:
        arch, res = optimum
        summary["optimum"] = {"arch": str(arch), "reward": res.reward, "test_accuracy": res.test_accuracy}
    for name, runs in results.items():
        mat = incumbent_matrix(runs)
        entry: dict[str, Any] = {
            "incumbent_test_accuracy": {
                str(b): _stats(mat[:, b - 1]) for b in report_budgets(budget) if b <= mat.shape[1]
            },
        }
        if optimum is not None:
            steps = np.array([budget if r["samples_to_optimum"] is None else r["samples_to_optimum"] for r in runs])
            found = [r["samples_to_optimum"] for r in runs if r["samples_to_optimum"] is not None]
            entry["samples_to_optimum"] = {
                "mean": float(steps.mean()),  # a seed that did not find it counts as the budget
                "median": float(np.median(steps)),
                "found_fraction": float(np.mean([r["samples_to_optimum"] is not None for r in runs])),
                "n_found": len(found),
                "mean_found": float(np.mean(found)) if found else None,  # over the seeds that found it
            }
        if all(r.get("cumulative_cost") for r in runs):
            entry["cost_per_seed"] = float(np.mean([r["cumulative_cost"][-1] for r in runs]))
            by_cost = incumbent_at_cost(runs, grid)
            summary["incumbent_test_accuracy_by_cost"][name] = {
                f"{c:g}": _stats(by_cost[:, j]) for j, c in enumerate(grid) if not np.isnan(by_cost[:, j]).any()
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
    curves = {}
    for name, runs in results.items():
        mat = incumbent_matrix(runs)
        curves[name] = (np.arange(1, mat.shape[1] + 1), mat)
    return _plot_bands(curves, path, title, optimum, "evaluations")


def _plot_bands(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str,
                optimum: float | None, xlabel: str) -> Path:
    """Mean and interquartile band of each strategy's seeds x points matrix, the whole of every curve shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    shown: list[np.ndarray] = []
    for name, (x, mat) in curves.items():
        if not len(x):
            continue
        mean, q25, q75 = _band(mat)
        ax.plot(x, mean, label=name, lw=1.6, drawstyle="steps-post")
        ax.fill_between(x, q25, q75, alpha=0.15, step="post")
        shown += [mean, q25, q75]
    values = np.concatenate([v[np.isfinite(v)] for v in shown]) if shown else np.zeros(0)
    if optimum is not None:
        ax.axhline(optimum, color="k", ls="--", lw=0.8, label="optimum")
        values = np.append(values, optimum)
    if len(values):  # the whole of every curve and band, from its first point on
        lo, hi = float(values.min()), float(values.max())
        pad = max(0.05 * (hi - lo), 0.05)
        ax.set_ylim(lo - pad, hi + pad)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("incumbent test accuracy (mean, IQR band)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_cost_curves(results: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "",
                     optimum: float | None = None, cost_unit: str = "cost") -> Path:
    """Mean incumbent test accuracy against cumulative cost, with the interquartile band, per strategy."""
    grid = cost_grid(results, points=200)
    curves = {name: (grid, incumbent_at_cost(runs, grid)) for name, runs in results.items()}
    curves = {name: (x[~np.isnan(m).any(axis=0)], m[:, ~np.isnan(m).any(axis=0)]) for name, (x, m) in curves.items()}
    return _plot_bands(curves, path, title, optimum, f"cumulative cost ({cost_unit})")


def plot_samples_to_optimum(results: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "",
                            budget: int | None = None) -> Path:
    """Evaluations each seed needed to hold the optimum, one box per strategy (as the LaNAS paper's Fig. 5,
    bottom row); seeds that never found it are drawn at the budget as crosses and counted in the label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 2), 5))
    rng = np.random.default_rng(0)  # jitter of the points only
    for i, name in enumerate(names):
        found = [r["samples_to_optimum"] for r in results[name] if r["samples_to_optimum"] is not None]
        missed = len(results[name]) - len(found)
        if found:
            ax.boxplot([found], positions=[i], widths=0.5, showfliers=False, showmeans=True)
            ax.scatter(i + rng.uniform(-0.15, 0.15, len(found)), found, s=8, alpha=0.5, color="C0")
        if missed and budget is not None:
            ax.scatter(i + rng.uniform(-0.15, 0.15, missed), [budget] * missed, s=14, marker="x", color="C3")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{n}\n{sum(r['samples_to_optimum'] is not None for r in results[n])}/{len(results[n])} found"
                        for n in names])
    ax.set_yscale("log")
    ax.set_ylabel("evaluations to the optimum (x: not found within the budget)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def to_optimum_text(entry: dict[str, Any], n_seeds: int) -> str:
    """The "to optimum" cell of a bench table: mean evaluations over the seeds that found it, and how many did."""
    sto = entry.get("samples_to_optimum")
    if sto is None:
        return "-"
    n_found = sto.get("n_found", round(sto["found_fraction"] * n_seeds))
    if not n_found:
        return f"— (0/{n_seeds} found)"
    mean = sto.get("mean_found")
    return f"{mean:.0f} ({n_found}/{n_seeds} found)" if mean is not None else f"({n_found}/{n_seeds} found)"


def summary_markdown(summary: dict[str, Any]) -> str:
    """The bench as Markdown: mean incumbent test accuracy at each budget, evaluations to the optimum, mean
    cost per seed and median overhead per query, then the notes."""
    budgets = [str(b) for b in report_budgets(summary["budget"])]
    where = summary.get("benchmark") or summary.get("evaluator")
    lines = [f"# {summary['space']} on {where}: budget {summary['budget']}, {summary['n_seeds']} seeds", "",
             "Mean incumbent test accuracy after N evaluations; evaluations to the optimum (mean over the seeds "
             f"that found it); mean cost per seed ({summary.get('cost_unit', 'cost')}); median strategy overhead "
             "per query.", "",
             "| strategy | " + " | ".join(f"@{b}" for b in budgets) + " | to optimum | cost/seed | ms/query |",
             "|---" * (len(budgets) + 4) + "|"]
    for name, entry in summary["strategies"].items():
        inc = entry["incumbent_test_accuracy"]
        cost = entry.get("cost_per_seed")
        cells = [f"{inc[b]['mean']:.2f}" if b in inc else "-" for b in budgets]
        cells += [to_optimum_text(entry, summary["n_seeds"]), "-" if cost is None else f"{cost:,.0f}",
                  f"{entry['overhead_ms_per_query']['median']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *summary.get("notes", []), ""]
    return "\n".join(lines)
