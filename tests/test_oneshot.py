"""After a one-shot search: retraining its ranked candidates."""

from __future__ import annotations

from pathlib import Path

import nasforge as nf


def test_retraining_is_seeded_by_the_runs_seed(tmp_path: Path) -> None:
    config = nf.RunConfig(space="nb201", strategy="ednas", evaluator="supernet", budget=8, seed=3, dataset="digits",
                          evaluator_args={"model_args": {"C": 4, "N": 1}, "resolution": 4})
    nf.search(config, tmp_path / "ws")
    derived = nf.retrain_ranked(tmp_path / "ws", top=1, epochs=1)
    assert derived["retrained"]["seed"] == 3
    again = nf.retrain_ranked(tmp_path / "ws", top=1, epochs=1)
    assert again["retrained"] == derived["retrained"]  # the same seed trains the same way
    assert nf.retrain_ranked(tmp_path / "ws", top=1, epochs=1, seed=4)["retrained"]["seed"] == 4
