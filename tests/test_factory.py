"""The factory layer: names, typed settings, the one-shot contract and the lengths of one-shot searches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import nasforge as nf
from nasforge.cli import main
from nasforge.errors import ConfigError
from nasforge.evaluators.base import EvalContext, StatefulEvaluator
from nasforge.factory import evaluator_for, resolve
from nasforge.registry import EVALUATORS, EXECUTORS


def test_every_oneshot_entry_is_a_stateful_evaluator_and_nothing_else_is() -> None:
    # the registry's capability and the typed protocol must agree: the CLI selects by one, the loop by the other
    for entry in EVALUATORS:
        assert bool(entry.capabilities.get("oneshot")) == issubclass(entry.factory, StatefulEvaluator), entry.name


def test_every_executor_says_whether_it_runs_in_process() -> None:
    assert {e.name: e.capabilities["in_process"] for e in EXECUTORS} == {
        "sequential": True, "process": False, "ray": False}


def test_eval_context_takes_the_run_config_fields() -> None:
    config = nf.RunConfig(benchmark="t.csv", fidelity=12, seed=3, dataset="digits", budget=7, epochs=2)
    ctx = EvalContext.of(config)
    assert (ctx.benchmark, ctx.fidelity, ctx.seed, ctx.dataset, ctx.budget, ctx.epochs) == ("t.csv", 12, 3, "digits", 7, 2)
    assert EvalContext.of(None) == EvalContext() and EvalContext.of(ctx) is ctx


def test_oneshot_defaults_come_from_the_registry_under_the_users_settings() -> None:
    config = nf.RunConfig(space="nb201", strategy="enas", evaluator="supernet", budget=400,
                          strategy_args={"lr": 0.1})
    args = resolve(config).strategy_args
    assert args["lr"] == 0.1 and args["batch_size"] == 20 and args["warmup"] == 100 and args["avoid_repeats"] is False
    assert resolve(resolve(config)) == resolve(config)  # config.yaml holds a resolved config: resolving again is a no-op
    black_box = nf.RunConfig(space="nb201", strategy="enas", benchmark="t.csv")
    assert resolve(black_box).strategy_args == {}


def test_a_space_the_evaluator_does_not_serve_names_those_that_do() -> None:
    assert evaluator_for("supernet", "enas-rnn") == "supernet-lm"
    with pytest.raises(ConfigError, match="evaluators for 'enas-rnn': .*supernet-lm"):
        evaluator_for("tabular", "enas-rnn")


def test_epochs_is_only_for_one_shot_searches() -> None:
    with pytest.raises(ConfigError, match="epochs: counts passes"):
        nf.build_components(nf.RunConfig(space="nb201", evaluator="train", epochs=2))
    with pytest.raises(ConfigError, match="epochs: must be a positive"):
        nf.RunConfig(epochs=0)


def test_a_one_shot_search_runs_for_epochs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # the weight-sharing issue's command as written, with a small network
    run = tmp_path / "ws"
    argv = ["search", "--space", "darts", "--evaluator", "supernet", "--strategy", "ednas", "--dataset", "digits",
            "--epochs", "2", "--out", str(run), "--set", "evaluator.model_args={C: 4, layers: 3}",
            "--set", "evaluator.resolution=4"]
    assert main(argv) == 0
    config = yaml.safe_load((run / "config.yaml").read_text())
    per_epoch = nf.build_components(nf.api.read_run_config(run)).evaluator.checkpoint_every
    assert config["epochs"] == 2 and config["budget"] == 2 * per_epoch
    assert config["strategy"]["warmup"] == config["budget"] // 4  # the warm-up follows the budget in steps
    result = json.loads((run / "result.json").read_text())
    assert result["n_evaluations"] == 2 * per_epoch and result["complete"]
    capsys.readouterr()
    assert main([*argv[:-4], "--budget", "5", "--out", str(tmp_path / "both")]) == 2
    assert "not both" in capsys.readouterr().err
