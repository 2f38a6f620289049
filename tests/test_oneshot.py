"""After a one-shot search: deriving again and retraining its ranked candidates."""

from __future__ import annotations

from pathlib import Path

import pytest

import nasforge as nf
from nasforge.errors import RunDirError
from nasforge.run.rundir import RunLock


def test_retraining_is_seeded_by_the_runs_seed(tmp_path: Path) -> None:
    config = nf.RunConfig(space="nb201", strategy="ednas", evaluator="supernet", budget=8, seed=3, dataset="digits",
                          evaluator_args={"model_args": {"C": 4, "N": 1}, "resolution": 4})
    nf.search(config, tmp_path / "ws")
    derived = nf.retrain_ranked(tmp_path / "ws", top=1, epochs=1)
    assert derived["retrained"]["seed"] == 3
    again = nf.retrain_ranked(tmp_path / "ws", top=1, epochs=1)
    assert again["retrained"] == derived["retrained"]  # the same seed trains the same way
    assert nf.retrain_ranked(tmp_path / "ws", top=1, epochs=1, seed=4)["retrained"]["seed"] == 4


def test_a_run_being_written_is_neither_derived_nor_retrained_until_its_writer_ends(tmp_path: Path) -> None:
    config = nf.RunConfig(space="nb201", strategy="ednas", evaluator="supernet", budget=8, seed=0, dataset="digits",
                          evaluator_args={"model_args": {"C": 4, "N": 1}, "resolution": 4})
    run = tmp_path / "ws"
    nf.search(config, run)
    before = (run / "result.json").read_text()
    with RunLock(run):  # a search still writing the run (or another derivation) holds it
        with pytest.raises(RunDirError, match=r"in use by another nasforge process \(pid \d+\).*--no-write"):
            nf.derive(run)
        with pytest.raises(RunDirError, match="in use by another nasforge process"):
            nf.retrain_ranked(run, top=1, epochs=1)
        files = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        # without writing, both read the run beside its writer: the latest checkpoint, the derivation given
        derived = nf.derive(run, seed=1, write=False)
        assert derived["checkpoint"] == 8 and derived["ranked"]
        retrained = nf.retrain_ranked(run, top=1, epochs=1, write=False, derived=derived)
        assert retrained["retrained"]["candidates"][0]["arch"] == derived["ranked"][0]["arch"]
        assert retrained["retrained_best"]["arch"] == derived["ranked"][0]["arch"]
        assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == files  # nothing written, nothing made
    assert (run / "result.json").read_text() == before
    nf.derive(run, seed=1)  # once the writer has ended
    nf.retrain_ranked(run, top=1, epochs=1)
    RunLock(run).release()  # and neither kept the lock
