from __future__ import annotations

import pytest

import nasforge
import nasforge.registry as R
from nasforge.errors import NasforgeError
from nasforge.registry import Registry
from nasforge.run.executors import EXECUTORS


def test_register_create_and_select_by_capability() -> None:
    reg: Registry = Registry("widget")

    @reg.register("a", aliases=("alpha",), fast=True)
    class A:
        """An A."""

        def __init__(self, x: int = 1) -> None:
            self.x = x

    @reg.register("b", fast=False)
    class B:
        pass

    assert reg.create("alpha", x=3).x == 3
    assert reg.names(fast=True) == ["a"] and reg.names() == ["a", "b"]
    assert reg.get("a").summary == "An A."
    with pytest.raises(ValueError, match="twice"):
        reg.register("a")(B)
    with pytest.raises(NasforgeError, match="unknown widget 'c'; known widgets: a, b"):
        reg.get("c")


def test_builtins_are_registered() -> None:
    assert {"rs", "re"} <= set(nasforge.STRATEGIES.names())
    assert {"nb201", "toy"} <= set(nasforge.SPACES.names())
    assert "tabular" in nasforge.EVALUATORS.names(benchmark=True)


@pytest.mark.parametrize("registry, plural", [
    ("STRATEGIES", "strategies"), ("SPACES", "spaces"), ("EVALUATORS", "evaluators"), ("EXECUTORS", "executors"),
])
def test_unknown_name_lists_the_known_ones_in_plain_english(registry: str, plural: str) -> None:
    reg = EXECUTORS if registry == "EXECUTORS" else getattr(R, registry)
    with pytest.raises(NasforgeError, match=rf"unknown {reg.kind} 'nope'; known {plural}: "):
        reg.get("nope")
