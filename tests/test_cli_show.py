"""Discoverability: every component's settings with defaults and help, ``show``, ``list --settings``, examples."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from nasforge.cli import main
from nasforge.cli.show import config_classes, registry
from nasforge.config import field_docs

KINDS = ("space", "strategy", "evaluator", "executor")


def _components() -> list[tuple[str, str]]:
    return [(kind, entry.name) for kind in KINDS for entry in registry(kind)]


@pytest.mark.parametrize("kind, name", _components())
def test_every_setting_says_what_it_does(kind: str, name: str) -> None:
    """A setting a user can pass with --set has a one-line help (the comment beside its field)."""
    entry = registry(kind).get(name)
    missing = [f"{cls.__name__}.{doc.name}" for _, cls in config_classes(entry.factory)
               for doc in field_docs(cls) if not doc.help]
    assert not missing, f"{kind} {name}: settings without a '# comment' beside their field: {missing}"


def test_field_docs_read_comments_defaults_and_inherited_fields() -> None:
    @dataclass
    class Base:
        a: int = 1  # the first

        # not about anything

        b: str = "x"  # the second,
        # continued here

    @dataclass
    class Child(Base):
        c: float = 0.5  # the third

    docs = {d.name: d for d in field_docs(Child)}
    assert docs["a"].help == "the first" and docs["a"].default == 1 and docs["a"].type == "int"
    assert docs["b"].help == "the second, continued here"
    assert docs["c"].help == "the third" and docs["c"].default == 0.5


def test_show_prints_settings_with_defaults(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "strategy", "enas"]) == 0
    out = capsys.readouterr().out
    assert "strategy reinforce" in out and "aliases: enas, rl" in out
    assert "strategy.lr" in out and "0.02" in out and "Adam step size" in out
    assert "--evaluator supernet" in out  # the one-shot defaults


def test_show_space_lists_model_arguments(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "space", "darts"]) == 0
    out = capsys.readouterr().out
    assert "space.nodes" in out and "evaluator.model_args.C" in out


@pytest.mark.parametrize("name", [entry.name for entry in registry("space")])
def test_every_space_that_builds_models_shows_their_arguments(name: str, capsys: pytest.CaptureFixture) -> None:
    from nasforge.spaces.base import SearchSpace

    factory = registry("space").get(name).factory
    if factory.build is SearchSpace.build:
        pytest.skip(f"space {name} builds no models")
    assert factory.model_args is not None, f"space {name} builds models but declares no model_args"
    assert main(["show", "space", name]) == 0
    out = capsys.readouterr().out
    for doc in field_docs(factory.model_args):  # a space may take another's (nasnet: the darts networks')
        assert f"evaluator.model_args.{doc.name}" in out


def test_show_unknown_component_is_one_line(capsys: pytest.CaptureFixture) -> None:
    assert main(["show", "strategy", "nope"]) == 2
    assert "unknown strategy 'nope'" in capsys.readouterr().err


def test_list_settings(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "strategies", "--settings"]) == 0
    out = capsys.readouterr().out
    assert "strategy.population" in out and "strategy.initial" in out


@pytest.mark.parametrize("command", ["search", "bench", "train", "derive", "export"])
def test_help_shows_examples_and_defaults(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"nasforge {command}" in out
    if command in ("search", "bench"):
        assert "(default 100)" in out.replace("\n", " ").replace("  ", " ")  # --budget
