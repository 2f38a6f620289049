"""Components from configuration: a run config in, a space, strategy, evaluator and executor out.

This layer sits below the run loop (``run/`` may import it: a worker process builds its evaluator here)
and above the components themselves. It owns the rules that combine them:

- every name is looked up in its registry and every argument typed through the component's ``Config``;
- an evaluator must serve the space (a recurrent space asked for ``supernet`` gets the language-model
  super-network, the one one-shot evaluator that serves it);
- a one-shot evaluator (a :class:`~nasforge.evaluators.base.StatefulEvaluator`) runs in-process only, and its
  strategy gets the settings its registry entry declares for weight sharing (:func:`oneshot_defaults`);
- ``epochs`` (passes over the training split) is turned into a budget of child steps by the evaluator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .config import RunConfig, config_class, replace, resolve_args
from .errors import ConfigError
from .evaluators.base import EvalContext, Evaluator, StatefulEvaluator
from .registry import EVALUATORS, EXECUTORS, SPACES, STRATEGIES
from .spaces.base import SearchSpace
from .strategies.base import Prior, Strategy

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


def create_executor(config: RunConfig, evaluator: Evaluator) -> Any:
    """The executor ``config`` names; a stateful (one-shot) evaluator only runs in-process."""
    entry = EXECUTORS.get(config.executor)
    if isinstance(evaluator, StatefulEvaluator) and not entry.capabilities.get("in_process"):
        raise ConfigError(f"executor: a one-shot search keeps its shared weights in one process; "
                          f"{entry.name!r} runs evaluations elsewhere (use --executor sequential)")
    if config.workers > 1 and not entry.capabilities.get("parallel"):
        raise ConfigError(f"workers: the {entry.name} executor has one worker; choose --executor process or ray")
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
    config = _resolve_evaluator(config)
    if not is_oneshot(config):
        return config
    return replace(config, strategy_args={**oneshot_defaults(config), **config.strategy_args})


def _resolve_evaluator(config: RunConfig) -> RunConfig:
    SPACES.canonical(config.space)  # an unknown space is named as such, not as one the evaluator lacks
    config = replace(config, evaluator=evaluator_for(config.evaluator, config.space))
    if config.epochs is not None and not is_oneshot(config):
        raise ConfigError(f"epochs: counts passes of a one-shot search over its training split; evaluator "
                          f"{config.evaluator!r} trains each network separately (use --set evaluator.epochs=E "
                          f"and --budget N)")
    return config


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
    config = _resolve_evaluator(config)
    space = create_space(config.space, **config.space_args)
    evaluator = create_evaluator(config, space)
    if config.epochs is not None and isinstance(evaluator, StatefulEvaluator) and evaluator.budget != config.budget:
        log.info("%d epochs of %d child steps: a budget of %d steps", config.epochs, evaluator.checkpoint_every,
                 evaluator.budget)
        config = replace(config, budget=evaluator.budget)
    config = resolve(config)
    strategy = create_strategy(config.strategy, space, config.seed, **config.strategy_args)
    strategy.prior = create_prior(config, space)
    return Components(space, strategy, evaluator, config)
