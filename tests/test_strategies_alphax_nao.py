"""AlphaX and NAO: the tree respects the space's inactive decisions and validity and closes exhausted
regions; the meta-predictor learns; NAO's networks learn jointly, repairs invalid decodings and never
proposes an architecture twice. (Every registered strategy also passes the conformance suite.)"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

from nasforge.arch import Architecture
from nasforge.factory import create_space
from nasforge.predictors.mlp import MLPPredictor, encode_rows
from nasforge.predictors.nao import EncoderPredictorDecoder, fit, targets, tokens
from nasforge.result import Result
from nasforge.run.loop import run_search
from nasforge.spaces.base import Decision, SearchSpace
from nasforge.strategies.alphax import AlphaX, AlphaXConfig
from nasforge.strategies.nao import NAO, NAOConfig
from nasforge.testing.toy import ToyEvaluator, ToySpace, toy_reward


class TinySpace(SearchSpace):
    """2 x 3 decisions with the pair (1, 2) invalid: five architectures."""

    name = "tiny"
    decisions = (Decision("a", 2), Decision("b", 3))

    def check(self, choices: Sequence[int]) -> str | None:
        return super().check(choices) or ("(1, 2) is forbidden" if tuple(choices) == (1, 2) else None)

    @property
    def size(self) -> int:
        return 5

    def to_string(self, choices: Sequence[int]) -> str:
        return f"{choices[0]}-{choices[1]}"

    def parse(self, text: str) -> Architecture:
        return self.make([int(x) for x in text.split("-")])


def _reward(arch: Architecture) -> Result:
    return Result(float(sum(arch.choices)), {})


# ------------------------------------------------------------------------ alphax
def test_alphax_tree_skips_inactive_decisions() -> None:
    space = create_space("convnet")  # decision 0 is the depth; layers beyond it are inactive
    strategy = AlphaX(space, seed=0)
    one_layer = (0,)
    assert strategy._actions(one_layer) == [0, 1]  # kernel of layer 1: active
    assert strategy._actions(one_layer + (1,)) == [0]  # kernel of layer 2: inactive at depth 1
    assert strategy._actions((4, 1)) == [0, 1]  # five layers: all active


def test_alphax_proposes_every_valid_architecture_once_then_closes_the_tree() -> None:
    space = TinySpace()
    strategy = AlphaX(space, AlphaXConfig(initial=2, rollouts=4), seed=1)
    proposed = []
    for _ in range(5):
        (arch,) = strategy.ask()
        space.validate(arch)
        proposed.append(arch.choices)
        strategy.tell([arch], [_reward(arch)])
    assert sorted(proposed) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    strategy.ask()  # the space is exhausted: a repeat is allowed, and the search now knows
    assert strategy.closed[0]


def test_alphax_batch_asks_are_distinct_and_evaluations_only_on_chosen_leaves() -> None:
    space = ToySpace()
    strategy = AlphaX(space, seed=0)
    evaluator = ToyEvaluator(space)
    seen = set()
    for _ in range(12):
        archs = strategy.ask(4)
        assert not seen & set(archs) and len(set(archs)) == 4
        seen.update(archs)
        strategy.tell(archs, [evaluator.evaluate(a) for a in archs])
    # each evaluation backs up one real and (once the predictor is fitted) one predicted visit at the root
    assert strategy.fitted and len(seen) < strategy.visits[0] < 2 * len(seen)


def test_meta_predictor_learns_the_toy_ranking() -> None:
    space = ToySpace()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(300)]
    X = encode_rows(space, [a.choices for a in archs])
    assert np.array_equal(X, np.stack([space.encode(a) for a in archs]))
    y = np.array([toy_reward(space, a.choices) for a in archs])
    y = (y - y.mean()) / y.std()
    model = MLPPredictor(space.encoding_size, 32, seed=0)
    model.fit(model.optimizer(0.01), X[:200], y[:200], 200)
    assert spearmanr(model.predict(X[200:]), y[200:])[0] > 0.8


def test_encode_rows_matches_encode_with_inactive_decisions() -> None:
    space = create_space("convnet")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(20)]
    assert np.array_equal(encode_rows(space, [a.choices for a in archs]), np.stack([space.encode(a) for a in archs]))


# ------------------------------------------------------------------------ nao
def test_nao_networks_learn_prediction_and_reconstruction_jointly() -> None:
    space = ToySpace()
    rng = np.random.default_rng(0)
    archs = list({space.sample(rng) for _ in range(120)})
    y = torch.tensor([toy_reward(space, a.choices) for a in archs], dtype=torch.float32)
    y = (y - y.mean()) / y.std()
    model = EncoderPredictorDecoder(space, 32, 16, seed=0)
    choices, active = targets(space, archs)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.005)
    toks = tokens(space, archs)
    mse0, rec0 = fit(model, optimizer, toks, choices, active, y, 0, 0.8)
    mse, rec = fit(model, optimizer, toks, choices, active, y, 200, 0.8)
    assert mse < 0.3 and rec < 0.5 * np.log(4)
    with torch.no_grad():
        decoded = model.decode(model.encode(toks)).argmax(-1)
    assert (decoded == choices).all(-1).float().mean() > 0.9  # the decoder gives the architectures back


def test_nao_repairs_an_invalid_decoding_or_drops_it() -> None:
    space = TinySpace()
    strategy = NAO(space, seed=0)
    logp = torch.log_softmax(torch.tensor([[0.0, 1.0, -float("inf")], [0.0, 0.5, 2.0]]), -1)
    assert strategy._decoded(logp).choices == (0, 2)  # (1, 2) is invalid: a is changed, its drop is smaller
    strategy.config.repairs = 0
    assert strategy._decoded(logp) is None


def test_nao_never_proposes_an_architecture_twice() -> None:
    space = ToySpace()
    strategy = NAO(space, NAOConfig(first_fit_steps=50, fit_steps=10), seed=2)
    record = run_search(space, strategy, ToyEvaluator(space), 60, seed=2)
    archs = [t.arch for t in record.trials]
    assert len(set(archs)) == len(archs) and strategy.made > 0
