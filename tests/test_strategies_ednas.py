"""The ednas strategy: softmax policy vectors per decision, observable at any time."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.arch import Architecture
from nasforge.result import Result
from nasforge.run.loop import run_search
from nasforge.run.store import RunStore
from nasforge.spaces.base import OPERATION, STRUCTURE, Decision, SearchSpace
from nasforge.strategies.ednas import Ednas, EdnasConfig
from nasforge.strategies.policies import PolicyVectors
from nasforge.testing.toy import ToyEvaluator, toy_reward


class ConditionalSpace(SearchSpace):
    """Node 'n2' takes input 0 or 1; edge 'e1' exists only when it takes input 1."""

    name = "fake-conditional"
    decisions = (Decision("n2", 2, STRUCTURE, ("in0", "in1")), Decision("e0", 3, OPERATION),
                 Decision("e1", 3, OPERATION))

    def active(self, choices: Sequence[int]) -> tuple[bool, ...]:
        return True, True, choices[0] == 1

    def to_string(self, choices: Sequence[int]) -> str:
        return ",".join(map(str, choices))

    def parse(self, text: str) -> Architecture:
        return self.make([int(x) for x in text.split(",")])


def _sums_to_one(group: dict[str, list[float]]) -> bool:
    return all(abs(sum(p) - 1.0) < 1e-6 and min(p) >= 0 for p in group.values())


def test_observe_groups_policy_by_decision() -> None:
    toy = nf.create_space("toy")
    snap = nf.create_strategy("ednas", toy, 0).observe()
    assert set(snap) == {STRUCTURE, OPERATION}
    assert list(snap[STRUCTURE]) == ["s0", "s1"] and list(snap[OPERATION]) == ["o2", "o3", "o4", "o5"]
    assert snap[STRUCTURE]["s0"] == pytest.approx([1 / 3] * 3)
    nb201 = nf.create_space("nb201")
    snap = nf.create_strategy("ednas", nb201, 0).observe()
    assert snap[STRUCTURE] == {}, "NB201 has no structure choice: only operation vectors remain"
    assert len(snap[OPERATION]) == 6 and all(len(p) == 5 for p in snap[OPERATION].values())


def test_policy_stays_normalised_and_learns_on_toy() -> None:
    space = nf.create_space("toy")
    strategy = nf.create_strategy("ednas", space, 1)
    record = run_search(space, strategy, ToyEvaluator(space), 150, seed=1)
    snap = strategy.observe()
    assert _sums_to_one(snap[STRUCTURE]) and _sums_to_one(snap[OPERATION])
    rewards = [toy_reward(space, t.arch.choices) for t in record.trials]
    uniform = np.mean([toy_reward(space, a.choices) for a in space.enumerate()])
    assert np.mean(rewards[50:]) > uniform + 8.0, "after 50 evaluations proposals must beat uniform sampling"
    archs = [t.arch for t in record.trials]
    assert len(set(archs)) == len(archs)


def test_snapshots_are_stored_every_ten_evaluations(tmp_path) -> None:
    space = nf.create_space("toy")
    store = RunStore(tmp_path / "run.db")
    run_search(space, nf.create_strategy("ednas", space, 0), ToyEvaluator(space), 35, store=store)
    snaps = store.snapshots()
    assert [n for n, _ in snaps] == [10, 20, 30, 35]
    assert snaps[0][1] != snaps[-1][1], "the policy must change during the search"
    restored = nf.create_strategy("ednas", space, 1)
    restored.load_state_dict(store.load_state()[1])  # the state saved at the end, as plain data
    saved = restored.policy.probabilities()
    np.testing.assert_allclose(np.concatenate(saved[2:]), np.concatenate(list(snaps[-1][1][OPERATION].values())))


def test_inactive_decisions_leave_their_vector_alone() -> None:
    space = ConditionalSpace()
    strategy = Ednas(space, EdnasConfig(batch_size=2), seed=0)
    archs = [space.make([0, c, 2]) for c in (0, 1, 2, 0)]
    assert all(a.choices[2] == 0 for a in archs)
    strategy.tell(archs, [Result(float(10 * a.choices[1])) for a in archs])
    assert strategy.learner.n_updates == 2
    probs = strategy.policy.probabilities()
    np.testing.assert_allclose(probs[2], [1 / 3] * 3, atol=1e-7)
    assert probs[1][2] > 1 / 3


def test_learns_the_structure_decision_of_a_conditional_space() -> None:
    """Proposals are canonical (inactive options 0) while the policy learns the structure choice."""
    space = ConditionalSpace()
    strategy = Ednas(space, EdnasConfig(batch_size=4, lr=0.5), seed=3)
    for _ in range(15):
        archs = strategy.ask(4)
        assert all(a.choices[2] == 0 for a in archs if a.choices[0] == 0)
        strategy.tell(archs, [Result(0.0 if a.choices[0] == 1 else 1.0) for a in archs])
    probs = strategy.policy.probabilities()
    assert probs[0][0] > 0.9
    assert isinstance(strategy.policy, PolicyVectors)


def test_state_round_trip_continues_exactly() -> None:
    space = nf.create_space("toy")
    evaluator = ToyEvaluator(space)
    a = nf.create_strategy("ednas", space, 2)
    run_search(space, a, evaluator, 20)
    b = nf.create_strategy("ednas", space, 99)
    b.load_state_dict(a.state_dict())
    for _ in range(12):
        x, y = a.ask(2), b.ask(2)
        assert x == y
        res = [evaluator.evaluate(arch) for arch in x]
        a.tell(x, res)
        b.tell(y, res)
    assert torch.equal(a.policy.logits, b.policy.logits)


def test_beats_uniform_on_nb201(nb201_table) -> None:
    medians = {}
    for name in ("ednas", "rs"):
        config = nf.RunConfig(space="nb201", evaluator="tabular", strategy=name, budget=120, seed=0,
                              benchmark=str(nb201_table))
        parts = nf.build_components(config)
        record = run_search(parts.space, parts.strategy, parts.evaluator, config.budget)
        medians[name] = np.median([t.reward for t in record.trials[40:]])
    assert medians["ednas"] > medians["rs"] + 1.0, f"median reward of evaluations 41-120: {medians}"
