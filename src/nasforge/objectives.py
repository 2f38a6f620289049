"""Objectives and constraints beyond accuracy: parsing, Pareto ranking, hypervolume, MnasNet's reward.

A search optimises ``accuracy`` (the evaluator's reward) by default. ``--objective accuracy,-params`` names
several objectives: a leading ``-`` minimises a cost (``params``, ``flops``, ``latency_ms``...), anything
else is maximised. ``--constraint params<=1.5e6`` bounds a metric; an architecture outside every bound is
*infeasible*: an evaluator skips it before training when the metric can be computed from the architecture
alone (parameters, FLOPs, latency of the built network), and it is recorded as a failed, infeasible result.

Everything here works in *maximisation form*: an objective vector holds ``+value`` for maximised and
``-value`` for minimised objectives, so that larger is better in every coordinate.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigError
from .result import Result

#: objective names that mean the evaluator's reward (what single-objective searches maximise)
REWARD_NAMES = ("accuracy", "reward")
#: metrics that can be computed from the built network without training (see :mod:`nasforge.ops.measure`)
STATIC_METRICS = ("params", "flops")
LATENCY_METRICS = ("latency_ms", "latency_ms_batch")
COST_METRICS = (*STATIC_METRICS, *LATENCY_METRICS)
#: metrics whose larger values are better (the others are costs: they can only be minimised)
MAXIMISED = (*REWARD_NAMES, "val_accuracy", "train_accuracy")
#: what objectives and constraints may name
KNOWN = (*REWARD_NAMES, *COST_METRICS, "val_accuracy", "train_accuracy")
#: never an objective or a constraint: the test split must not steer a search
HIDDEN = ("test_accuracy",)
#: the failure message prefix of an infeasible architecture (``Result.metrics["infeasible"]`` is True)
INFEASIBLE = "infeasible"

#: a point or reference point of objective values
Vector = Sequence[float] | np.ndarray

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Objective:
    """One objective: a metric name (``reward`` for the evaluator's reward) and its direction."""

    metric: str
    maximise: bool = True

    def __str__(self) -> str:
        name = "accuracy" if self.metric == "reward" else self.metric
        return name if self.maximise else f"-{name}"

    def value(self, result: Result) -> float | None:
        """The objective's value in maximisation form, or None when ``result`` lacks it."""
        raw = result.reward if self.metric == "reward" else result.metrics.get(self.metric)
        try:
            x = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if not math.isfinite(x):
            return None
        return x if self.maximise else -x


def _check_metric(name: str, flag: str) -> None:
    if not _NAME.match(name):
        raise ConfigError(f"{flag}: {name!r} is not a metric name (for example accuracy, params, flops, latency_ms)")
    if name in HIDDEN:
        raise ConfigError(f"{flag}: {name!r} is the held-out test metric; a search may not optimise or filter on it")
    if name not in KNOWN:
        raise ConfigError(f"{flag}: unknown metric {name!r} (known: {', '.join(KNOWN)})")


def parse_objectives(items: Sequence[str] | str, flag: str = "--objective") -> list[Objective]:
    """Objectives from ``"accuracy,-params"`` (or a list of such strings); an empty input means none.

    A leading ``-`` minimises; costs (``params``, ``flops``, ``latency_ms``...) must be minimised and
    accuracies maximised, so a missing or wrong sign is an error rather than a search for the largest network.
    """
    parts = [items] if isinstance(items, str) else list(items)
    names = [p.strip() for item in parts for p in str(item).split(",")]
    if any(not n for n in names) and len(names) > 1:
        raise ConfigError(f"{flag}: empty objective in {','.join(parts)!r} (write e.g. accuracy,-params)")
    out: list[Objective] = []
    for text in (n for n in names if n):
        sign, name = (text[0], text[1:].strip()) if text[0] in "+-" else ("", text)
        _check_metric(name, flag)
        metric = "reward" if name in REWARD_NAMES else name
        maximise = sign != "-"
        if metric in COST_METRICS and maximise:
            raise ConfigError(f"{flag}: {name!r} is a cost and can only be minimised; write -{name}")
        if metric in MAXIMISED and not maximise:
            raise ConfigError(f"{flag}: {name!r} can only be maximised; write {name}")
        if any(o.metric == metric for o in out):
            raise ConfigError(f"{flag}: {name!r} is named twice")
        out.append(Objective(metric, maximise))
    return out


@dataclass(frozen=True)
class Constraint:
    """A bound on one metric: ``params <= 1.5e6``."""

    metric: str
    op: str
    bound: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def violation(self, value: float) -> float:
        """How far ``value`` is outside the bound, relative to it (0 when satisfied)."""
        ok = {"<=": value <= self.bound, "<": value < self.bound, ">=": value >= self.bound,
              ">": value > self.bound}[self.op]
        if ok:
            return 0.0
        return abs(value - self.bound) / max(abs(self.bound), 1e-12) + 1e-12


def parse_constraint(text: str, flag: str = "--constraint") -> Constraint:
    """A constraint from ``"params<=1.5e6"``; anything else is an error naming ``flag`` and the text."""
    m = _CONSTRAINT.match(str(text))
    if not m:
        raise ConfigError(f"{flag}: {text!r} is not METRIC<=VALUE or METRIC>=VALUE (for example params<=1.5e6, "
                          "latency_ms<=5)")
    name, op, raw = m.groups()
    _check_metric(name, flag)
    try:
        bound = float(raw)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(bound):
        raise ConfigError(f"{flag}: {text!r}: the bound must be a finite number")
    return Constraint("reward" if name in REWARD_NAMES else name, op, bound)


def parse_constraints(items: Iterable[str], flag: str = "--constraint") -> list[Constraint]:
    return [parse_constraint(t, flag) for t in items]


def violations(metrics: Mapping[str, Any], constraints: Sequence[Constraint]) -> list[str]:
    """The constraints ``metrics`` break, as ``"params 2.1e+06 > 1.5e+06"`` texts (constraints on metrics
    that ``metrics`` lacks are not judged)."""
    out = []
    for c in constraints:
        value = metrics.get(c.metric)
        if value is None:
            continue
        if c.violation(float(value)) > 0:
            out.append(f"{c.metric} {float(value):g} breaks {c}")
    return out


def is_infeasible(result: Result) -> bool:
    return bool(result.metrics.get(INFEASIBLE))


def needed_metrics(objectives: Sequence[Objective], constraints: Sequence[Constraint]) -> set[str]:
    """The metrics a run's objectives and constraints name (the reward excluded)."""
    return {o.metric for o in objectives if o.metric != "reward"} | {c.metric for c in constraints}


# ---------------------------------------------------------------------- measurement settings
@dataclass
class MeasureConfig:
    """What evaluators measure besides their reward (``measure:`` in a run config).

    ``metrics`` names costs to report for every architecture (``params``, ``flops``, ``latency_ms``,
    ``latency_ms_batch``) besides those the run's objectives and constraints name. Latency is measured only
    when named: it runs the network, which a table look-up does not. ``latency_ms`` is the median over
    ``repeats`` timed forward passes of one image after ``warmup`` untimed ones, on the evaluation device;
    ``latency_ms_batch`` the same for a batch of ``batch`` images. ``clock: cpu`` times the process's CPU time
    instead of the wall clock (see :func:`nasforge.ops.measure.measure_latency`): on a shared machine it is what a
    pass would take alone.
    """

    metrics: list[str] = field(default_factory=list)
    batch: int = 32
    warmup: int = 3
    repeats: int = 10
    clock: str = "wall"  # wall | cpu

    def __post_init__(self) -> None:
        if self.batch < 1 or self.warmup < 0 or self.repeats < 1:
            raise ConfigError(f"measure: need batch >= 1, warmup >= 0 and repeats >= 1, got batch={self.batch}, "
                              f"warmup={self.warmup}, repeats={self.repeats}")
        if self.clock not in ("wall", "cpu"):
            raise ConfigError(f"measure.clock: must be wall or cpu, got {self.clock!r}")
        unknown = [m for m in self.metrics if m not in COST_METRICS]
        if unknown:
            raise ConfigError(f"measure.metrics: {unknown[0]!r} is not a measurable cost "
                              f"(known: {', '.join(COST_METRICS)})")


# ---------------------------------------------------------------------- Pareto ranking
def dominates(a: Vector, b: Vector) -> bool:
    """Whether ``a`` Pareto-dominates ``b`` (maximisation form)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def nondominated_sort(points: np.ndarray | Sequence[Sequence[float]]) -> list[list[int]]:
    """Fronts of ``points`` (n x m, maximisation form), best first (Deb et al. 2002's fast sort)."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    n = len(p)
    if n == 0:
        return []
    ge = np.all(p[:, None, :] >= p[None, :, :], axis=2)
    gt = np.any(p[:, None, :] > p[None, :, :], axis=2)
    dom = ge & gt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)  # how many dominate j
    fronts: list[list[int]] = []
    current = [int(i) for i in np.flatnonzero(count == 0)]
    while current:
        fronts.append(current)
        count = count - dom[current].sum(axis=0)
        count[current] = -1
        current = [int(i) for i in np.flatnonzero(count == 0)]
    return fronts


def crowding_distance(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its front (boundary points: infinity)."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    n, m = p.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(p[:, k], kind="stable")
        lo, hi = p[order[0], k], p[order[-1], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if hi > lo:
            dist[order[1:-1]] += (p[order[2:], k] - p[order[:-2], k]) / (hi - lo)
    return dist


def pareto_indices(points: np.ndarray | Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points (duplicates all kept)."""
    fronts = nondominated_sort(points)
    return sorted(fronts[0]) if fronts else []


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], ref: Vector) -> float:
    """Volume dominated by ``points`` and bounded below by ``ref`` (maximisation form).

    Points not strictly better than ``ref`` in every coordinate add nothing. Exact: a sweep in two
    dimensions, slicing along the last coordinate above that (fine for the few objectives of a search).
    """
    r = np.asarray(ref, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64).reshape(-1, len(r))
    p = p[np.all(p > r, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[pareto_indices(p)]
    if len(r) == 1:
        return float(p[:, 0].max() - r[0])
    if len(r) == 2:
        order = np.argsort(-p[:, 0], kind="stable")
        total, best_y = 0.0, r[1]
        for x, y in p[order]:
            if y > best_y:
                total += (x - r[0]) * (y - best_y)
                best_y = y
        return float(total)
    order = np.argsort(-p[:, -1], kind="stable")
    p = p[order]
    total = 0.0
    for i in range(len(p)):
        lower = p[i + 1, -1] if i + 1 < len(p) else r[-1]
        height = p[i, -1] - lower
        if height > 0:
            total += height * hypervolume(p[: i + 1, :-1], r[:-1])
    return float(total)


def hypervolume_curve(points: np.ndarray, ref: Vector, at: Sequence[int] | None = None) -> np.ndarray:
    """Hypervolume of the first k points (rows; nan rows are failures) for every k (or each k in ``at``)."""
    p = np.asarray(points, dtype=np.float64)
    ks = list(range(1, len(p) + 1)) if at is None else list(at)
    out = np.zeros(len(ks))
    r = np.asarray(ref, dtype=np.float64)
    if len(r) == 2 and at is None:  # incremental: keep the front so far, add one point at a time
        front = np.empty((0, 2))
        value = 0.0
        for i, row in enumerate(p):
            if np.all(np.isfinite(row)) and np.all(row > r) and not any(dominates(f, row) or np.array_equal(f, row)
                                                                        for f in front):
                front = np.vstack([front[[not dominates(row, f) for f in front]], row])
                value = hypervolume(front, r)
            out[i] = value
        return out
    for j, k in enumerate(ks):
        rows = p[:k]
        out[j] = hypervolume(rows[np.all(np.isfinite(rows), axis=1)], r)
    return out


def objective_matrix(results: Sequence[Result | None], objectives: Sequence[Objective]) -> np.ndarray:
    """n x m objective values in maximisation form; a row of nan where a result is missing, failed,
    infeasible or lacks an objective."""
    out = np.full((len(results), len(objectives)), np.nan)
    for i, r in enumerate(results):
        if r is None or r.failed:
            continue
        values = [o.value(r) for o in objectives]
        if all(v is not None for v in values):
            out[i] = values
    return out


# ---------------------------------------------------------------------- MnasNet's reward
@dataclass
class MnasConfig:
    """MnasNet's latency-aware reward for policy strategies (Tan et al., CVPR 2019):
    ``accuracy * (metric / target) ** w`` with ``w = mnas_alpha`` when the metric is at most the target and
    ``w = mnas_beta`` above it. Off while ``mnas_target`` is 0. The defaults are MnasNet's soft constraint
    (alpha = beta = -0.07); alpha = 0, beta = -1 is its hard one. ``mnas_metric`` may be any cost the
    evaluator reports (``latency_ms``, ``flops``, ``params``)."""

    mnas_target: float = 0.0  # MnasNet reward's target value of mnas_metric (0: plain accuracy reward)
    mnas_metric: str = "latency_ms"  # the cost the target is about: latency_ms, flops or params
    mnas_alpha: float = -0.07  # exponent w while the cost is at most the target
    mnas_beta: float = -0.07  # exponent w above the target (-1 with alpha 0: a hard constraint)

    def check_mnas(self) -> None:
        if self.mnas_target < 0 or not math.isfinite(self.mnas_target):
            raise ValueError(f"mnas_target must be a positive number (0: off), got {self.mnas_target}")
        if self.mnas_target and self.mnas_metric not in COST_METRICS:
            raise ValueError(f"mnas_metric must be one of {', '.join(COST_METRICS)}, got {self.mnas_metric!r}")


def mnas_reward(result: Result, config: Any) -> float:
    """``result``'s reward shaped by MnasNet's objective when ``config.mnas_target`` is set (else the reward).

    A result without the metric keeps its plain reward (and a warning would repeat for every result, so
    the factory makes the evaluator measure the metric instead)."""
    reward = float(result.reward)
    target = float(getattr(config, "mnas_target", 0.0) or 0.0)
    if target <= 0:
        return reward
    value = result.metrics.get(config.mnas_metric)
    if value is None or not float(value) > 0:
        return reward
    w = config.mnas_alpha if float(value) <= target else config.mnas_beta
    return reward * (float(value) / target) ** w


def pareto_front(items: Sequence[tuple[str, Result]], objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """The non-dominated ones of ``(arch string, result)`` pairs (feasible results with every objective), each
    once, as ``{"arch", "objectives": {name: value}, "test_accuracy"}`` with values in their own units and
    sign, sorted by the first objective, best first."""
    seen: dict[str, Result] = {}
    for arch, result in items:
        seen.setdefault(arch, result)
    archs = list(seen)
    mat = objective_matrix([seen[a] for a in archs], objectives)
    ok = np.flatnonzero(np.all(np.isfinite(mat), axis=1))
    front = [int(ok[i]) for i in pareto_indices(mat[ok])] if len(ok) else []
    front.sort(key=lambda i: -mat[i, 0])
    out = []
    for i in front:
        r = seen[archs[i]]
        out.append({
            "arch": archs[i],
            "objectives": {str(o).lstrip("-"): float(v if o.maximise else -v) for o, v in zip(objectives, mat[i])},
            "test_accuracy": r.test_accuracy,
        })
    return out
