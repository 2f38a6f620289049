"""Policy plots in the style of EDNAS (Lee, Kim & Han) Figures 4 and 5.

* Heatmaps (Figure 4): one per decision group, one panel per snapshot time; rows are decisions,
  columns their options, each cell the softmax probability, coloured on one scale with the number it
  shows; each row's label says the uniform probability of that decision (1 / its option count), since
  decisions with different option counts start from different values.
* Cumulative sampling histograms (Figure 5): for each decision, how often each option was chosen
  by the run's evaluations, stacked by period so that each bar top is the running total.

Snapshots are what the search loop stored from ``strategy.observe()``:
``(n_done, {"structure": {decision: probabilities}, "operation": {...}})``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from ..api import load_record
from ..errors import RunDirError
from ..run.rundir import read_result
from ..run.store import Trial
from ..spaces.base import Decision, SearchSpace

log = logging.getLogger(__name__)

Snapshot = tuple[int, dict[str, dict[str, Sequence[float]]]]


def pick_evenly(items: Sequence[Any], k: int) -> list[Any]:
    """At most ``k`` items spread evenly, always with the first and the last."""
    if len(items) <= k:
        return list(items)
    idx = np.unique(np.round(np.linspace(0, len(items) - 1, k)).astype(int))
    return [items[i] for i in idx]


def _shared_labels(decisions: Sequence[Decision]) -> tuple[str, ...] | None:
    """Column labels, if every decision's option labels start the longest list of them (NB201's operations)."""
    widest = max(decisions, key=lambda d: d.n_choices)
    labels = tuple(widest.label(i) for i in range(widest.n_choices))
    same = all(tuple(d.label(i) for i in range(d.n_choices)) == labels[: d.n_choices] for d in decisions)
    return labels if same else None


def _matrix(decisions: Sequence[Decision], probs: dict[str, Sequence[float]]) -> np.ndarray:
    width = max(d.n_choices for d in decisions)
    out = np.full((len(decisions), width), np.nan)
    for r, d in enumerate(decisions):
        p = probs.get(d.name)
        if p is not None:
            out[r, : len(p)] = p
    return out


def _heat_panel(ax: plt.Axes, decisions: Sequence[Decision], values: np.ndarray, shared: tuple[str, ...] | None,
                norm: Normalize, title: str) -> Any:
    """Cells coloured and labelled by the same number, the option's probability."""
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", norm=norm, aspect="auto")
    ax.set_facecolor("#eeeeee")
    small = 7 if shared else 6
    for r, d in enumerate(decisions):
        for c in range(d.n_choices):
            text = f"{values[r, c]:.2f}" if shared else f"{d.label(c)}\n{values[r, c]:.2f}"
            dark = norm(values[r, c]) < 0.55  # white text on viridis' dark half
            ax.text(c, r, text, ha="center", va="center", fontsize=small, color="white" if dark else "black")
    ax.set_yticks(range(len(decisions)), [f"{d.name} (uniform {1 / d.n_choices:.2f})" for d in decisions],
                  fontsize=8)
    if shared:
        ax.set_xticks(range(len(shared)), shared, rotation=35, ha="right", fontsize=8)
        ax.set_xlabel("option", fontsize=8)
    else:
        ax.set_xticks(range(values.shape[1]), [f"option {c}" for c in range(values.shape[1])], fontsize=8)
    ax.set_title(title, fontsize=10)
    return image


def plot_policy_heatmaps(space: SearchSpace, snapshots: Sequence[Snapshot], out_dir: str | Path,
                         max_panels: int = 4) -> list[Path]:
    """One heatmap figure per non-empty decision group, a panel per chosen snapshot; returns the files.

    Colour and number of a cell are both the option's probability, on one scale from 0 to the largest shown; the
    row labels say what uniform sampling would give."""
    out_dir = Path(out_dir)
    shown = pick_evenly(list(snapshots), max_panels)
    written = []
    for group, indices in space.groups().items():
        decisions = [space.decisions[i] for i in indices if any(space.decisions[i].name in s.get(group, {})
                                                                 for _, s in shown)]
        if not decisions:
            continue
        shared = _shared_labels(decisions)
        mats = [_matrix(decisions, snap.get(group, {})) for _, snap in shown]
        norm = Normalize(vmin=0.0, vmax=max(max(float(np.nanmax(m)) for m in mats), 1e-6))
        width = max(d.n_choices for d in decisions)
        fig, axes = plt.subplots(1, len(shown), squeeze=False, sharey=True, layout="constrained",
                                 figsize=(3.0 + len(shown) * (0.8 * width + 0.6), 1.6 + 0.38 * len(decisions)))
        image = None
        for ax, (n_done, _), mat in zip(axes[0], shown, mats):
            image = _heat_panel(ax, decisions, mat, shared, norm, f"after {n_done} evaluations")
        assert image is not None  # at least one snapshot is shown
        bar = fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, pad=0.01)
        bar.set_label("probability", fontsize=8)
        fig.suptitle(f"{space.name}: {group} policy (probability of each option)", fontsize=11)
        path = out_dir / f"policy_{group}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def sample_counts(space: SearchSpace, trials: Sequence[Trial], periods: Sequence[int]) -> list[np.ndarray]:
    """Per decision, a (len(periods), n_choices) array: times each option was chosen (while active) in
    the evaluations up to each period end, minus those of the period before (so the rows stack)."""
    counts = [np.zeros((len(periods), d.n_choices), dtype=int) for d in space.decisions]
    ends = np.asarray(periods)
    for k, t in enumerate(trials):
        row = int(np.searchsorted(ends, k + 1))
        for i, (c, on) in enumerate(zip(t.arch.choices, space.active(t.arch.choices))):
            if on:
                counts[i][row, c] += 1
    return counts


def _stacked_bars(ax: plt.Axes, d: Decision, counts: np.ndarray, periods: Sequence[int], colours: np.ndarray) -> None:
    """One decision's option counts, one stacked segment per period (bar tops are running totals)."""
    bottom = np.zeros(d.n_choices)
    for p, (end, colour) in enumerate(zip(periods, colours)):
        start = 1 if p == 0 else periods[p - 1] + 1
        ax.bar(range(d.n_choices), counts[p], bottom=bottom, color=colour, label=f"evaluations {start}-{end}")
        bottom += counts[p]
    ax.set_title(d.name, fontsize=9)
    labels = [d.label(c) for c in range(d.n_choices)]
    long = max(len(s) for s in labels) > 3
    ax.set_xticks(range(d.n_choices), labels, rotation=40 if long else 0, ha="right" if long else "center", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("option", fontsize=7)
    ax.set_ylabel("times sampled", fontsize=7)


def plot_sampling_histograms(space: SearchSpace, trials: Sequence[Trial], out_dir: str | Path,
                             n_periods: int = 4) -> list[Path]:
    """Cumulative histograms of the sampled options per decision group; returns the files written."""
    out_dir = Path(out_dir)
    n = len(trials)
    periods = sorted({math.ceil(n * (k + 1) / n_periods) for k in range(min(n_periods, n))})
    counts = sample_counts(space, trials, periods)
    colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.85, len(periods)))
    written = []
    for group, indices in space.groups().items():
        if not indices:
            continue
        cols = min(4, len(indices))
        rows = math.ceil(len(indices) / cols)
        fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(3.2 * cols, 2.6 * rows + 0.6))
        for ax, i in zip(axes.flat, indices):
            _stacked_bars(ax, space.decisions[i], counts[i], periods, colours)
        for ax in list(axes.flat)[len(indices):]:
            ax.set_visible(False)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.suptitle(f"{space.name}: sampled {group} options ({n} evaluations)", fontsize=11, x=0.02, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        fig.legend(handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   title="cumulative", title_fontsize=8)
        path = out_dir / f"samples_{group}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def plot_perturbation(space: SearchSpace, perturbed: dict[str, Any], out_dir: str | Path) -> Path | None:
    """The operation steps of a perturbation-based selection (``derived.perturbed``) as a heatmap: a row per edge
    in the order decided, a cell per operation coloured and labelled by the accuracy lost when it is removed from
    the mixture, the kept operation framed. None when the derivation has no operation step."""
    by_name = {d.name: d for d in space.decisions}
    steps = [s for s in perturbed.get("steps", []) if {"base", "removed"} <= set(s) and s["decision"] in by_name]
    if not steps:
        return None
    decisions = [by_name[s["decision"]] for s in steps]
    width = max(d.n_choices for d in decisions)
    drops = np.full((len(steps), width), np.nan)
    for r, s in enumerate(steps):
        drops[r, : len(s["removed"])] = [s["base"] - v for v in s["removed"]]
    span = max(float(np.nanmax(np.abs(drops))), 1e-6)
    fig, ax = plt.subplots(layout="constrained", figsize=(2.5 + 1.1 * width, 1.4 + 0.38 * len(steps)))
    image = ax.imshow(np.ma.masked_invalid(drops), cmap="RdBu_r", vmin=-span, vmax=span, aspect="auto")
    ink = np.where(np.abs(drops) > 0.6 * span, "white", "black")  # white on the scale's dark ends
    for r, (s, d) in enumerate(zip(steps, decisions)):
        for c in range(d.n_choices):
            ax.text(c, r, f"{d.label(c)}\n{drops[r, c]:+.2f}", ha="center", va="center", fontsize=6, color=ink[r, c])
        kept = [d.label(c) for c in range(d.n_choices)].index(s["kept"])
        # inset, so that the frames of kept options in adjacent rows or columns never share a border
        ax.add_patch(plt.Rectangle((kept - 0.44, r - 0.4), 0.88, 0.8, fill=False, lw=2.0, ec=ink[r, kept]))
    ax.set_yticks(range(len(steps)), [f"{i + 1}. {d.name} (before: {s['base']:.1f})"
                                      for i, (s, d) in enumerate(zip(steps, decisions))], fontsize=8)
    ax.set_xticks([])
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.01).set_label("accuracy lost when removed (points)", fontsize=8)
    ax.set_title(f"perturbation-based selection (framed: kept)\n{perturbed['arch']}", fontsize=7)
    path = Path(out_dir) / "perturbation.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def policy_report(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Heatmaps of the stored policy snapshots and sampling histograms of a run directory, and the steps of its
    perturbation-based selection if its derivation made one."""
    _, record, store = load_record(run_dir)
    with store:
        snapshots = store.snapshots()
    if not record.trials:
        raise RunDirError(f"{run_dir}: the run has no finished evaluations yet")
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "policy"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if snapshots:
        written += plot_policy_heatmaps(record.space, snapshots, out)
    if not written:  # rs, re, ...: no snapshots; nases, lanas, alphax, nao: snapshots of something else
        what = f"its snapshots record {', '.join(sorted(snapshots[-1][1]))}" if snapshots else "no policy snapshots"
        log.warning("%s: no option probabilities to draw (%s); only histograms", run_dir, what)
    written += plot_sampling_histograms(record.space, record.trials, out)
    perturbed = (read_result(run_dir).get("derived") or {}).get("perturbed")
    if perturbed and (path := plot_perturbation(record.space, perturbed, out)) is not None:
        written.append(path)
    return written
