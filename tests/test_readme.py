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
