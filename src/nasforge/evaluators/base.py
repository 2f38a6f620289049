"""The evaluator interface: architecture in, :class:`~nasforge.result.Result` out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

from ..arch import Architecture
from ..errors import ConfigError
from ..objectives import (
    COST_METRICS,
    INFEASIBLE,
    STATIC_METRICS,
    Constraint,
    MeasureConfig,
    needed_metrics,
    parse_constraints,
    parse_objectives,
    violations,
)
from ..result import Result
from ..spaces.base import SearchSpace

if TYPE_CHECKING:
    from ..strategies.base import Strategy


@dataclass
class NoConfig:
    """An evaluator without parameters of its own."""


@dataclass(frozen=True)
class EvalContext:
    """What an evaluator may know of the run it serves (besides its own ``Config``).

    Built from the run's :class:`~nasforge.config.RunConfig` by the factory (:meth:`of`); the fields keep the
    run config's names. ``None`` means "not given": each evaluator documents its default.
    """

    seed: int = 0
    budget: int = 100  # evaluations of the search (a one-shot evaluator's schedule spans them)
    epochs: int | None = None  # a one-shot search's length in passes over its training split, instead of budget
    benchmark: str | None = None  # table or surrogate path
    fidelity: int | None = None  # training length the strategy sees (a table's epochs)
    dataset: str | None = None  # data set of evaluators that train (None: digits)
    data: str | None = None  # where its files are
    device: str = "auto"
    cache_dir: str | None = None
    threads: int | None = None
    objectives: Any = ()  # the run's objectives ("accuracy", "-params"...): their costs are reported
    constraints: Any = ()  # "params<=1.5e6"...: infeasible architectures are skipped (see Evaluator.evaluate)
    measure: Any = None  # a MeasureConfig: further metrics to report, latency settings

    @classmethod
    def of(cls, run: Any) -> EvalContext:
        """The context of ``run`` (a RunConfig, an EvalContext, or None for the defaults)."""
        if run is None or isinstance(run, cls):
            return run or cls()
        return cls(**{f.name: getattr(run, f.name) for f in fields(cls) if hasattr(run, f.name)})


class Evaluator(ABC):
    """Base class of evaluators.

    Registered factories are called as ``factory(space, config, context)`` where ``config`` is the
    evaluator's own ``Config`` dataclass and ``context`` the :class:`EvalContext` of the run (benchmark path,
    fidelity, data set, device, seed...). Counters record what a search has spent. An evaluator is stateless
    between evaluations unless it is a :class:`StatefulEvaluator`, so executors may run copies of it anywhere.
    """

    Config: ClassVar[type] = NoConfig
    #: the metric reported for a search's best architecture (never shown to strategies)
    reported_metric: ClassVar[str] = "test_accuracy"
    #: what ``Result.cost`` counts (benchmarks plot the incumbent against its cumulative sum; may be set per instance)
    cost_unit: str = "cost"
    #: parameters and FLOPs are reported for every architecture, asked for or not (they cost little beside the
    #: evaluation); otherwise only when the run's objectives, constraints or ``measure.metrics`` name them
    reports_costs: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, config: Any = None, context: Any = None) -> None:
        self.space = space
        self.config = config if config is not None else self.Config()
        self.context = EvalContext.of(context)
        self.queries = 0
        self.total_cost = 0.0
        self.n_infeasible = 0
        self.constraints: list[Constraint] = parse_constraints(self.context.constraints or (), "constraints")
        measure = self.context.measure
        self.measure = measure if isinstance(measure, MeasureConfig) else MeasureConfig(**(measure or {}))
        wanted = needed_metrics(parse_objectives(list(self.context.objectives or ()), "objectives"), self.constraints)
        wanted |= set(self.measure.metrics)
        if self.reports_costs:
            wanted |= set(STATIC_METRICS)
        #: the costs computed from the architecture before evaluating it
        self.cost_metrics = wanted & set(COST_METRICS)
        self._cost_model: Any = None

    @abstractmethod
    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        """Evaluate one architecture (subclasses)."""

    def cost_model(self) -> Any:
        """The :class:`~nasforge.evaluators.costs.CostModel` of the networks this evaluator scores, or None
        when it builds none (subclasses; called once, when a cost is first needed)."""
        return None

    def costs(self, arch: Architecture) -> dict[str, float]:
        """The costs of ``arch`` this run asks for (``cost_metrics``), computed without evaluating it."""
        if not self.cost_metrics:
            return {}
        if self._cost_model is None:
            self._cost_model = self.cost_model() or False
        return self._cost_model.costs(arch, self.cost_metrics) if self._cost_model else {}

    def evaluate(self, arch: Architecture, fidelity: float | None = None, seed: int = 0) -> Result:
        """Evaluate ``arch``; ``seed`` makes any randomness of the evaluation reproducible.

        With constraints, an architecture whose costs (computed from it alone) break one is not evaluated: its
        result is a failure with ``metrics["infeasible"]`` and the total relative ``violation``, at no cost. A
        constraint on a metric known only after evaluating (a table's measured column, a validation score)
        is judged afterwards: the result becomes infeasible in the same way but keeps its cost.
        """
        before = self.costs(arch)
        broken = violations(before, self.constraints)
        if broken:
            result = self._infeasible(broken, 0.0, before)
        else:
            result = self._evaluate(arch, fidelity, seed)
            if before:  # the evaluator's own numbers (a table's columns) win over the counted ones
                result = Result(result.reward, {**before, **result.metrics}, result.cost, result.failed, result.error)
            broken = [] if result.failed else violations({"reward": result.reward, **result.metrics}, self.constraints)
            if broken:
                result = self._infeasible(broken, result.cost, {**result.metrics, "infeasible_reward": result.reward})
        self.queries += 1
        self.total_cost += result.cost
        return result

    def _infeasible(self, broken: list[str], cost: float, metrics: dict[str, Any]) -> Result:
        self.n_infeasible += 1
        values = {"reward": metrics.get("infeasible_reward"), **metrics}
        amount = sum(c.violation(float(values[c.metric])) for c in self.constraints
                     if values.get(c.metric) is not None)
        return Result.failure(f"{INFEASIBLE}: {'; '.join(broken)}", cost,
                              **{**metrics, INFEASIBLE: True, "violation": amount})

    def optimum(self) -> tuple[Architecture, Result] | None:
        """The architecture with the best reward, for evaluators that know it (tables)."""
        return None

    @property
    def fidelities(self) -> tuple[float, ...] | None:
        """The fidelities an evaluation may ask for, ascending (a table's training lengths, a training's
        epochs), or None for an evaluator without fidelities (super-networks): multi-fidelity strategies
        learn them from the run loop (:meth:`Strategy.use_fidelities`)."""
        return None

    def close(self) -> None:
        """Release files, processes or devices."""


class StatefulEvaluator(Evaluator):
    """An evaluator whose evaluations change it (a super-network trained by every evaluation: ENAS, EDNAS).

    The contract the rest of nasforge relies on, instead of looking for attributes:

    - it runs in the search's own process (the factory refuses executors that run evaluations elsewhere);
    - :attr:`budget` is the number of evaluations it plans its training for (from the context's ``budget``, or
      ``epochs`` x :attr:`checkpoint_every`);
    - every :attr:`checkpoint_every` evaluations (one epoch of its training) the search loop stores a joint
      checkpoint of :meth:`state_dict` and the strategy's state; a killed search resumes from it, redoing the
      evaluations after it (the evaluator's state cannot be rebuilt by replaying results);
    - :meth:`derive` turns the trained state and the strategy's policy into the search's answer.

    ``state_dict`` holds plain data: tensors, arrays, numbers, strings and containers of them.
    """

    budget: int = 1

    @property
    @abstractmethod
    def checkpoint_every(self) -> int:
        """Evaluations between joint checkpoints (one epoch of the evaluator's own training)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything the evaluator needs to continue exactly (weights, optimiser, schedule, data order)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output."""

    @abstractmethod
    def derive(self, strategy: Strategy, n_samples: int = 100, seed: int = 0) -> dict[str, Any] | None:
        """The search's answer from the trained state and ``strategy``'s policy (None without a policy)."""


def refuse_fidelity(name: str, context: EvalContext) -> None:
    """Reject a run's ``fidelity`` for an evaluator that has none: a protocol never changes silently."""
    fidelity = context.fidelity
    if fidelity is not None:
        raise ConfigError(f"fidelity: the {name!r} evaluator has no fidelity (got {fidelity}); leave it unset")
