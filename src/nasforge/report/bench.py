"""The report of a bench directory (``nasforge report BENCH_DIR``): what ``nasforge bench`` recorded, read-only.

Everything is computed from the per-run files (``runs/<strategy>/seed_<k>.json``), so a bench still
running or stopped early is reported on what it has; ``bench.json`` gives the settings and ``summary.json``
(when written) the benchmark's optimum.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunDirError
from .html import esc, figure_svg, fmt, note, section, table

#: per-run curves drawn when present (hypervolume: a multi-objective bench)
CURVES = (("incumbent_test_accuracy", "incumbent test accuracy"), ("incumbent_reward", "incumbent reward"),
          ("hypervolume", "hypervolume"))
BUDGETS = (10, 25, 50, 100, 200, 300, 500, 1000)


def is_bench_dir(path: Path) -> bool:
    return (path / "bench.json").exists()


def load_bench(bench_dir: str | Path) -> dict[str, Any]:
    """Settings, runs per strategy (seed order) and summary of a bench directory."""
    path = Path(bench_dir)
    try:
        spec = json.loads((path / "bench.json").read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: not a bench directory (no bench.json)") from None
    except (OSError, ValueError) as exc:
        raise RunDirError(f"{path / 'bench.json'}: unreadable ({exc})") from None
    runs: dict[str, list[dict[str, Any]]] = {}
    for strategy in spec.get("strategies", []):
        rows = []
        for seed in spec.get("seeds", []):
            f = path / "runs" / strategy / f"seed_{seed}.json"
            if f.exists():
                try:
                    rows.append(json.loads(f.read_text()))
                except (OSError, ValueError) as exc:
                    raise RunDirError(f"{f}: unreadable ({exc})") from None
        runs[strategy] = rows
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"path": path, "spec": spec, "runs": runs, "summary": summary}


def _matrix(runs: list[dict[str, Any]], key: str) -> np.ndarray:
    rows = [r.get(key) or [] for r in runs]
    n = max((len(r) for r in rows), default=0)
    mat = np.full((len(rows), n), np.nan)
    for i, r in enumerate(rows):
        mat[i, : len(r)] = [np.nan if v is None else float(v) for v in r]
    return mat


def _stats(column: np.ndarray) -> tuple[float, float, float]:
    col = column[np.isfinite(column)]
    if not len(col):
        return math.nan, math.nan, math.nan
    return float(col.mean()), float(np.quantile(col, 0.25)), float(np.quantile(col, 0.75))


def _curve_plots(bench: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    optimum = (bench["summary"].get("optimum") or {})
    figs = []
    for key, label in CURVES:
        if not any(r.get(key) for runs in bench["runs"].values() for r in runs):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.9))
        for name, runs in bench["runs"].items():
            mat = _matrix(runs, key)
            if not mat.size:
                continue
            x = np.arange(1, mat.shape[1] + 1)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns: before a seed's first success
                mean = np.nanmean(mat, axis=0)
                q25, q75 = np.nanquantile(mat, 0.25, axis=0), np.nanquantile(mat, 0.75, axis=0)
            line = ax.plot(x, mean, lw=1.6, label=f"{name} ({len(runs)} seeds)")[0]
            ax.fill_between(x, q25, q75, alpha=0.18, color=line.get_color())
        ref = optimum.get("test_accuracy" if key == "incumbent_test_accuracy" else "reward")
        if ref is not None and key != "hypervolume":
            ax.axhline(ref, color="k", ls="--", lw=0.8, label="optimum")
        ax.set_xscale("log")
        ax.set_xlabel("evaluations")
        ax.set_ylabel(f"{label} (mean, IQR band)")
        ax.set_title(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
        figs.append(figure_svg(fig))
    why = note("Mean over seeds, with the band from the 25th to the 75th percentile. The incumbent is chosen by "
               "its reward (validation accuracy), so its test accuracy can fall when a seed finds an architecture "
               "that validates better but tests worse: a mean incumbent test curve can dip, the reward curve cannot.")
    return section("Curves", "<div class='row'>" + "".join(figs) + "</div>" + why, "curves")


def _budget_table(bench: dict[str, Any]) -> str:
    budget = int(bench["spec"].get("base", {}).get("budget") or 0)
    budgets = sorted({b for b in BUDGETS if b <= budget} | ({budget} if budget else set()))
    rows = []
    for name, runs in bench["runs"].items():
        mat = _matrix(runs, "incumbent_test_accuracy")
        cells = []
        for b in budgets:
            if b > mat.shape[1]:
                cells.append("-")
                continue
            mean, q25, q75 = _stats(mat[:, b - 1])
            cells.append(f"{fmt(mean, 2)} [{fmt(q25, 2)}, {fmt(q75, 2)}]")
        rows.append([name, len(runs), *cells])
    body = table(["strategy", "seeds", *(f"@{b}" for b in budgets)], rows, [False, True, *([True] * len(budgets))])
    return section("Incumbent test accuracy at each budget", body + note("mean [25th, 75th percentile] over seeds"),
                   "table")


def _to_optimum(bench: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    if not bench["summary"].get("optimum") and not any(r.get("samples_to_optimum") for rs in bench["runs"].values()
                                                         for r in rs):
        return ""
    rows, data, names = [], [], []
    for name, runs in bench["runs"].items():
        found = [r["samples_to_optimum"] for r in runs if r.get("samples_to_optimum") is not None]
        median = f"{np.median(found):.0f}" if found else "—"
        rows.append([name, f"{median} ({len(found)}/{len(runs)} found)",
                     "-" if not found else f"{min(found)}–{max(found)}"])
        data.append(found)
        names.append(name)
    body = table(["strategy", "evaluations to the optimum (median of the seeds that found it)", "range"], rows)
    if any(data):
        fig, ax = plt.subplots(figsize=(5.8, 0.6 + 0.55 * len(names)))
        for i, found in enumerate(data):
            if found:
                ax.boxplot([found], positions=[i], vert=False, widths=0.5)
                jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(found))
                ax.scatter(found, i + jitter, s=10, alpha=0.6)
        ax.set_yticks(range(len(names)), [f"{n} ({len(d)}/{len(bench['runs'][n])})" for n, d in zip(names, data)])
        ax.set_xlabel("evaluations to find the optimum (seeds that found it)")
        ax.grid(alpha=0.3, axis="x")
        body += figure_svg(fig)
    return section("Samples to the optimum", body, "optimum")


def _overhead(bench: dict[str, Any]) -> str:
    rows = []
    for name, runs in bench["runs"].items():
        ms = np.concatenate([np.asarray(r.get("overhead_ms") or [], dtype=float) for r in runs]) if runs else np.array([])
        if not ms.size:
            continue
        wall = [r.get("wall_s") for r in runs if r.get("wall_s") is not None]
        rows.append([name, float(np.median(ms)), float(ms.mean()), float(np.quantile(ms, 0.95)),
                     float(ms.sum() / 1000.0), float(np.mean(wall)) if wall else None,
                     float(np.mean([r.get("n_repeats", 0) for r in runs]))])
    body = table(["strategy", "median ms/query", "mean ms/query", "p95 ms/query", "total strategy s",
                  "mean wall s per run", "mean repeats"], rows, [False, *([True] * 6)])
    return section("Overhead of the strategies", body + note("time the strategy itself spends (ask + tell) per "
                                                               "evaluation, without the evaluations"), "overhead")


def _best_found(bench: dict[str, Any]) -> str:
    from ..factory import create_space
    from .search import diagram

    base = bench["spec"].get("base", {})
    space_cfg = base.get("space") or {}
    if not isinstance(space_cfg, dict):
        space_cfg = {"name": space_cfg}
    try:
        space = create_space(str(space_cfg.get("name")), **{k: v for k, v in space_cfg.items() if k != "name"})
    except Exception:  # an unknown space (a plug-in not installed here): the table without diagrams
        space = None
    cols = []
    for strategy, runs in bench["runs"].items():
        arches = [r["best_arch"] for r in runs if r.get("best_arch")]
        if not arches:
            continue
        common, count = max(((a, arches.count(a)) for a in set(arches)), key=lambda p: (p[1], p[0]))
        pic = diagram(space, common, "diagram small") if space is not None else ""
        cols.append(f"<div class='column'><h3>{esc(strategy)}</h3><p class='note'>best in {count} of {len(runs)} "
                    f"seeds</p><p class='arch'>{esc(common)}</p>{pic}</div>")
    if not cols:
        return ""
    return section("Most frequent answer per strategy", "<div class='row'>" + "".join(cols) + "</div>", "answers")


def bench_sections(bench_dir: str | Path) -> tuple[str, str]:
    """A bench directory's title line and report sections."""
    bench = load_bench(bench_dir)
    base = bench["spec"].get("base", {})
    space = base.get("space", {})
    space_name = space.get("name") if isinstance(space, dict) else space
    evaluator = base.get("evaluator", {})
    evaluator_name = evaluator.get("name") if isinstance(evaluator, dict) else evaluator
    done = sum(len(r) for r in bench["runs"].values())
    total = len(bench["spec"].get("strategies", [])) * len(bench["spec"].get("seeds", []))
    subtitle = (f"{space_name} ({evaluator_name}{', ' + Path(str(base['benchmark'])).name if base.get('benchmark') else ''}"
                f"), budget {base.get('budget')}, {len(bench['spec'].get('seeds', []))} seeds: {done} of {total} runs")
    rows = [("strategies", ", ".join(bench["spec"].get("strategies", []))), ("runs done", f"{done} of {total}"),
            ("budget", base.get("budget")), ("benchmark", base.get("benchmark"))]
    opt = bench["summary"].get("optimum")
    if opt:
        rows.append(("benchmark optimum", f"reward {fmt(opt.get('reward'))}, test {fmt(opt.get('test_accuracy'))}"))
    overview = section("Bench", table(["", ""], rows) + (
        f"<p class='note'>strategy settings: {esc(json.dumps(bench['spec'].get('strategy_args')))}</p>"
        if bench["spec"].get("strategy_args") else ""), "bench")
    if not done:
        return subtitle, overview + section("Runs", note("no run has finished yet"))
    body = overview + _curve_plots(bench) + _budget_table(bench) + _to_optimum(bench) + _overhead(bench) + \
        _best_found(bench)
    return subtitle, body
