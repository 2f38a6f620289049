"""Components from configuration: a run config in, a space, strategy, evaluator and executor out.

This layer sits below the run loop (``run/`` may import it: a worker process builds its evaluator here)
and above the components themselves. It owns the rules that combine them:

- every name is looked up in its registry and every argument typed through the component's ``Config``;
- an evaluator must serve the space (a recurrent space asked for ``supernet`` gets the language-model
  super-network, the one one-shot evaluator that serves it);
- a one-shot evaluator (a :class:`~nasforge.evaluators.base.StatefulEvaluator`) runs in-process only, and its
  strategy gets the settings its registry entry declares for weight sharing (:func:`oneshot_defaults`);
- ``epochs`` (passes over the training split) is turned into a budget of child steps by the evaluator;
- seeds are integers >= 0 (:func:`check_seed`), and the executor and its settings are checked with the rest of
  the config (:func:`check_executor`), before an evaluator loads anything or a run directory is written.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from typing import Any

from .config import RunConfig, config_class, replace, resolve_args
from .errors import ConfigError
from .evaluators.base import EvalContext, Evaluator, StatefulEvaluator
from .registry import EVALUATORS, EXECUTORS, SPACES, STRATEGIES
from .spaces.base import SearchSpace, is_growable
from .strategies.base import Prior, Strategy

log = logging.getLogger(__name__)


def create_space(name: str, **args: Any) -> SearchSpace:
    """A registered search space by name, with its typed parameters."""
    entry = SPACES.get(name)
    return entry.factory(resolve_args(entry.factory, args, "space"))


def check_seed(seed: Any, where: str = "seed") -> int:
    """``seed`` if it is an integer >= 0, else a :class:`ConfigError` naming ``where``: the one rule for every seed
    (numpy's generators refuse negative ones, deep inside a search)."""
    try:
        value = operator.index(seed)  # numpy integers too
    except TypeError:
        value = -1
    if isinstance(seed, bool) or value < 0:
        raise ConfigError(f"{where}: must be an integer >= 0, got {seed!r}")
    return value


def create_strategy(name: str, space: SearchSpace, seed: int = 0, **args: Any) -> Strategy:
    """A registered strategy for ``space``, seeded, with typed hyper-parameters."""
    check_seed(seed)
    entry = STRATEGIES.get(name)
    return entry.factory(space, resolve_args(entry.factory, args, "strategy"), seed)


def create_evaluator(config: RunConfig, space: SearchSpace) -> Evaluator:
    """The evaluator ``config`` names, for ``space``, with its typed settings and the run's context."""
    entry = EVALUATORS.get(evaluator_for(config.evaluator, space.name))
    return entry.factory(space, resolve_args(entry.factory, config.evaluator_args, "evaluator"),
                         EvalContext.of(config))


def evaluator_for(name: str, space: str) -> str:
    """The registered evaluator that serves ``space`` for the name a user gave.

    A one-shot evaluator asked for a space it does not serve is replaced by the one one-shot evaluator that
    does (``supernet`` for ``enas-rnn`` is ``supernet-lm``); anything else is an error naming both."""
    entry = EVALUATORS.get(name)
    supported = entry.capabilities.get("spaces")
    if not supported or space in supported:
        return entry.name
    if entry.capabilities.get("oneshot"):
        serving = [e.name for e in EVALUATORS if e.capabilities.get("oneshot") and space in e.capabilities.get("spaces", ())]
        if len(serving) == 1:
            log.info("evaluator %s does not serve space %s; using %s, its one-shot evaluator", entry.name, space,
                     serving[0])
            return serving[0]
    serving = [e.name for e in EVALUATORS if space in e.capabilities.get("spaces", ()) or not e.capabilities.get("spaces")]
    raise ConfigError(f"evaluator: {entry.name!r} works with spaces {', '.join(supported)}, not {space!r}; "
                      f"evaluators for {space!r}: {', '.join(serving) or 'none'}")


def create_prior(config: RunConfig, space: SearchSpace) -> Prior | None:
    """The prior ``config`` names (an evaluator registered with ``prior=True``, with ``prior_args``), or None.

    The prior evaluator gets the run's context without its table and fidelity (those are the search's own); its
    scores are cached per network, so an architecture drawn twice is scored once."""
    if config.prior is None:
        return None
    entry = EVALUATORS.get(config.prior)
    if not entry.capabilities.get("prior"):
        raise ConfigError(f"prior: {entry.name!r} cannot serve as a prior; priors: "
                          f"{', '.join(EVALUATORS.names(prior=True)) or 'none registered'}")
    if not STRATEGIES.get(config.strategy).capabilities.get("prior"):
        raise ConfigError(f"prior: strategy {config.strategy!r} has no random initial phase for a prior to choose; "
                          f"strategies that use one: {', '.join(STRATEGIES.names(prior=True))}")
    context = EvalContext.of(replace(config, benchmark=None, fidelity=None))
    evaluator = entry.factory(space, resolve_args(entry.factory, config.prior_args, "prior"), context)
    cache: dict[Any, float] = {}

    def score(archs: Any) -> list[float]:
        for a in archs:
            key = space.key(a)
            if key not in cache:
                result = evaluator.evaluate(a)
                cache[key] = -float("inf") if result.failed else float(result.reward)
        return [cache[space.key(a)] for a in archs]

    return Prior(score, config.prior_draws)


def _one_process_only(entry: Any) -> ConfigError:
    return ConfigError(f"executor: a one-shot search keeps its shared weights in one process; "
                       f"{entry.name!r} runs evaluations elsewhere (use --executor sequential)")


def check_executor(config: RunConfig) -> None:
    """Refuse an executor ``config`` cannot run on (an unknown name, settings it cannot honour, what the executor
    itself checks without starting, such as Ray being installed), with the other config errors: before the
    evaluator loads its data and before a run directory records the config. ``config``'s evaluator is resolved."""
    entry = EXECUTORS.get(config.executor)
    if is_oneshot(config) and not entry.capabilities.get("in_process"):
        raise _one_process_only(entry)
    if config.workers > 1 and not entry.capabilities.get("parallel"):
        raise ConfigError(f"workers: the {entry.name} executor has one worker; choose --executor process or ray")
    if config.cpus_per_trial <= 0:
        raise ConfigError(f"cpus_per_trial: must be positive, got {config.cpus_per_trial:g}")
    if config.gpus_per_trial < 0:
        raise ConfigError(f"gpus_per_trial: must be 0 or more, got {config.gpus_per_trial:g}")
    check = getattr(entry.factory, "check_config", None)
    if check is not None:
        check(config)


def create_executor(config: RunConfig, evaluator: Evaluator) -> Any:
    """The executor ``config`` names; a stateful (one-shot) evaluator only runs in-process."""
    check_executor(config)
    entry = EXECUTORS.get(config.executor)
    if isinstance(evaluator, StatefulEvaluator) and not entry.capabilities.get("in_process"):
        raise _one_process_only(entry)  # an evaluator whose registry entry does not say it is one-shot
    return entry.factory(evaluator, config)


def is_oneshot(config: RunConfig) -> bool:
    """Whether ``config``'s evaluator trains shared weights (its registry entry says so)."""
    return bool(EVALUATORS.get(config.evaluator).capabilities.get("oneshot"))


def oneshot_defaults(config: RunConfig) -> dict[str, Any]:
    """Strategy settings for weight sharing, below the user's own: the values the strategy's registry entry
    declares (``oneshot={...}``: the paper's settings for thousands of policy updates), repeats allowed (a
    repeated child costs one training step like any other), and a warm-up of a quarter of the budget in which
    the policy does not learn, so that every operation's shared weights train before their rewards are trusted."""
    entry = STRATEGIES.get(config.strategy)
    fields = getattr(config_class(entry.factory), "__dataclass_fields__", {})
    out: dict[str, Any] = dict(entry.capabilities.get("oneshot") or {})
    if "avoid_repeats" in fields:
        out["avoid_repeats"] = False
    if "warmup" in fields:
        out["warmup"] = config.budget // 4
    return out


def resolve(config: RunConfig) -> RunConfig:
    """``config`` with the names and settings its components really run with: the evaluator that serves the
    space, and for a one-shot evaluator the strategy's :func:`oneshot_defaults` under the user's own settings.
    Idempotent: a resolved config (as ``config.yaml`` records it) resolves to itself."""
    config = objective_settings(_resolve_evaluator(config))
    if not is_oneshot(config):
        return config
    return replace(config, strategy_args={**oneshot_defaults(config), **config.strategy_args})


def objective_settings(config: RunConfig, strict: bool = True) -> RunConfig:
    """``config`` with its objectives passed on: a strategy with an ``objectives`` setting (``nsga2``) gets the
    run's, several objectives need such a strategy (or an unguided one: random search), and the metric of a
    MnasNet-style reward (``strategy.mnas_target``) is measured by the evaluator. ``strict=False`` lets a
    single-objective strategy run anyway (a bench compares it with multi-objective ones)."""
    entry = STRATEGIES.get(config.strategy)
    fields = getattr(config_class(entry.factory), "__dataclass_fields__", {})
    args = dict(config.strategy_args)
    if strict and len(config.objectives) > 1 and "objectives" not in fields and entry.capabilities.get("guided", True):
        multi = [e.name for e in STRATEGIES if "objectives" in getattr(config_class(e.factory), "__dataclass_fields__", {})
                 or not e.capabilities.get("guided", True)]
        raise ConfigError(f"objectives: strategy {entry.name!r} optimises one objective; for "
                          f"{','.join(config.objectives)} use one of {', '.join(multi)} (reinforce, ednas and nases "
                          "take MnasNet's reward instead: --set strategy.mnas_target=T)")
    if "objectives" in fields and config.objectives and not args.get("objectives"):
        args["objectives"] = list(config.objectives)
    measure = config.measure
    metric = args.get("mnas_metric", "latency_ms") if args.get("mnas_target") else None
    if metric and metric not in measure.metrics:
        measure = replace(measure, metrics=[*measure.metrics, metric])
    return replace(config, strategy_args=args, measure=measure)


def _resolve_evaluator(config: RunConfig) -> RunConfig:
    SPACES.canonical(config.space)  # an unknown space is named as such, not as one the evaluator lacks
    config = replace(config, evaluator=evaluator_for(config.evaluator, config.space))
    if STRATEGIES.get(config.strategy).capabilities.get("differentiable") and not EVALUATORS.get(
            config.evaluator).capabilities.get("differentiable"):
        raise ConfigError(f"strategy: {config.strategy!r} learns architecture weights by gradient through a "
                          f"super-network; evaluator {config.evaluator!r} scores networks as black boxes "
                          f"(use --evaluator {', '.join(EVALUATORS.names(differentiable=True))})")
    if config.evaluator_args.get("derive_method") == "perturb" and not STRATEGIES.get(
            config.strategy).capabilities.get("differentiable"):
        raise ConfigError(f"evaluator.derive_method: perturb removes operations from architecture weights' mixture; "
                          f"strategy {config.strategy!r} has none (differentiable strategies: "
                          f"{', '.join(STRATEGIES.names(differentiable=True))})")
    config = _strategy_needs(config)
    if config.epochs is not None and not is_oneshot(config):
        raise ConfigError(f"epochs: counts passes of a one-shot search over its training split; evaluator "
                          f"{config.evaluator!r} trains each network separately (use --set evaluator.epochs=E "
                          f"and --budget N)")
    return config


def _strategy_needs(config: RunConfig) -> RunConfig:
    """What a strategy's registry entry asks of the space and evaluator: a capability of the space
    (``space_needs="growable"``), its ``space_defaults`` under the user's own space settings, and an evaluator
    that scores cells of any size (``evaluator_needs="any_blocks"``)."""
    entry = STRATEGIES.get(config.strategy)
    need = entry.capabilities.get("space_needs")
    space = SPACES.get(config.space)
    if need and not space.capabilities.get(need):
        raise ConfigError(f"space: strategy {entry.name!r} needs a {need} space, {space.name!r} is not; "
                          f"{need} spaces: {', '.join(SPACES.names(**{need: True})) or 'none'}")
    defaults = {k: v for k, v in (entry.capabilities.get("space_defaults") or {}).items() if k not in config.space_args}
    if defaults:
        config = replace(config, space_args={**config.space_args, **defaults})
    if entry.capabilities.get("evaluator_needs") == "any_blocks":
        _check_any_blocks(config.evaluator, config.space, f"strategy {entry.name!r} grows cells from one block")
    return config


def _check_any_blocks(evaluator: str, space: str, why: str) -> None:
    """Refuse an evaluator that cannot score cells of every size in ``space``: its ``any_blocks`` capability is
    True, or the spaces it can do it for (a super-network evaluator: those whose super-network can)."""
    able_here = EVALUATORS.get(evaluator).capabilities.get("any_blocks")
    if able_here is not True and space not in (able_here or ()):
        able = ", ".join(e.name for e in EVALUATORS
                         if (c := e.capabilities.get("any_blocks")) is True or space in (c or ())) or "none"
        raise ConfigError(f"evaluator: {evaluator!r} scores cells of one size only; {why} "
                          f"(evaluators that score cells of any size: {able})")


@dataclass
class Components:
    """The three parts of one search, built from one config."""

    space: SearchSpace
    strategy: Strategy
    evaluator: Evaluator
    config: RunConfig  # resolved: what config.yaml records (a budget given in epochs is in child steps here)


def build_components(config: RunConfig) -> Components:
    """Space, evaluator and strategy of a run config (errors name the offending field).

    The evaluator comes first: a one-shot search given in ``epochs`` learns its budget (child steps) from the
    evaluator, which knows its training split, and the strategy's warm-up depends on the budget."""
    check_seed(config.seed)
    config = _resolve_evaluator(config)
    # the strategy's settings and the executor are checked before the evaluator loads its data, so that a typo
    # fails in a second (and, in api.search, before a run directory records the config)
    resolve_args(STRATEGIES.get(config.strategy).factory, resolve(config).strategy_args, "strategy")
    check_executor(config)
    space = create_space(config.space, **config.space_args)
    if is_growable(space):
        _check_any_blocks(config.evaluator, space.name,
                          f"space {space.name!r} holds cells smaller than full (min_blocks)")
    evaluator = create_evaluator(config, space)
    if config.epochs is not None and isinstance(evaluator, StatefulEvaluator) and evaluator.budget != config.budget:
        log.info("%d epochs of %d child steps: a budget of %d steps", config.epochs, evaluator.checkpoint_every,
                 evaluator.budget)
        config = replace(config, budget=evaluator.budget)
    config = resolve(config)
    strategy = create_strategy(config.strategy, space, config.seed, **config.strategy_args)
    if STRATEGIES.get(config.strategy).capabilities.get("differentiable"):
        evaluator.attach(strategy)  # type: ignore[attr-defined]  # the evaluator's capability says it can
    strategy.prior = create_prior(config, space)
    return Components(space, strategy, evaluator, config)
