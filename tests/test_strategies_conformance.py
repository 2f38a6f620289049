"""Every registered strategy passes the conformance suite on the toy space."""

from __future__ import annotations

import pytest

import nasforge  # noqa: F401  (registers built-ins)
from nasforge.registry import STRATEGIES
from nasforge.testing import conformance

# differentiable strategies (darts, gdas) need a super-network, not the toy objective: tests/test_strategies_darts.py
NAMES = [n for n in STRATEGIES.names() if not STRATEGIES.get(n).capabilities.get("differentiable")]


@pytest.mark.parametrize("name", NAMES)
def test_ask_tell_contract(name: str) -> None:
    conformance.check_ask_tell(name)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_trajectory(name: str) -> None:
    conformance.check_determinism(name)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_mid_search(name: str) -> None:
    conformance.check_state_round_trip(name)


@pytest.mark.parametrize("name", NAMES)
def test_resume_equals_uninterrupted(name: str) -> None:
    conformance.check_resume(name)


@pytest.mark.parametrize("name", NAMES)
def test_finds_toy_optimum(name: str) -> None:
    conformance.check_finds_toy_optimum(name)  # asserts the optimum is found within the budget for every seed
