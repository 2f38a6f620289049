"""Hyperband / BOHB and the multi-fidelity contract of the run loop and store (toy space: fast)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.result import Result
from nasforge.run.loop import SearchRecord, run_search
from nasforge.run.store import SCHEMA_VERSION, RunStore, Trial
from nasforge.strategies.base import Proposal, Strategy
from nasforge.strategies.hyperband import ladder
from nasforge.testing.toy import ToyEvaluator


def _toy() -> tuple[nf.SearchSpace, ToyEvaluator]:
    space = nf.create_space("toy")
    return space, ToyEvaluator(space)


def test_ladder_thins_the_offered_fidelities_by_eta() -> None:
    assert ladder((12.0, 200.0), 3) == [12.0, 200.0]
    assert ladder((1.0, 3.0, 9.0), 3) == [1.0, 3.0, 9.0]
    assert ladder(tuple(float(e) for e in range(1, 28)), 3) == [1.0, 3.0, 9.0, 27.0]
    assert ladder(tuple(float(e) for e in range(1, 28)), 3, low=2, high=20) == [2.0, 6.0, 20.0]
    assert ladder(None, 3) == [None]
    with pytest.raises(ValueError, match="within"):
        ladder((12.0, 200.0), 3, low=300)


def test_first_brackets_follow_hyperband_and_promote_the_best_of_each_rung() -> None:
    space, evaluator = _toy()
    record = run_search(space, nf.create_strategy("hyperband", space, 0), evaluator, 22, seed=0)
    fids = [t.fidelity for t in record.trials]
    # eta 3 on rungs 1, 3, 9: 9 at 1, the best 3 at 3, the best 1 at 9; then 5 at 3 -> 1 at 9; then 3 at 9
    assert fids == [1.0] * 9 + [3.0] * 3 + [9.0] + [3.0] * 5 + [9.0] + [9.0] * 3
    first = sorted(record.trials[:9], key=lambda t: -t.reward)[:3]
    assert [t.arch for t in record.trials[9:12]] == [t.arch for t in first]
    second = max(record.trials[9:12], key=lambda t: t.reward)
    assert record.trials[12].arch == second.arch
    # a promotion is evaluated again (a 1-epoch result is no answer at 3), and costs its fidelity's share
    assert not any(t.cached for t in record.trials[9:13])
    assert [t.outcome.cost for t in record.trials[:13]] == pytest.approx([1 / 9] * 9 + [1 / 3] * 3 + [1.0])


def test_incumbent_is_chosen_among_the_results_at_the_highest_fidelity() -> None:
    space, _ = _toy()
    a, b, c = (space.sample(np.random.default_rng(i)) for i in range(3))
    trials = [Trial(1, a, "done", 1, Result(99.0), fidelity=1.0), Trial(2, b, "done", 2, Result(70.0), fidelity=9.0),
              Trial(3, c, "done", 3, Result(98.0), fidelity=3.0)]
    record = SearchRecord(space, trials, 3)
    assert [t.id for t in record.incumbents()] == [1, 2, 2]  # 99 at one epoch never beats 70 at nine
    assert record.best is trials[1]
    record.trials.append(Trial(4, a, "done", 4, Result(75.0), fidelity=9.0))
    assert record.best is record.trials[-1]


def test_without_fidelities_hyperband_is_its_base_strategy() -> None:
    space, evaluator = _toy()
    hb = nf.create_strategy("hyperband", space, 4)
    hb.use_fidelities(None)
    rs = nf.create_strategy("rs", space, 4)
    for _ in range(10):
        proposals = hb.ask_proposals(2)
        assert all(p.fidelity is None for p in proposals)
        archs = rs.ask(2)
        assert [p.arch for p in proposals] == archs
        results = [evaluator.evaluate(x) for x in archs]
        hb.tell(archs, results)
        rs.tell(archs, results)


def test_batch_asks_open_the_next_bracket_while_a_rung_waits() -> None:
    space, evaluator = _toy()
    hb = nf.create_strategy("hyperband", space, 0)
    hb.use_fidelities(evaluator.fidelities)
    first = hb.ask_proposals(12)  # 9 at 1 (the rung then waits), 3 of the second bracket's 5 at 3
    assert [p.fidelity for p in first] == [1.0] * 9 + [3.0] * 3
    hb.tell([p.arch for p in first], [evaluator.evaluate(p.arch, p.fidelity) for p in first])
    nxt = hb.ask_proposals(5)  # the first bracket's promotions come first, then the second bracket's last two
    assert [p.fidelity for p in nxt] == [3.0] * 5
    assert {p.arch for p in nxt[:3]} <= {p.arch for p in first[:9]}


def test_resumed_multi_fidelity_search_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    space, evaluator = _toy()

    def run(budget: int, store: RunStore | None = None) -> list[tuple[object, float | None, float]]:
        record = run_search(space, nf.create_strategy("bohb", space, 5), evaluator, budget, store=store, seed=5,
                            state_every=7)
        return [(t.arch, t.fidelity, t.outcome.cost) for t in record.trials]

    run(31, RunStore(tmp_path / "run.db"))
    resumed = run(60, RunStore(tmp_path / "run.db"))
    assert resumed == run(60)
    with RunStore(tmp_path / "run.db", readonly=True) as store:
        trials = store.load(space.from_dict)
    assert sorted({t.fidelity for t in trials}) == [1.0, 3.0, 9.0]  # recorded with each trial


class _AsksAtTwelve(Strategy):
    def ask(self, n: int = 1) -> list[nf.Architecture]:
        return [self.space.sample(self.rng) for _ in range(n)]

    def ask_proposals(self, n: int = 1) -> list[Proposal]:
        return [Proposal(a, 12.0) for a in self.ask(n)]

    def tell(self, archs, results) -> None:
        pass


def test_a_fidelity_the_evaluator_lacks_is_refused() -> None:
    space, evaluator = _toy()
    with pytest.raises(ConfigError, match="fidelity 12.*1, 3, 9"):
        run_search(space, _AsksAtTwelve(space), evaluator, 3)


def test_a_version_2_run_database_is_migrated_or_read_as_it_is(tmp_path: Path) -> None:
    space, evaluator = _toy()
    path = tmp_path / "run.db"
    run_search(space, nf.create_strategy("re", space, 1), evaluator, 12, store=RunStore(path), seed=1)
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE trials DROP COLUMN fidelity; PRAGMA user_version = 2;")
    db.close()
    with RunStore(path, readonly=True) as store:  # read-only: read as it is, nothing written
        assert [t.fidelity for t in store.load(space.from_dict)] == [None] * 12
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
    record = run_search(space, nf.create_strategy("re", space, 1), evaluator, 20, store=RunStore(path), seed=1)
    assert record.n_evaluations == 20
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT COUNT(*) FROM trials WHERE fidelity IS NULL").fetchone()[0] == 20
    assert math.isfinite(record.best.reward)
