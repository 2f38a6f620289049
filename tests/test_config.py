from __future__ import annotations

from pathlib import Path

import pytest

import nasforge as nf
from nasforge.config import apply_overrides, load_yaml, make_run_config
from nasforge.errors import ConfigError


def test_overrides_are_typed_and_routed_to_components() -> None:
    cfg = make_run_config({"strategy": "re"}, ["budget=50", "seed=3", "strategy.population=20", "strategy.sample_size=5"])
    assert cfg.budget == 50 and cfg.seed == 3
    parts = nf.build_components(make_run_config(
        {"space": "toy", "evaluator": "toy", "strategy": "re"}, ["strategy.population=20", "strategy.sample_size=5"]))
    assert parts.strategy.config.population == 20 and isinstance(parts.strategy.config.population, int)


@pytest.mark.parametrize("override, message", [
    ("budget=abc", "budget: expected an integer"),
    ("budget=0", "budget: must be a positive"),
    ("budget=-5", "budget: must be a positive"),
    ("nonsense=1", "^unknown field 'nonsense'"),  # no empty field name before it
    ("novalue", "expected key=value"),
    ("model.x=1", "'model' is not one of"),
])
def test_bad_overrides_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_run_config({}, [override])


def test_unknown_strategy_field_is_named() -> None:
    cfg = make_run_config({"space": "toy", "evaluator": "toy", "strategy": "re"}, ["strategy.popsize=3"])
    with pytest.raises(ConfigError, match=r"strategy: unknown field 'popsize'; known fields: avoid_repeats, population"):
        nf.build_components(cfg)


def test_yaml_file_nested_components(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("space: toy\nevaluator: toy\nstrategy:\n  name: re\n  population: 12\nbudget: 40\n")
    cfg = make_run_config(load_yaml(path), ["strategy.sample_size=4"])
    assert cfg.strategy == "re" and cfg.strategy_args == {"population": 12, "sample_size": 4}
    assert cfg.to_yaml_dict()["strategy"] == {"name": "re", "population": 12, "sample_size": 4}


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("space: toy\nbudget: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 3"):
        load_yaml(path)


def test_overrides_never_evaluate_code() -> None:
    data = apply_overrides({}, ["benchmark=__import__('os').system('echo hi')"])
    assert data["benchmark"] == "__import__('os').system('echo hi')"
