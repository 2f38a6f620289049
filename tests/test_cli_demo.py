"""``nasforge demo --out DIR``: it clears only what an earlier demo wrote, never a directory it did not make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasforge.cli import main
from nasforge.cli.demo import MARKER, _made_by_demo

TINY = ["--budget", "2", "--epochs", "1", "--final-epochs", "1", "--strategy", "rs"]


@pytest.fixture(autouse=True)
def _one_thread_after() -> None:
    yield
    torch.set_num_threads(1)


def test_a_directory_the_demo_did_not_make_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["demo", "--out", str(out), *TINY]) == 2
    assert main(["demo", "--out", str(out), "--keep", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "was not made by `nasforge demo`" in err[0] and "nothing was deleted" in err[0]
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]
    assert (out / "thesis.tex").read_text() == "years of work"


def test_out_naming_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "f"
    out.write_text("x")
    assert main(["demo", "--out", str(out), *TINY]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert out.read_text() == "x"


def test_what_makes_a_directory_a_demo_s(tmp_path: Path) -> None:
    old = tmp_path / "old"
    (old / "search").mkdir(parents=True)
    (old / "final").mkdir()
    meta = old / "search" / "meta.json"
    meta.write_text(json.dumps({"command": "__main__.py search --space nb201 --out old/search"}))
    assert not _made_by_demo(old)  # a search of the user's own, laid out like a demo's
    meta.write_text(json.dumps({"command": "__main__.py demo --out old"}))
    assert _made_by_demo(old)  # written before the marker existed: just the two runs of a demo
    (old / "notes.txt").write_text("mine")
    assert not _made_by_demo(old)
    (old / MARKER).write_text("")
    assert _made_by_demo(old)


def test_a_second_demo_starts_afresh_and_keeps_the_user_s_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "search").mkdir(parents=True)
    (out / "search" / "stale.txt").write_text("from the last demo")
    (out / MARKER).write_text("")
    (out / "notes.txt").write_text("mine")
    assert main(["-q", "demo", "--out", str(out), *TINY]) == 0
    assert not (out / "search" / "stale.txt").exists()
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "final" / "result.json").read_text())["epochs"] == 1
