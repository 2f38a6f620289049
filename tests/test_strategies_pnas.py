"""PNAS: Algorithm 1's levels on the growable toy space, its caps, its saved state mid-beam, and its predictor."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy import stats

import nasforge as nf
import nasforge.testing  # registers the toy spaces
from nasforge.codec import Encoded
from nasforge.errors import ConfigError
from nasforge.predictors.ensemble import EnsemblePredictor
from nasforge.testing.toy import ToyEvaluator, toy_reward


@pytest.fixture(scope="module")
def toy():
    space = nf.create_space("toy-blocks", min_blocks=1)
    return space, ToyEvaluator(space)


def _step(strategy, evaluator, n: int = 1) -> list:
    archs = strategy.ask(n)
    strategy.tell(archs, [evaluator.evaluate(a) for a in archs])
    return archs


def test_levels_follow_algorithm_1(toy) -> None:
    space, evaluator = toy
    strategy = nf.create_strategy("pnas", space, 0, beam=5)
    first = [a for _ in range(8) for a in _step(strategy, evaluator)]
    assert sorted(first, key=str) == sorted(space.initial_cells(), key=str)  # all one-block cells, shuffled
    second = [a for _ in range(5) for a in _step(strategy, evaluator)]
    assert {space.blocks(a) for a in second} == {2} and len(set(second)) == 5
    assert all(a.choices[:2] in {p.choices[:2] for p in first} for a in second)  # expansions of evaluated cells
    predicted = strategy.predictions[2]
    assert set(predicted) == set(second) and list(predicted.values()) == sorted(predicted.values(), reverse=True)
    third = _step(strategy, evaluator, 5)
    assert {space.blocks(a) for a in third} == {3}
    assert all(a.choices[:4] in {p.choices[:4] for p in second} for a in third)
    more = _step(strategy, evaluator, 7)  # past B blocks: the next best expansions, never a repeat
    assert {space.blocks(a) for a in more} == {3} and not set(more) & set(third)


def test_caps_sample_uniformly_and_say_so(toy, caplog: pytest.LogCaptureFixture) -> None:
    space, evaluator = toy
    strategy = nf.create_strategy("pnas", space, 1, initial=3, max_candidates=10, beam=4, fit_steps=5,
                                  finetune_steps=5)
    with caplog.at_level(logging.INFO, logger="nasforge.strategies.pnas"):
        first = _step(strategy, evaluator, 3)
        second = _step(strategy, evaluator, 4)
    assert {space.blocks(a) for a in first} == {1} and {space.blocks(a) for a in second} == {2}
    assert "8 one-block cells; evaluating a uniform sample of 3" in caplog.text
    assert "more than 10 expansions of 3 cells of 1 blocks; ranking a uniform sample of 10" in caplog.text


def test_resumed_mid_beam_continues_identically(toy) -> None:
    space, evaluator = toy
    original = nf.create_strategy("pnas", space, 4, beam=6)
    for _ in range(11):  # one-block cells, then 3 of the 6 cells of the two-block beam
        _step(strategy=original, evaluator=evaluator)
    assert original.level == 2 and len(original.queue) == 3
    copy = nf.create_strategy("pnas", space, 99, beam=6)
    copy.restore_state(Encoded.from_bytes(original.save_state().to_bytes()))
    for _ in range(15):
        a, b = original.ask(1), copy.ask(1)
        assert a == b
        results = [evaluator.evaluate(x) for x in a]
        original.tell(a, results)
        copy.tell(b, results)


def test_needs_a_growable_space() -> None:
    with pytest.raises(ConfigError, match="pnas grows cells block by block; space 'toy' cannot"):
        nf.create_strategy("pnas", nf.create_space("toy"))


@pytest.mark.parametrize("kind", ["lstm", "mlp"])
def test_predictor_ranks_unseen_cells_and_is_seeded(kind: str) -> None:
    space = nf.create_space("toy-blocks", min_blocks=1)
    cells = list(space.enumerate())
    order = np.random.default_rng(0).permutation(len(cells))
    train, test = [cells[i] for i in order[:80]], [cells[i] for i in order[80:480]]
    rewards = [toy_reward(space, a.choices) for a in train]
    state = torch.random.get_rng_state()
    predictions = []
    for _ in range(2):
        predictor = EnsemblePredictor(space, torch.Generator().manual_seed(3), kind)
        predictor.fit(train, rewards, 60)
        predictions.append(predictor.predict(test))
    assert torch.equal(state, torch.random.get_rng_state())  # no global generator used
    np.testing.assert_array_equal(predictions[0], predictions[1])
    rho = stats.spearmanr(predictions[0], [toy_reward(space, a.choices) for a in test]).statistic
    assert rho > 0.8, f"{kind}: Spearman {rho:.3f} on unseen cells"
    members = predictor.predict_members(test)
    assert members.shape == (5, len(test)) and not np.allclose(members[0], members[1])  # folds differ


def test_search_darts_with_pnas_and_train_as_typed(tmp_path) -> None:
    from nasforge.cli import main

    out = tmp_path / "run"
    # only the training is shrunk here; the space needs no setting: PNAS' entry gives it min_blocks=1
    assert main(["-q", "search", "--space", "darts", "--strategy", "pnas", "--evaluator", "train", "--dataset",
                 "digits", "--budget", "2", "--seed", "0", "--out", str(out), "--set", "evaluator.epochs=1",
                 "--set", "evaluator.model_args={C: 4, layers: 1}", "--set", "evaluator.fraction=0.2"]) == 0
    assert "min_blocks: 1" in (out / "config.yaml").read_text()
    config, record, store = nf.load_record(out)
    store.close()
    space = nf.create_space("darts", **config.space_args)
    assert config.space_args == {"min_blocks": 1} and [space.blocks(t.arch) for t in record.trials] == [1, 1]
