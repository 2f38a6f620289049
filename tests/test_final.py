"""Library-level final training: settings, files (weights without pickle, atomic writes), ``train --from`` a run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.cli import main
from nasforge.errors import ConfigError, DataError
from nasforge.final import (
    FinalConfig,
    best_stored_trial,
    final_config,
    load_weights,
    prepare_final,
    save_weights,
    search_model_args,
    train_final,
)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
TINY = {"C": 4, "N": 1}


# --------------------------------------------------------------------------- settings
def test_overrides_are_typed_through_the_config() -> None:
    base = {"model_args": {"C": 8, "N": 1}}
    config = final_config(base, ["train.lr=0.05", "model.N=3", "data.val_size=0.2", "seed=4", "space.x=1"])
    assert config.train_args == {"lr": 0.05} and config.data_args == {"val_size": 0.2} and config.seed == 4
    assert config.model_args == {"C": 8, "N": 3} and config.space_args == {"x": 1}
    assert base == {"model_args": {"C": 8, "N": 1}}  # the caller's mapping is not changed
    assert final_config(base, ["model_args={C: 2}"]).model_args == {"C": 2}  # a whole mapping replaces
    with pytest.raises(ConfigError, match="'optim' is not one of train, data, model, space"):
        final_config({}, ["optim.lr=1"])
    with pytest.raises(ConfigError, match="^seed: expected an integer"):
        final_config({}, ["seed=abc"])
    with pytest.raises(ConfigError, match="^unknown field 'epochs'"):
        final_config({}, ["epochs=3"])
    space = nf.create_space("nb201")
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        train_final(space, space.parse(ARCH), final_config({}, ["train.lr=fast"]))


def test_search_model_args_drop_the_supernet_options() -> None:
    config = nf.RunConfig(space="nb201", evaluator="supernet", strategy="enas",
                          evaluator_args={"model_args": {"C": 4, "N": 1, "running_stats": True, "shared_affine": True}})
    assert search_model_args(config) == {"C": 4, "N": 1}


# --------------------------------------------------------------------------- weights and files
def test_weights_round_trip_without_pickle(tmp_path: Path) -> None:
    model = nf.build("nb201", ARCH, C=4, N=1, in_channels=1, num_classes=10)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    path = save_weights(model.state_dict(), tmp_path / "w.npz")
    loaded = load_weights(path)
    state = model.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state)
    with np.load(path, allow_pickle=False) as arrays:  # a plain .npz: numpy reads it with pickles refused
        assert len(arrays.files) == len(state)
    assert [p.name for p in tmp_path.iterdir()] == ["w.npz"]  # the temporary file was renamed


def test_a_pickled_weights_file_is_refused_not_loaded(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, path)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load must not be called"))
    with pytest.raises(DataError, match="pickle"):
        load_weights(path)
    text = tmp_path / "w.npz"
    text.write_text("not a zip")
    with pytest.raises(DataError, match="not a nasforge weights file"):
        load_weights(text)


def test_train_final_writes_its_files_atomically_result_last(tmp_path: Path, monkeypatch) -> None:
    import nasforge.final as final

    space = nf.create_space("nb201")
    config = final_config({"model_args": TINY}, ["train.epochs=1"])
    done = train_final(space, space.parse(ARCH), config, tmp_path / "ok")
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["genotype.json", "model.npz", "result.json"]
    result = json.loads((tmp_path / "ok" / "result.json").read_text())
    assert result == json.loads(json.dumps(done.result, default=float))
    assert result["model_args"] == TINY and result["origin"]["model_args"] == "set here"

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(final, "save_weights", broken)
    with pytest.raises(OSError):
        train_final(space, space.parse(ARCH), config, tmp_path / "broken")
    assert not (tmp_path / "broken" / "result.json").exists()  # no result: the directory can be used again


def test_train_final_trains_as_the_train_evaluator_does() -> None:
    """How the retraining of ranked candidates calls it: the search's proxy as a FinalConfig, data loaded once."""
    from nasforge.evaluators.train import TrainEvaluator, TrainEvaluatorConfig
    from nasforge.final import load_final_data
    from nasforge.train import DataConfig, load_dataset

    space = nf.create_space("nb201")
    arch = space.parse(ARCH)
    proxy = TrainEvaluatorConfig(epochs=1, model_args=TINY, val_size=0.2)
    reward = TrainEvaluator(space, proxy, data=load_dataset("digits")).evaluate(arch, seed=3).reward
    config = FinalConfig(seed=3, model_args=TINY, train_args={"epochs": 1}, data_args=vars(proxy.data_config()))
    data = load_final_data(space, config)
    assert isinstance(proxy.data_config(), DataConfig)
    assert train_final(space, arch, config, data=data).result["val_accuracy"] == pytest.approx(reward)


# --------------------------------------------------------------------------- train --from a run
def _search(out: Path, budget: int, stop_after: int | None = None) -> nf.RunConfig:
    config = nf.make_run_config(
        {"space": "nb201", "strategy": "random", "evaluator": "train", "dataset": "digits", "budget": budget},
        ["evaluator.epochs=1", "evaluator.model_args={C: 4, N: 1}"],
    )

    def stop(trial, record):
        if stop_after is not None and record.n_evaluations >= stop_after:
            raise KeyboardInterrupt

    if stop_after is None:
        nf.search(config, out)
    else:
        with pytest.raises(KeyboardInterrupt):
            nf.search(config, out, callbacks=[stop])
    return config


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("final") / "search"
    _search(out, budget=6, stop_after=3)
    return out


def _store_best(run: Path) -> tuple[str, float]:
    db = sqlite3.connect((run / "run.db").resolve().as_uri() + "?immutable=1", uri=True)
    try:
        rows = db.execute("SELECT arch, reward FROM trials WHERE status = 'done' ORDER BY seq").fetchall()
    finally:
        db.close()
    best = max(rows, key=lambda r: r[1])  # the first of equals
    return best[0], best[1]


@pytest.mark.parametrize("result_file", ["partial", "missing"])
def test_train_from_an_interrupted_search_takes_its_best_so_far_read_only(interrupted, tmp_path, result_file) -> None:
    run = tmp_path / "copy"
    run.mkdir()
    for p in interrupted.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    partial = json.loads((run / "result.json").read_text())
    assert partial["complete"] is False and partial["n_evaluations"] == 3
    if result_file == "missing":  # killed before it wrote one
        (run / "result.json").unlink()
    else:  # a stale best: the store knows better
        partial["best"] = {"arch": ARCH, "reward": 0.0}
        (run / "result.json").write_text(json.dumps(partial))
    arch, reward = _store_best(run)
    assert arch != ARCH  # else the stale best would pass for the store's
    before = _snapshot(run)
    out = tmp_path / "final"
    assert main(["-q", "train", "--from", str(run), "--epochs", "1", "--out", str(out)]) == 0
    assert _snapshot(run) == before  # nothing written beside the store, nothing changed in it
    final = json.loads((out / "result.json").read_text())
    assert final["arch"] == arch and "interrupted search (3 of 6 evaluations finished)" in final["origin"]["arch"]
    # the search's own model size, said and recorded
    assert final["model_args"] == TINY and final["origin"]["model_args"] == "the run's"
    assert final["config"]["model"] == TINY
    assert final["params"] == sum(p.numel() for p in nf.build("nb201", arch, C=4, N=1, in_channels=1).parameters())


def test_the_store_is_read_with_its_pending_log(interrupted, tmp_path) -> None:
    run = tmp_path / "live"
    run.mkdir()
    for name in ("run.db", "config.yaml"):
        (run / name).write_bytes((interrupted / name).read_bytes())
    writer = sqlite3.connect(run / "run.db", isolation_level=None)  # a search still running: its log not merged
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("UPDATE trials SET reward = 1000 WHERE id = (SELECT MIN(id) FROM trials)")
        assert (run / "run.db-wal").exists()
        first = writer.execute("SELECT arch FROM trials ORDER BY id LIMIT 1").fetchone()[0]
        best, finished = best_stored_trial(run)
        assert best["arch"] == first and best["reward"] == 1000 and finished == 3
    finally:
        writer.close()


def test_the_model_size_of_the_run_unless_told_otherwise(interrupted) -> None:
    job = prepare_final(from_run=interrupted)
    assert job.config.model_args == TINY and job.config.dataset == "digits" and job.origin["model_args"] == "the run's"
    job = prepare_final(from_run=interrupted, overrides=["model.N=2"])
    assert job.config.model_args == {"C": 4, "N": 2}
    assert job.origin["model_args"] == "set here; the run's: C=4, N=1"
    assert prepare_final(from_run=interrupted, overrides=["model_args={C: 2}"]).config.model_args == {"C": 2}


def test_a_finished_search_hands_on_its_best(tmp_path) -> None:
    run = tmp_path / "search"
    _search(run, budget=2)
    result = json.loads((run / "result.json").read_text())
    job = prepare_final(from_run=run)
    assert str(job.arch) == result["best"]["arch"] and "the best of the search (2 evaluations)" in job.origin["arch"]


def test_export_refuses_pickled_weights_of_an_older_version(tmp_path, capsys) -> None:
    space = nf.create_space("nb201")
    out = tmp_path / "final"
    done = train_final(space, space.parse(ARCH), final_config({"model_args": TINY}, ["train.epochs=1"]), out)
    (out / "model.npz").unlink()
    torch.save(done.model.state_dict(), out / "model.pt")
    assert main(["-q", "export", str(out), "--format", "torchscript"]) == 2
    assert "pickle" in capsys.readouterr().err
