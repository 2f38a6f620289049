"""Conformance checks every strategy and every space must pass (used by the test suite, shipped for plug-ins).

Each function raises ``AssertionError`` with a message on failure, so a plug-in author can call them
from any test runner::

    from nasforge.testing import conformance
    conformance.check_strategy("my-strategy")
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np

from ..arch import Architecture
from ..evaluators.base import Evaluator, StatefulEvaluator
from ..factory import create_space, create_strategy
from ..graph import ArchGraph
from ..registry import STRATEGIES
from ..result import Result
from ..run.loop import run_search
from ..run.store import RunStore
from ..spaces.base import SearchSpace
from ..strategies.base import Strategy
from .toy import ToyEvaluator, toy_optimum

#: evaluations within which a guided strategy must find the toy optimum (random search gets the whole space)
TOY_BUDGET = 300


#: the toy space a strategy runs on, by what its registry entry needs of a space (``space_needs``)
TOY_SPACES = {None: "toy", "growable": "toy-blocks"}


def _toy(name: str | None = None) -> tuple[SearchSpace, ToyEvaluator]:
    """The toy space strategy ``name`` can search (with its entry's ``space_defaults``) and its evaluator."""
    caps = STRATEGIES.get(name).capabilities if name else {}
    space = create_space(TOY_SPACES[caps.get("space_needs")], **(caps.get("space_defaults") or {}))
    return space, ToyEvaluator(space)


def trajectory(name: str, seed: int, budget: int, store: RunStore | None = None) -> list[Architecture]:
    space, evaluator = _toy(name)
    strategy = create_strategy(name, space, seed)
    record = run_search(space, strategy, evaluator, budget, store=store, seed=seed)
    return [t.arch for t in record.trials]


def check_ask_tell(name: str) -> None:
    """ask(n) gives n valid architectures; tell accepts asked, unasked and failed results."""
    space, evaluator = _toy(name)
    strategy = create_strategy(name, space, 0)
    for n in (1, 3, 8):
        archs = strategy.ask(n)
        assert len(archs) == n, f"{name}: ask({n}) returned {len(archs)} architectures"
        for a in archs:
            assert isinstance(a, Architecture), f"{name}: ask returned {type(a).__name__}"
            space.validate(a)
        results = [evaluator.evaluate(a) for a in archs]
        strategy.tell(archs, results)
    foreign = [space.sample(np.random.default_rng(99)) for _ in range(2)]
    strategy.tell(foreign, [evaluator.evaluate(a) for a in foreign])
    failed = strategy.ask(2)
    strategy.tell(failed, [Result.failure("boom") for _ in failed])
    for a in strategy.ask(4):
        space.validate(a)


def check_determinism(name: str, budget: int = 60) -> None:
    """Same seed, same trajectory; another seed, another one."""
    a = trajectory(name, 3, budget)
    b = trajectory(name, 3, budget)
    assert a == b, f"{name}: two runs with seed 3 differ at evaluation {next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)}"
    c = trajectory(name, 4, budget)
    assert a != c, f"{name}: seeds 3 and 4 give the same trajectory"


def check_state_round_trip(name: str, first: int = 40, second: int = 40) -> None:
    """A strategy restored from its state in the middle of a search continues exactly as the original."""
    space, evaluator = _toy(name)
    original = create_strategy(name, space, 7)
    run_search(space, original, evaluator, first, seed=7)
    copy = create_strategy(name, space, 12345)
    copy.load_state_dict(original.state_dict())
    _continue_alike(name, original, copy, evaluator, second, batch=1, how="after the round trip")


def _continue_alike(name: str, original: Strategy, copy: Strategy, evaluator: Evaluator, steps: int, batch: int,
                    how: str) -> None:
    """Ask both strategies, tell both the same results: they must propose the same architectures throughout."""
    for step in range(steps):
        x, y = original.ask(batch), copy.ask(batch)
        assert x == y, f"{name}: restored strategy diverged {step} asks {how}"
        results = [evaluator.evaluate(a) for a in x]
        original.tell(x, results)
        copy.tell(y, results)


def check_saved_state_round_trip(name: str, first: int = 40, second: int = 40) -> None:
    """The state saved as plain data (``save_state`` -> bytes -> ``restore_state``, as a run store does) into a
    strategy built with another seed continues exactly as the original."""
    from ..codec import Encoded

    space, evaluator = _toy(name)
    original = create_strategy(name, space, 7)
    run_search(space, original, evaluator, first, seed=7)
    copy = create_strategy(name, space, 12345)
    copy.restore_state(Encoded.from_bytes(original.save_state().to_bytes()))
    _continue_alike(name, original, copy, evaluator, second, batch=2, how="after restoring its saved state")


def check_resume(name: str, first: int = 30, total: int = 70) -> None:
    """A run stopped after ``first`` evaluations and resumed from its store equals an uninterrupted run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.db"
        trajectory(name, 5, first, RunStore(path))
        resumed = trajectory(name, 5, total, RunStore(path))
    straight = trajectory(name, 5, total)
    assert resumed == straight, f"{name}: resumed run differs from an uninterrupted one"


def check_finds_toy_optimum(name: str, seeds: tuple[int, ...] = (0, 1, 2)) -> list[int]:
    """The strategy finds the toy optimum within its budget for every seed; returns evaluations needed.

    An unguided strategy gets the whole space, twice over for one that evaluates networks at several
    fidelities (``multi_fidelity``: a promotion evaluates a network again); a search stops once it found it."""
    space, evaluator = _toy(name)
    caps = STRATEGIES.get(name).capabilities
    budget = TOY_BUDGET if caps.get("guided", True) or space.size is None else space.size
    if not caps.get("guided", True) and caps.get("multi_fidelity"):
        budget *= 2
    best = toy_optimum(space)
    needed: list[int] = []

    def stop(trial, record) -> None:
        if trial.arch == best:
            needed.append(record.n_evaluations)
            raise _Found

    for seed in seeds:
        try:
            run_search(space, create_strategy(name, space, seed), evaluator, budget, seed=seed, callbacks=[stop])
        except _Found:
            continue
        raise AssertionError(f"{name}: seed {seed} did not find the toy optimum in {budget} evaluations")
    return needed


class _Found(Exception):
    """Stops a search that found the toy optimum."""


def check_strategy(name: str) -> None:
    """Every check above."""
    check_ask_tell(name)
    check_determinism(name)
    check_state_round_trip(name)
    check_saved_state_round_trip(name)
    check_resume(name)
    check_finds_toy_optimum(name)


def check_space(space: SearchSpace, n: int = 30, seed: int = 0) -> None:
    """Sample / mutate / neighbours / encode / validate / effective-form invariants and the string round trip."""
    rng = np.random.default_rng(seed)
    size = space.encoding_size
    for i in range(n):
        a = space.sample(rng)
        space.validate(a)
        assert space.parse(str(a)) == a, f"{space.name}: string round trip changed {a}"
        assert space.from_dict(a.to_dict()) == a, f"{space.name}: dict round trip changed {a}"
        assert hash(a) == hash(space.parse(str(a)))
        vec = space.encode(a)
        assert vec.shape == (size,), f"{space.name}: encoding has shape {vec.shape}, expected ({size},)"
        m = space.mutate(a, rng)
        space.validate(m)
        assert m != a or len(space.neighbours(a)) == 0, f"{space.name}: mutate returned the same architecture"
        for nb in space.neighbours(a)[:10]:
            space.validate(nb)
            assert nb != a
        e = space.effective(a)
        space.validate(e)
        assert space.effective(e) == e, f"{space.name}: effective() of {a} is not its own effective form"
        if i < 3:  # the graph of a few architectures: it is what reports draw
            check_space_graph(space, a)


def check_space_graph(space: SearchSpace, arch: Architecture) -> ArchGraph:
    """``space.graph(arch)`` is implemented and a well-formed graph (what ``nasforge draw`` and reports draw)."""
    try:
        graph = space.graph(arch)
    except NotImplementedError as exc:
        raise AssertionError(f"{space.name}: {exc}") from None
    assert isinstance(graph, ArchGraph), f"{space.name}: graph() returned {type(graph).__name__}, not an ArchGraph"
    assert graph.space == space.name, f"{space.name}: graph() is tagged with space {graph.space!r}"
    problem = graph.problem()
    assert problem is None, f"{space.name}: graph() of {arch} is not drawable: {problem}"
    return graph


class _Killed(Exception):
    """Stands for a search killed in the middle (raised from a callback)."""


def check_checkpoint_resume(config, out_dir: Path) -> None:
    """An evaluator with its own state (``checkpoint_every``): a search killed a few evaluations after its
    first checkpoint resumes from it and ends exactly as an uninterrupted search, each result recorded once."""
    import sqlite3

    from ..api import resume, search
    from ..factory import build_components

    evaluator = build_components(config).evaluator
    assert isinstance(evaluator, StatefulEvaluator), f"{evaluator!r} keeps no state of its own"
    every = evaluator.checkpoint_every
    assert every < config.budget, f"budget {config.budget} must exceed one epoch ({every} evaluations)"

    def kill(trial, record) -> None:
        if record.n_evaluations == every + min(3, config.budget - every - 1):
            raise _Killed

    try:
        search(config, out_dir, callbacks=[kill])
    except _Killed:
        pass
    else:
        raise AssertionError("the search was not interrupted")
    resumed, _ = resume(out_dir)
    straight, _ = search(config)
    assert [(t.arch, t.reward) for t in resumed.trials] == [(t.arch, t.reward) for t in straight.trials], \
        "resumed one-shot search differs from an uninterrupted one"
    db = sqlite3.connect(out_dir / "run.db")
    assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == config.budget
    db.close()


def _plain(value: object, where: str) -> None:
    """``value`` is plain data: numbers, strings, tensors, arrays, and lists / tuples / dicts of them."""
    import torch

    if value is None or isinstance(value, (bool, int, float, str, bytes, np.ndarray, np.generic, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _plain(v, f"{where}.{k}")
        return
    raise AssertionError(f"{where}: {type(value).__name__} is not plain data (numbers, strings, tensors, containers)")


def check_evaluator(evaluator, seed: int = 0) -> None:
    """An evaluator's contract on architectures of its space: a :class:`Result` with a finite reward or a failure,
    a non-negative cost and JSON-ready metrics; the same seed gives the same result (a stateful evaluator: from
    the same :meth:`state_dict`, which holds plain data); ``optimum`` is None or a pair; ``close`` may be
    called twice."""
    import json


    space = evaluator.space
    arch = space.sample(np.random.default_rng(seed))
    stateful = isinstance(evaluator, StatefulEvaluator)
    if stateful:
        assert evaluator.checkpoint_every >= 1, f"{evaluator!r}: checkpoint_every must be positive"
        state = copy.deepcopy(evaluator.state_dict())  # a state dict may hold the live tensors
        _plain(state, "state_dict()")
    first = evaluator.evaluate(arch, seed=seed)
    assert isinstance(first, Result), f"{evaluator!r}: evaluate returned {type(first).__name__}"
    assert first.cost >= 0, f"{evaluator!r}: negative cost {first.cost}"
    assert first.failed or np.isfinite(first.reward), f"{evaluator!r}: reward {first.reward} without a failure"
    json.dumps(first.metrics, default=float)
    if stateful:
        evaluator.load_state_dict(state)
    again = evaluator.evaluate(arch, seed=seed)
    assert (again.reward, again.failed) == (first.reward, first.failed) or (np.isnan(again.reward) and first.failed), \
        f"{evaluator!r}: the same architecture and seed gave {first.reward} then {again.reward}"
    optimum = evaluator.optimum()
    assert optimum is None or (isinstance(optimum[0], Architecture) and isinstance(optimum[1], Result))
    evaluator.close()
    evaluator.close()


def check_executor(name: str, workers: int = 2, budget: int = 8, **settings: object) -> None:
    """A search through executor ``name`` records every evaluation once, with the result the evaluator gives
    in-process (the toy objective, exact), in whatever order the workers finish."""
    from ..config import RunConfig
    from ..factory import build_components, create_executor
    from .toy import toy_reward

    config = RunConfig(space="toy", strategy="rs", evaluator="toy", budget=budget, executor=name, workers=workers,
                       **settings)  # type: ignore[arg-type]
    parts = build_components(config)
    record = run_search(parts.space, parts.strategy, parts.evaluator, budget,
                        executor=create_executor(config, parts.evaluator))
    assert record.n_evaluations == budget, f"{name}: {record.n_evaluations} of {budget} evaluations recorded"
    assert len({t.id for t in record.trials}) == budget
    for t in record.trials:
        assert not t.outcome.failed, f"{name}: trial {t.id} failed: {t.outcome.error}"
        assert t.reward == toy_reward(parts.space, t.arch.choices), f"{name}: trial {t.id} has another result"
