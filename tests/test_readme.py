"""The README's Python examples run as written (those that need no shared data)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    start = text.index(heading)
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_custom_evaluator_and_callbacks(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from nasforge.registry import EVALUATORS

    monkeypatch.setattr(EVALUATORS, "_entries", dict(EVALUATORS._entries))  # the example registers a name
    namespace: dict = {}
    exec(compile(_block_after("### A custom evaluator and callbacks"), str(README), "exec"), namespace)
    record, result = namespace["record"], namespace["result"]
    assert record.n_evaluations == 30 and result["best"]["reward"] == record.best.outcome.reward
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("30 evaluations, best so far")


def test_every_registered_component_has_its_line() -> None:
    """The README's "What is registered" lists every space, strategy, evaluator and executor of the package."""
    import nasforge  # noqa: F401  (registers built-ins)
    from nasforge.registry import EVALUATORS, SPACES, STRATEGIES
    from nasforge.run.executors import EXECUTORS

    text = README.read_text()
    section = text[text.index("### What is registered"):text.index("An `Architecture` is an immutable")]
    missing = [f"{reg.kind} {entry.name}" for reg in (SPACES, STRATEGIES, EVALUATORS, EXECUTORS) for entry in reg
               if not entry.factory.__module__.startswith("nasforge.testing") and f"`{entry.name}`" not in section]
    assert not missing, f"README.md 'What is registered' lacks: {missing}"
