from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nasforge as nf
from nasforge.arch import Architecture
from nasforge.evaluators.base import Evaluator
from nasforge.result import Result
from nasforge.run import RunStore, run_search
from nasforge.testing.toy import ToyEvaluator


class FlakyEvaluator(ToyEvaluator):
    """Raises on every third call."""

    calls = 0

    def _evaluate(self, arch: Architecture, fidelity: float | None, seed: int) -> Result:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("simulated crash of a training job")
        return super()._evaluate(arch, fidelity, seed)


def _toy(strategy: str = "re", seed: int = 0):
    space = nf.create_space("toy")
    return space, nf.create_strategy(strategy, space, seed)


def test_raising_evaluations_are_retried_and_the_attempts_recorded(tmp_path: Path) -> None:
    space, strategy = _toy()
    store = RunStore(tmp_path / "run.db")
    evaluator = FlakyEvaluator(space)
    record = run_search(space, strategy, evaluator, 30, store=store, max_retries=2)
    assert record.n_evaluations == 30 and not any(t.result.failed for t in record.trials)
    attempts = RunStore(tmp_path / "run.db").attempts()
    assert len(attempts) == evaluator.calls - 30 > 0
    assert all(a["kind"] == "exception" and "simulated crash" in a["error"] for a in attempts)


def test_without_retries_failures_are_results_and_do_not_stop_the_search(tmp_path: Path) -> None:
    space, strategy = _toy()
    record = run_search(space, strategy, FlakyEvaluator(space), 30, store=RunStore(tmp_path / "r.db"), max_retries=0)
    assert record.n_evaluations == 30
    failed = [t for t in record.trials if t.result.failed]
    assert len(failed) == 10 and all("simulated crash" in t.result.error for t in failed)
    assert record.best is not None and not record.best.result.failed
    store2 = RunStore(tmp_path / "r.db")
    assert sum(t.status == "failed" for t in store2.load(space.from_dict)) == 10


def test_repeats_reuse_the_recorded_result_at_no_cost() -> None:
    space, strategy = _toy("rs")
    strategy.config.repeat = True  # sampling with replacement gives repeats in a 3,072-point space
    record = run_search(space, strategy, ToyEvaluator(space), 400, seed=1)
    cached = [t for t in record.trials if t.cached]
    assert cached, "400 draws with replacement from 3,072 should repeat"
    first = {t.arch: t for t in record.trials if not t.cached}
    for t in cached:
        assert t.result.cost == 0 and t.reward == first[t.arch].reward


def test_incumbent_and_history() -> None:
    space, strategy = _toy()
    record = run_search(space, strategy, ToyEvaluator(space), 50)
    rewards = [t.reward for t in record.trials]
    inc = record.incumbents()
    assert [i.reward for i in inc] == [max(rewards[: k + 1]) for k in range(50)]
    hist = record.history()
    assert hist[-1]["incumbent_test_accuracy"] == record.best.result.test_accuracy
    assert len(hist) == 50 and set(hist[0]) >= {"arch", "reward", "test_accuracy", "incumbent_test_accuracy", "cost", "time_s"}


def test_crash_between_record_and_tell_is_told_on_resume(tmp_path: Path) -> None:
    """A result committed before the strategy learnt from it is told from the record, not re-evaluated."""
    path = tmp_path / "run.db"
    space, strategy = _toy(seed=2)

    class Boom(Exception):
        pass

    class CrashingStrategy(type(strategy)):
        tells = 0

        def tell(self, archs, results):
            CrashingStrategy.tells += 1
            if CrashingStrategy.tells == 25:
                raise Boom
            super().tell(archs, results)

    crashing = CrashingStrategy(space, seed=2)
    evaluator = ToyEvaluator(space)
    with pytest.raises(Boom):
        run_search(space, crashing, evaluator, 60, store=RunStore(path), seed=2)
    assert evaluator.queries == 25
    evaluator2 = ToyEvaluator(space)
    resumed = run_search(space, nf.create_strategy("re", space, 2), evaluator2, 60, store=RunStore(path), seed=2)
    assert evaluator2.queries == 35  # the 25th result was recorded, so only 35 new evaluations
    straight = run_search(space, nf.create_strategy("re", space, 2), ToyEvaluator(space), 60, seed=2)
    assert [t.arch for t in resumed.trials] == [t.arch for t in straight.trials]


def test_budget_must_be_positive() -> None:
    space, strategy = _toy()
    with pytest.raises(ValueError, match="budget"):
        run_search(space, strategy, ToyEvaluator(space), 0)


def test_evaluator_base_counts() -> None:
    space = nf.create_space("toy")
    ev: Evaluator = ToyEvaluator(space)
    ev.evaluate(space.sample(__import__("numpy").random.default_rng(0)))
    assert ev.queries == 1 and ev.total_cost == 1.0


def test_a_store_used_as_a_context_manager_is_closed_after_it(tmp_path: Path) -> None:
    import sqlite3

    with RunStore(tmp_path / "run.db") as store:
        store.set_meta("k", 1)
    with pytest.raises(sqlite3.ProgrammingError):
        store.db.execute("SELECT 1")


class _CountingResult(Result):
    """A result that counts how often its reward is read (to see how much work ``record.best`` does)."""

    reads = 0

    @property  # type: ignore[override]
    def reward(self) -> float:
        _CountingResult.reads += 1
        return self._reward

    @reward.setter
    def reward(self, value: float) -> None:
        object.__setattr__(self, "_reward", value)


def test_the_incumbent_is_kept_incrementally() -> None:
    from nasforge.run.loop import SearchRecord
    from nasforge.run.store import Trial

    space = nf.create_space("toy")
    rng = np.random.default_rng(0)
    record = SearchRecord(space, [], 1000)
    rewards = rng.normal(size=1000)
    rewards[::7] = np.nan
    for i, r in enumerate(rewards):
        result = Result.failure("boom") if i % 11 == 0 else _CountingResult(float(r), {})
        record.trials.append(Trial(i, space.sample(rng), status="done", result=result))
        best = record.best
        ok = [j for j in range(i + 1) if j % 11 and not np.isnan(rewards[j])]
        assert (best is None) == (not ok) and (best is None or best.id == max(ok, key=lambda j: rewards[j]))
    assert _CountingResult.reads < 10 * len(rewards), "the whole history is read again after every evaluation"
    del record.trials[500:]  # a record whose trials are cut back (a resume from a checkpoint) starts again
    ok = [j for j in range(500) if j % 11 and not np.isnan(rewards[j])]
    assert record.best.id == max(ok, key=lambda j: rewards[j])
