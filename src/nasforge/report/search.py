"""The report of one search's run directory (``nasforge report RUN``), read-only.

It reads what the run directory holds (``config.yaml``, ``meta.json``, ``run.db`` opened read-only,
``result.json`` when the search has written it) and never writes into the record, so it works on a search
that is still running (``nasforge search --report``) and on a read-only copy.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import api
from ..arch import Architecture
from ..config import RunConfig
from ..errors import InvalidArchitecture, RunDirError
from ..registry import SPACES, STRATEGIES
from ..run.rundir import DB_FILE, META_FILE, derived_pick, read_result
from ..run.store import Trial
from ..spaces.base import SearchSpace
from .draw import render_svg
from .html import esc, figure_svg, fmt, image_data_uri, note, page, section, table

log = logging.getLogger(__name__)

#: how many of the best evaluations the report shows with their diagrams
TOP = 10


@dataclass
class SearchRun:
    """What a search's run directory holds, read once."""

    path: Path
    config: RunConfig
    space: SearchSpace
    trials: list[Trial]  # finished, in the order their results arrived
    result: dict[str, Any]
    meta: dict[str, Any]
    snapshots: list[tuple[int, Any]]
    attempts: list[dict[str, Any]]
    finished_at: dict[int, float] = field(default_factory=dict)  # trial id -> seconds since the first ask
    #: diagrams and model costs by architecture, kept by a live report between its rewrites
    cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return not self.result or not self.result.get("complete", False) and len(self.trials) < self.config.budget


def load_search(run_dir: str | Path, cache: dict[Any, Any] | None = None) -> SearchRun:
    """Read a search's run directory (a :class:`RunDirError` if it is none); ``cache`` keeps what was drawn and
    counted for the next call."""
    path = Path(run_dir)
    config, record, store = api.load_record(path)
    with store:
        snapshots = store.snapshots()
        attempts = store.attempts()
        # when each result arrived, for the scatter coloured by time (read, not part of the Trial record)
        rows = store.db.execute("SELECT id, asked_at, finished_at FROM trials").fetchall()
    start = min((a for _, a, _ in rows if a is not None), default=0.0)
    finished_at = {tid: f - start for tid, _, f in rows if f is not None}
    meta_path = path / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return SearchRun(path, config, record.space, record.trials, read_result(path), meta, snapshots, attempts,
                     finished_at, {} if cache is None else cache)


def run_best(run_dir: str | Path, space: SearchSpace) -> Architecture:
    """A run's answer: a one-shot search's derived pick, else the best evaluated architecture."""
    result = read_result(run_dir)
    pick = derived_pick(result.get("derived") or {}) or (result.get("best") or None)
    if pick:
        return space.parse(pick["arch"])
    _, record, store = api.load_record(run_dir)
    store.close()
    if record.best is None:
        raise RunDirError(f"{run_dir}: the run has no successful evaluation yet; give --arch")
    return record.best.arch


# ---------------------------------------------------------------------- pieces
def _plt() -> Any:
    import matplotlib.pyplot as plt

    return plt


def diagram(space: SearchSpace, arch: Architecture | str, css: str = "diagram") -> str:
    """The architecture's diagram as inline SVG (or why it cannot be drawn)."""
    try:
        if isinstance(arch, str):
            arch = space.parse(arch)
        return f"<div class='figure {css}'>{render_svg(space.graph(arch))}</div>"
    except (InvalidArchitecture, NotImplementedError) as exc:
        return note(f"no diagram: {exc}")


def _metric(t: Trial, name: str) -> float:
    value = (t.result.metrics if t.result is not None else {}).get(name)
    return math.nan if value is None else float(value)


def model_cost(run: SearchRun, arch: Architecture) -> tuple[float | None, float | None, str]:
    """Parameters and FLOPs of the architecture's network at the run's model size, and how they were counted."""
    key = ("cost", arch)
    if key not in run.cache:
        run.cache[key] = _model_cost(run, arch)
    return run.cache[key]


def _model_cost(run: SearchRun, arch: Architecture) -> tuple[float | None, float | None, str]:
    if not SPACES.get(run.space.name).capabilities.get("trainable"):
        return None, None, ""
    from ..ops.measure import count_flops, count_params
    from ..train.readers import dataset_shape

    known = dataset_shape(run.config.dataset) if run.config.dataset else None
    shape, classes = known or ((3, 32, 32), 10)
    model_args = dict(run.config.evaluator_args.get("model_args") or {})
    import torch

    try:
        # on the meta device: shapes only, no weights initialised and no arithmetic done (the same counts)
        with torch.device("meta"):
            model = run.space.build(arch, num_classes=classes, in_channels=shape[0], **model_args)
        return float(count_params(model)), float(count_flops(model, (1, *shape), device="meta")), \
            f"input {'x'.join(map(str, shape))}, {classes} classes" + (f", model {model_args}" if model_args else "")
    except Exception as exc:  # a report shows what it can; a network that cannot be built is noted
        log.warning("%s: cannot count the parameters of %s (%s)", run.path, arch, exc)
        return None, None, ""


# ---------------------------------------------------------------------- sections
def _overview(run: SearchRun) -> str:
    c, r = run.config, run.result
    ok = [t for t in run.trials if not t.outcome.failed]
    best = max(ok, key=lambda t: t.reward, default=None)
    rows = [("space", c.space), ("strategy", c.strategy), ("evaluator", c.evaluator), ("seed", c.seed),
            ("evaluations", f"{len(run.trials)} of {c.budget}" + (" (running)" if run.running else "")),
            ("failed", sum(t.outcome.failed for t in run.trials)), ("repeats (cached)", sum(t.cached for t in run.trials)),
            ("total cost", fmt(sum(t.outcome.cost for t in run.trials)))]
    if best is not None:
        rows += [("best reward", fmt(best.reward)), ("its test accuracy", fmt(best.outcome.test_accuracy))]
    if r.get("optimum"):
        rows += [("benchmark optimum", f"reward {fmt(r['optimum']['reward'])}, test {fmt(r['optimum']['test_accuracy'])}")]
    body = f"<div>{table(['', ''], rows)}</div>"
    pick = derived_pick(r.get("derived") or {}) if r.get("derived") else None
    shown = pick["arch"] if pick else (str(best.arch) if best is not None else None)
    if shown:
        what = "derived from the policy" if pick else "best evaluated"
        body += f"<div class='column'><h3>Answer ({what})</h3><p class='arch'>{esc(shown)}</p>" \
                f"{diagram(run.space, shown)}</div>"
    return section("What was found", f"<div class='row'>{body}</div>", "overview")


def _provenance(run: SearchRun) -> str:
    import yaml

    rows = [(k, v) for k, v in run.meta.items()]
    rows.append(("run directory", str(run.path.resolve())))
    body = table(["", ""], rows)
    body += "<pre>" + esc(yaml.safe_dump(run.config.to_yaml_dict(), sort_keys=False)) + "</pre>"
    return section("Configuration and provenance", body, "config")


def _curves(run: SearchRun) -> str:
    plt = _plt()
    trials = run.trials
    reward = np.array([t.reward for t in trials], dtype=float)
    test = np.array([_metric(t, "test_accuracy") for t in trials], dtype=float)
    inc_r, inc_t, best = [], [], -math.inf
    it = math.nan
    for r, a, t in zip(reward, test, trials):
        if not t.outcome.failed and math.isfinite(r) and r > best:
            best, it = r, a
        inc_r.append(best if math.isfinite(best) else math.nan)
        inc_t.append(it)
    cost = np.cumsum([t.outcome.cost for t in trials])
    x = np.arange(1, len(trials) + 1)
    figs = []
    # the first few incumbents (an untrained cell at 10%) would flatten the rest: the axes start at the
    # incumbent after 5% of the run, and a log scale of evaluations shows the early climb
    shown = np.array(inc_r + inc_t, dtype=float)[np.r_[len(x) // 20:len(x), len(x) + len(x) // 20:2 * len(x)]]
    shown = shown[np.isfinite(shown)]
    for xs, label in ((x, "evaluations"), (cost, "cumulative cost (evaluator units)")):
        fig, ax = plt.subplots(figsize=(5.4, 3.3))
        ax.step(xs, inc_r, where="post", label="incumbent reward", lw=1.6)
        if np.isfinite(test).any():
            ax.step(xs, inc_t, where="post", label="its test accuracy", lw=1.2, ls="--")
        if len(x) >= 20 and shown.size:
            pad = max(0.05 * float(shown.max() - shown.min()), 1e-3)
            ax.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)
        if label == "evaluations" and len(x) >= 20:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("reward / accuracy")
        ax.set_title(f"incumbent over {label.split(' (')[0]}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        figs.append(figure_svg(fig))
    text = note("The incumbent is the best reward so far (what the strategy maximises); the dashed line is that "
                "architecture's test accuracy, which can drop when a better-rewarded architecture tests worse.")
    return section("Incumbent", "<div class='row'>" + "".join(figs) + "</div>" + text, "incumbent")


def _scatter(run: SearchRun) -> str:
    plt = _plt()
    trials = [t for t in run.trials if not t.outcome.failed and math.isfinite(t.reward)]
    if not trials:
        return section("Every evaluation", note("no successful evaluation yet"), "evaluations")
    order = {t.id: k for k, t in enumerate(run.trials, start=1)}
    x = [order[t.id] for t in trials]
    when = [run.finished_at.get(t.id, math.nan) for t in trials]
    timed = all(math.isfinite(w) for w in when)
    colour = when if timed else x
    rewards = np.array([t.reward for t in trials])
    fig, ax = plt.subplots(figsize=(7, 3.8))
    points = ax.scatter(x, rewards, c=colour, cmap="viridis", s=14)
    low = float(np.quantile(rewards, 0.02)) if len(rewards) >= 50 else float(rewards.min())
    below = rewards < low
    if below.any():  # a few outliers (untrained cells) would squash the rest: marked on the bottom edge
        pad = 0.05 * (float(rewards.max()) - low) or 1e-3
        ax.set_ylim(low - pad, float(rewards.max()) + pad)
        ax.scatter(np.asarray(x)[below], np.full(int(below.sum()), low - pad), marker="v", c="#b2182b", s=18,
                   clip_on=False, label=f"{int(below.sum())} below {low:.3g}")
        ax.legend(fontsize=8, loc="lower right")
    fig.colorbar(points, ax=ax, label="seconds since the start" if timed else "evaluation")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("reward")
    ax.set_title(f"{len(trials)} successful evaluations")
    ax.grid(alpha=0.3)
    return section("Every evaluation", figure_svg(fig), "evaluations")


def _top(run: SearchRun) -> str:
    seen: set[Any] = set()
    ranked = []
    for t in sorted((t for t in run.trials if not t.outcome.failed and math.isfinite(t.reward)),
                    key=lambda t: -t.reward):
        key = run.space.key(t.arch)
        if key not in seen:
            seen.add(key)
            ranked.append(t)
        if len(ranked) == TOP:
            break
    if not ranked:
        return ""
    names = sorted({k for t in ranked for k, v in t.outcome.metrics.items()
                    if isinstance(v, (int, float)) and k not in ("test_accuracy", "params", "flops")})[:4]
    rows, how = [], ""
    for rank, t in enumerate(ranked, start=1):
        params, flops = _metric(t, "params"), _metric(t, "flops")
        if math.isnan(params) or math.isnan(flops):
            p, f, how = model_cost(run, t.arch)
            params = params if not math.isnan(params) else (math.nan if p is None else p)
            flops = flops if not math.isnan(flops) else (math.nan if f is None else f)
        key = ("diagram", t.arch)
        if key not in run.cache:
            run.cache[key] = diagram(run.space, t.arch, "diagram small")
        cell = f"<div class='arch'>{esc(t.arch)}</div>" + run.cache[key]
        rows.append([rank, cell, t.reward, _metric(t, "test_accuracy"), *(_metric(t, n) for n in names),
                     params, flops])
    header = ["#", "architecture", "reward", "test accuracy", *names, "parameters", "FLOPs"]
    numeric = [True, False, *([True] * (len(header) - 2))]
    raw = [False, True, *([False] * (len(header) - 2))]
    body = table(header, rows, numeric, raw)
    if how:
        body += note(f"Parameters and FLOPs counted on the built network ({how}) where the evaluator did not record them.")
    return section(f"Top {len(ranked)}", body, "top")


def _failures(run: SearchRun) -> str:
    failed = [t for t in run.trials if t.outcome.failed]
    if not failed and not run.attempts:
        return section("Failures", note("none"), "failures")
    body = ""
    if failed:
        body += table(["trial", "architecture", "error"],
                      [(t.id, str(t.arch), t.outcome.error or "") for t in failed[:50]])
        if len(failed) > 50:
            body += note(f"... and {len(failed) - 50} more")
    if run.attempts:
        body += "<h3>Retried attempts</h3>" + table(
            ["trial", "kind", "worker", "error"], [(a["trial_id"], a["kind"], a["worker"], a["error"]) for a in run.attempts[:50]])
    return section(f"Failures ({len(failed)})", body, "failures")


def _policy_snapshots(run: SearchRun) -> list[tuple[int, dict[str, dict[str, Sequence[float]]]]]:
    """The snapshots that are policies (``{group: {decision: probabilities}}``)."""
    out = []
    for n, snap in run.snapshots:
        if isinstance(snap, dict) and snap and all(isinstance(v, dict) for v in snap.values()) and \
                all(isinstance(p, (list, tuple)) for v in snap.values() for p in v.values()):
            out.append((n, snap))
    return out


def _entropy_plot(run: SearchRun, snaps: list[tuple[int, dict[str, dict[str, Sequence[float]]]]]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for group in sorted({g for _, s in snaps for g in s}):
        xs, ys = [], []
        for n, s in snaps:
            probs = [np.asarray(p, dtype=float) for p in s.get(group, {}).values()]
            if probs:
                ent = [float(-(p[p > 0] * np.log(p[p > 0])).sum() / math.log(len(p))) if len(p) > 1 else 0.0
                       for p in probs]
                xs.append(n)
                ys.append(float(np.mean(ent)))
        if xs:
            ax.plot(xs, ys, marker="o", ms=3, label=f"{group} decisions")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("mean entropy / log(options)")
    ax.set_title("policy entropy (1 = uniform)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_svg(fig)


def _bo_view(run: SearchRun) -> str:
    """BO's Gaussian process, refit as the search went, predicting each next batch of rewards before it was seen."""
    from scipy.stats import spearmanr

    from ..strategies.bo import BayesianOptimisation

    strategy = api.create_strategy(run.config.strategy, run.space, run.config.seed, **run.config.strategy_args)
    assert isinstance(strategy, BayesianOptimisation), "the BO view is drawn for bo's runs"
    cfg = strategy.config
    ok = [t for t in run.trials if not t.outcome.failed and math.isfinite(t.reward)]
    X = strategy.encode([t.arch for t in ok])
    y = np.array([t.reward for t in ok], dtype=float)
    step = max(int(cfg.refit_every), -(-(len(ok) - cfg.initial) // 20))  # at most 20 fits
    gp = strategy.new_gp()  # the search's model: its kernel terms and inputs
    predicted, observed = [], []
    for k in range(int(cfg.initial), len(ok) - 1, step):
        mu, sd = float(y[:k].mean()), float(y[:k].std()) or 1.0
        gp.fit(X[:k], (y[:k] - mu) / sd)
        mean, _ = gp.predict((y[:k] - mu) / sd, X[k : k + step])
        predicted += list(mu + sd * mean)
        observed += list(y[k : k + step])
    if len(predicted) < 3:
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 3.8))
    ax.scatter(predicted, observed, s=10, c=np.arange(len(observed)), cmap="viridis")
    lo, hi = min(predicted + observed), max(predicted + observed)
    ax.plot([lo, hi], [lo, hi], c="0.5", lw=0.8, ls="--")
    rho = spearmanr(predicted, observed).statistic
    ax.set_xlabel("GP prediction before the evaluation")
    ax.set_ylabel("observed reward")
    ax.set_title(f"BO: predicted vs observed (Spearman {rho:.2f})")
    ax.grid(alpha=0.3)
    return figure_svg(fig, f"the GP ({cfg.kernel}, ARD {cfg.ard}) refit every {step} observations on the rewards "
                           "so far, predicting the next ones (standardised targets)")


def _strategy_views(run: SearchRun) -> str:
    from .lanas import plot_tree
    from .policy import plot_policy_heatmaps, plot_sampling_histograms

    parts = []
    snaps = _policy_snapshots(run)
    with tempfile.TemporaryDirectory() as tmp:
        if snaps:
            parts.append(_entropy_plot(run, snaps))
            for path in plot_policy_heatmaps(run.space, snaps, tmp):
                parts.append(image_data_uri(path, f"{path.stem.replace('_', ' ')} over time", "heatmap"))
        if snaps and run.space.decisions and len(run.space.decisions) <= 40:  # EDNAS Fig. 5 beside its policies
            for path in plot_sampling_histograms(run.space, run.trials, tmp):
                parts.append(image_data_uri(path, "options chosen by the evaluations (cumulative)", "histogram"))
        if STRATEGIES.canonical(run.config.strategy) == "bo" and run.trials:
            try:
                parts.append(_bo_view(run))
            except Exception as exc:  # a view that cannot be computed is named, the rest of the page stays
                parts.append(note(f"BO predictions not available: {exc}"))
        if STRATEGIES.canonical(run.config.strategy) == "lanas" and run.trials:
            try:
                from ..cli.lanas_tree import tree_description

                parts.append(image_data_uri(plot_tree(tree_description(str(run.path)), Path(tmp) / "tree.png"),
                                            "LaNAS tree", "lanas-tree"))
            except Exception as exc:  # the tree needs the saved strategy state; say why it is missing
                parts.append(note(f"LaNAS tree not available: {exc}"))
    if not parts:
        return ""
    return section(f"Strategy: {run.config.strategy}", "<div class='row'>" + "".join(parts) + "</div>", "strategy")


def _one_shot(run: SearchRun) -> str:
    plt = _plt()
    body = []
    loss = [(k, _metric(t, "train_loss")) for k, t in enumerate(run.trials, start=1)]
    loss = [(k, v) for k, v in loss if math.isfinite(v)]
    if loss:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        xs, ys = zip(*loss)
        ax.plot(xs, ys, lw=0.8, alpha=0.5, label="per step")
        w = max(1, len(ys) // 20)
        if len(ys) > w:
            smooth = np.convolve(ys, np.ones(w) / w, mode="valid")
            ax.plot(xs[w - 1:], smooth, lw=1.8, label=f"mean of {w}")
        ax.set_xlabel("child step")
        ax.set_ylabel("training loss")
        ax.set_title("super-network training")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        body.append(figure_svg(fig))
    derived = run.result.get("derived") or {}
    for key, label in (("most_likely", "the policy's most likely"), ("sampled_best", "best sampled from the policy"),
                       ("perturbed", "perturbation-based selection"), ("retrained_best", "best after retraining")):
        if key in derived:
            body.append(f"<div class='column'><h3>{esc(label)}</h3><p class='arch'>{esc(derived[key]['arch'])}</p>"
                        f"<p class='note'>score {fmt(derived[key].get('score'))}</p>"
                        f"{diagram(run.space, derived[key]['arch'])}</div>")
    cands = [c for c in (derived.get("retrained") or {}).get("candidates", []) if c.get("retrained") is not None]
    if len(cands) >= 2:
        from scipy.stats import kendalltau

        fig, ax = plt.subplots(figsize=(4.6, 3.6))
        score = [c["score"] for c in cands]
        retrained = [c["retrained"] for c in cands]
        ax.scatter(score, retrained)
        tau = kendalltau(score, retrained).statistic
        ax.set_xlabel("shared-weights score")
        ax.set_ylabel("validation after retraining")
        ax.set_title(f"ranking vs retraining (Kendall tau {tau:.2f})")
        ax.grid(alpha=0.3)
        body.append(figure_svg(fig))
    if not body:
        return ""
    return section("One-shot search", "<div class='row'>" + "".join(body) + "</div>", "oneshot")


def _pareto(run: SearchRun) -> str:
    front = run.result.get("pareto_front")
    if not front:
        return ""
    plt = _plt()
    rows = front if isinstance(front, list) else front.get("points", []) if isinstance(front, dict) else []
    rows = [r for r in rows if isinstance(r, dict)]
    if not rows:
        return ""
    keys = [k for k in rows[0] if isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    body = ""
    if len(keys) >= 2:
        a, b = keys[0], keys[1]
        fig, ax = plt.subplots(figsize=(5.4, 3.8))
        everything = [(t.outcome.metrics.get(a, t.reward if a == "reward" else None),
                       t.outcome.metrics.get(b, t.reward if b == "reward" else None)) for t in run.trials]
        everything = [(x, y) for x, y in everything if isinstance(x, (int, float)) and isinstance(y, (int, float))]
        if everything:
            ax.scatter(*zip(*everything), s=8, c="0.7", label="evaluations")
        pts = sorted((float(r[a]), float(r[b])) for r in rows)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", c="#d6604d", label="Pareto front")
        ax.set_xlabel(a)
        ax.set_ylabel(b)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        body += figure_svg(fig)
    cols = ["arch", *keys] if "arch" in rows[0] else keys
    body += table(cols, [[r.get(c) for c in cols] for r in rows], [c != "arch" for c in cols])
    return section(f"Pareto front ({len(rows)} architectures)", body, "pareto")


def _sections(run: SearchRun) -> tuple[str, str]:
    sections = [_overview(run)]
    if run.trials:
        sections += [_curves(run), _scatter(run), _pareto(run), _top(run), _strategy_views(run), _one_shot(run)]
    else:
        sections.append(section("Evaluations", note("no finished evaluation yet")))
    sections += [_failures(run), _provenance(run)]
    c = run.config
    state = "running" if run.running else "finished"
    subtitle = f"{c.strategy} on {c.space} ({c.evaluator}), seed {c.seed}: {len(run.trials)} of {c.budget} evaluations, {state}"
    return subtitle, "".join(s for s in sections if s)


def search_sections(run_dir: str | Path) -> tuple[str, str]:
    """A search's title line and report sections (for a page of several directories)."""
    return _sections(load_search(run_dir))


def search_report(run_dir: str | Path, live_seconds: int | None = None, cache: dict[Any, Any] | None = None) -> str:
    """The HTML page of a search's run directory; while the search runs, the page reloads every ``live_seconds``."""
    run = load_search(run_dir, cache)
    subtitle, body = _sections(run)
    return page(f"nasforge search: {run.path.name}", f"{subtitle}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}",
                body, live_seconds if run.running else None)


def is_search_dir(path: Path) -> bool:
    return (path / DB_FILE).exists() or (path / "config.yaml").exists()
