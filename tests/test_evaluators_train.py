"""The ``train`` evaluator: proxy training, validation reward, reported test accuracy, failures, searches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.evaluators import train as T
from nasforge.registry import EVALUATORS
from nasforge.spaces.nb201 import NB201Space
from nasforge.strategies.base import Strategy
from nasforge.train import load_dataset

TINY = {"C": 4, "N": 1}
ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
NAN_ARCH = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


class Diverging(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * float("nan")


class NanSpace(NB201Space):
    """NB201 whose all-``none`` cell diverges: one architecture of the space fails to train."""

    def build(self, arch, **kwargs):
        model = super().build(arch, **kwargs)
        return Diverging(model) if str(arch) == NAN_ARCH else model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _evaluator(digits, space=None, **config) -> T.TrainEvaluator:
    cfg = T.TrainEvaluatorConfig(**{"epochs": 1, "model_args": TINY, **config})
    return T.TrainEvaluator(space or nf.create_space("nb201"), cfg, nf.RunConfig(evaluator="train"), data=digits)


def test_registered_as_a_training_evaluator():
    caps = EVALUATORS.get("train").capabilities
    assert caps["trains"] is True and "spaces" not in caps


def test_reward_is_validation_accuracy_and_test_is_only_reported(digits):
    ev = _evaluator(digits, epochs=2, fraction=0.5)
    space = ev.space
    r = ev.evaluate(space.parse(ARCH), seed=0)
    assert not r.failed and 0 <= r.reward <= 100
    assert r.reward == r.metrics["val_accuracy"] and r.test_accuracy == r.metrics["test_accuracy"]
    assert r.reward > 20  # ten classes: chance is 10%
    assert r.metrics["params"] > 0 and r.metrics["flops"] > 0 and r.metrics["epochs"] == 2
    assert r.metrics["train_time_s"] > 0 and r.cost == pytest.approx(2 * 0.5)
    assert len(ev.splits.val) == round(0.1 * 1437) and len(ev.splits.train) == round(0.5 * (1437 - 144))
    assert ev.queries == 1 and ev.total_cost == pytest.approx(1.0)


def test_evaluation_seed_decides_init_and_order(digits):
    ev = _evaluator(digits)
    arch = ev.space.parse(ARCH)
    a, b, c = ev.evaluate(arch, seed=1), ev.evaluate(arch, seed=1), ev.evaluate(arch, seed=2)
    assert a.reward == b.reward and a.metrics["train_loss"] == b.metrics["train_loss"]
    assert a.metrics["train_loss"] != c.metrics["train_loss"]


def test_fidelity_is_the_number_of_epochs(digits):
    ev = _evaluator(digits)
    r = ev.evaluate(ev.space.parse(ARCH), fidelity=2, seed=0)
    assert r.metrics["epochs"] == 2 and r.cost == 2


def test_the_runs_fidelity_is_the_number_of_epochs(digits):
    cfg = T.TrainEvaluatorConfig(epochs=1, model_args=TINY)
    ev = T.TrainEvaluator(nf.create_space("nb201"), cfg, nf.RunConfig(evaluator="train", fidelity=2), data=digits)
    r = ev.evaluate(ev.space.parse(ARCH), seed=0)
    assert r.metrics["epochs"] == 2 and r.cost == 2 and len(r.metrics) > 0
    with pytest.raises(ConfigError, match="fidelity: .*at least 1"):
        T.TrainEvaluator(nf.create_space("nb201"), cfg, nf.RunConfig(evaluator="train", fidelity=0), data=digits)
    # a multi-fidelity strategy may ask for any whole number of epochs up to the run's
    assert ev.fidelities == (1.0, 2.0) and ev.cost_unit == "epochs"


def test_data_is_loaded_once_per_evaluator(monkeypatch, digits):
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return digits

    monkeypatch.setattr(T, "load_dataset", counting)
    cfg = nf.make_run_config({"space": "nb201", "evaluator": "train", "dataset": "digits"},
                             ["evaluator.epochs=1", "evaluator.model_args={C: 4, N: 1}"])
    ev = nf.create_evaluator(cfg, nf.create_space("nb201"))
    for seed in range(2):
        ev.evaluate(ev.space.sample(np.random.default_rng(seed)), seed=seed)
    assert len(calls) == 1 and calls[0][0] == "digits"


def test_overrides_reach_the_typed_config():
    cfg = nf.make_run_config({"space": "nb201", "evaluator": "train"}, [
        "evaluator.epochs=2", "evaluator.lr=0.05", "evaluator.nesterov=true", "evaluator.fraction=0.25",
        "evaluator.model_args={C: 8, N: 2}", "evaluator.crop_padding=0",
    ])
    resolved = nf.config.resolve_args(EVALUATORS.get("train").factory, cfg.evaluator_args, "evaluator")
    assert resolved.epochs == 2 and resolved.lr == 0.05 and resolved.nesterov is True
    assert resolved.fraction == 0.25 and resolved.model_args == {"C": 8, "N": 2} and resolved.crop_padding == 0
    assert resolved.train_config().lr == 0.05 and resolved.data_config().fraction == 0.25
    with pytest.raises(ConfigError, match="unknown field 'epoch'"):
        nf.config.resolve_args(EVALUATORS.get("train").factory, {"epoch": 3}, "evaluator")
    with pytest.raises(ConfigError, match="val_size"):
        nf.config.resolve_args(EVALUATORS.get("train").factory, {"val_size": 0}, "evaluator")


def test_bad_input_gives_clear_errors(digits):
    with pytest.raises(ConfigError, match="needs a trainable space"):
        nf.create_evaluator(nf.RunConfig(space="toy", evaluator="train"), nf.create_space("toy"))
    with pytest.raises(ConfigError, match="'C'|model"):
        _evaluator(digits, model_args={"C": 0})
    with pytest.raises(ConfigError, match="unknown|channels"):
        _evaluator(digits, model_args={"channels": 4})
    with pytest.raises(ConfigError, match="needs --data"):
        nf.create_evaluator(nf.RunConfig(space="nb201", evaluator="train", dataset="cifar10"),
                            nf.create_space("nb201"))
    with pytest.raises(nf.errors.DataError, match="data not found"):
        nf.create_evaluator(nf.RunConfig(space="nb201", evaluator="train", dataset="cifar10", data="/no/such/dir"),
                            nf.create_space("nb201"))


def test_diverging_training_is_a_failed_result_and_the_search_goes_on(digits):
    ev = _evaluator(digits, space=NanSpace())
    failed = ev.evaluate(ev.space.parse(NAN_ARCH), seed=0)
    assert failed.failed and math.isnan(failed.reward) and "nan" in failed.error
    assert failed.metrics["params"] > 0

    space = ev.space
    record = nf.run_search(space, _ListStrategy(space, [NAN_ARCH, ARCH]), ev, budget=2)
    assert [t.result.failed for t in record.trials] == [True, False]
    assert str(record.best.arch) == ARCH


class _ListStrategy(Strategy):
    """Proposes a fixed list of architectures, in order."""

    def __init__(self, space, texts):
        super().__init__(space)
        self.archs = [space.parse(t) for t in texts]

    def ask(self, n=1):
        out, self.archs = self.archs[:n], self.archs[n:]
        return out

    def tell(self, archs, results):
        pass


@pytest.mark.slow
def test_any_strategy_searches_a_trainable_space_with_it(tmp_path):
    config = nf.make_run_config(
        {"space": "nb201", "strategy": "re", "evaluator": "train", "dataset": "digits", "budget": 4, "seed": 0},
        ["evaluator.epochs=1", "evaluator.model_args={C: 4, N: 1}", "evaluator.fraction=0.5",
         "strategy.population=2", "strategy.sample_size=2"],
    )
    record, result = nf.search(config, tmp_path / "run")
    assert record.n_evaluations == 4 and result["n_failed"] == 0
    best = result["best"]
    assert best["reward"] == max(t.reward for t in record.trials)
    assert best["metrics"]["val_accuracy"] == best["reward"] and best["test_accuracy"] is not None
    assert (tmp_path / "run" / "result.json").exists()
