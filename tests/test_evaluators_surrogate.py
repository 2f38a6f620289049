from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import nasforge as nf
from conftest import shared_file
from nasforge.errors import ConfigError, DataError
from nasforge.evaluators.surrogate import COLUMNS, KEY_PREFIX, SurrogateEncoding, SurrogateEvaluator
from nasforge.spaces.base import SearchSpace


def _config(folder: Path | str | None, **kw: object) -> nf.RunConfig:
    return nf.RunConfig(space="darts", evaluator="surrogate", benchmark=None if folder is None else str(folder), **kw)


def _evaluator(folder: Path | str | None, space: SearchSpace | None = None, **kw: object) -> SurrogateEvaluator:
    return nf.create_evaluator(_config(folder, **kw), space or nf.create_space("darts"))


def _fake_encoding(space: SearchSpace) -> dict[str, dict[str, int]]:
    """An encoding of the real file's shape: '#na#' is 0, the labels follow in sorted order."""
    names = {d.name: d for d in space.decisions}
    return {KEY_PREFIX + c: {"#na#": 0, **{lab: i + 1 for i, lab in enumerate(sorted(names[c].labels))}}
            for c in COLUMNS}


@pytest.fixture
def folder() -> Path:
    pytest.importorskip("onnxruntime", reason="the surrogate needs onnxruntime: pip install 'nasforge[onnx]'")
    return shared_file("nb301-surrogate/model_v2.onnx").parent


@pytest.fixture(scope="module")
def real_cells() -> tuple[list[nf.Architecture], np.ndarray]:
    path = shared_file("nb301-surrogate/nb301-real-500.jsonl")
    space = nf.create_space("darts")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    archs = [space.from_genotype(r["normal"], r["reduce"]) for r in rows]
    return archs, np.array([r["val_accuracy"] for r in rows])


# ---------------------------------------------------------------------- encoding (no model needed)
def test_encoding_marks_unused_edges_and_follows_the_column_order() -> None:
    space = nf.create_space("darts")
    codes = _fake_encoding(space)
    enc = SurrogateEncoding(space, codes)
    arch = space.sample(np.random.default_rng(0))
    row = enc.encode([arch])[0]
    assert row.shape == (34,) and row.dtype == np.int32
    active = dict(zip((d.name for d in space.decisions), space.active(arch.choices)))
    labels = {d.name: d.labels[c] for d, c in zip(space.decisions, arch.choices)}
    for column, value in zip(COLUMNS, row):
        assert value == (codes[KEY_PREFIX + column][labels[column]] if active[column] else 0)
    # each cell has 4 nodes x 2 inputs = 8 chosen edges out of 14
    assert (row[:14] > 0).sum() == 8 and (row[14:28] > 0).sum() == 8 and (row[28:] > 0).all()


def test_encoding_of_a_batch_equals_row_by_row() -> None:
    space = nf.create_space("darts")
    enc = SurrogateEncoding(space, _fake_encoding(space))
    archs = [space.sample(np.random.default_rng(s)) for s in range(5)]
    np.testing.assert_array_equal(enc.encode(archs), np.concatenate([enc.encode([a]) for a in archs]))


def test_encoding_missing_a_value_is_a_data_error() -> None:
    space = nf.create_space("darts")
    codes = _fake_encoding(space)
    del codes[KEY_PREFIX + "edge_reduce_7"]["dil_conv_5x5"]
    with pytest.raises(DataError, match=r"'edge_reduce_7' has no code for 'dil_conv_5x5'"):
        SurrogateEncoding(space, codes)
    codes = _fake_encoding(space)
    del codes[KEY_PREFIX + "inputs_node_normal_4"]
    with pytest.raises(DataError, match=r"no entry .*inputs_node_normal_4"):
        SurrogateEncoding(space, codes)


# ---------------------------------------------------------------------- bad configuration
@pytest.mark.parametrize("space_args, message", [
    ({"ops": "enas"}, r"7 'darts' operations"),
    ({"nodes": 5}, r"4 nodes"),
])
def test_other_darts_configs_are_rejected(tmp_path: Path, space_args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _evaluator(tmp_path, nf.create_space("darts", **space_args))


def test_other_spaces_are_rejected(tmp_path: Path) -> None:
    cfg = nf.RunConfig(space="nb201", evaluator="surrogate", benchmark=str(tmp_path))
    with pytest.raises(ConfigError, match=r"works with spaces darts"):
        nf.create_evaluator(cfg, nf.create_space("nb201"))


def test_missing_benchmark_path_says_what_to_give() -> None:
    with pytest.raises(ConfigError, match=r"needs --benchmark PATH .*nb301-surrogate"):
        _evaluator(None)


def test_missing_folder_or_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope: NAS-Bench-301 surrogate folder not found .*model_v2.onnx"):
        _evaluator(tmp_path / "nope")
    with pytest.raises(DataError, match=r"model_v2.onnx: the ONNX model .* is missing"):
        _evaluator(tmp_path)
    (tmp_path / "model_v2.onnx").write_bytes(b"")
    with pytest.raises(DataError, match=r"encoding_v2.json: the column encoding .* is missing"):
        _evaluator(tmp_path)
    (tmp_path / "encoding_v2.json").write_text("{not json")
    with pytest.raises(DataError, match=r"encoding_v2.json: not a readable JSON file"):
        _evaluator(tmp_path)


def test_without_onnxruntime_the_error_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model_v2.onnx").write_bytes(b"")
    (tmp_path / "encoding_v2.json").write_text(json.dumps(_fake_encoding(nf.create_space("darts"))))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ConfigError, match=r"pip install 'nasforge\[onnx\]'"):
        _evaluator(tmp_path)


def test_a_file_that_is_not_a_model_is_a_data_error(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the surrogate needs onnxruntime: pip install 'nasforge[onnx]'")
    (tmp_path / "model_v2.onnx").write_bytes(b"not a model")
    (tmp_path / "encoding_v2.json").write_text(json.dumps(_fake_encoding(nf.create_space("darts"))))
    with pytest.raises(DataError, match=r"model_v2.onnx: cannot load the ONNX model"):
        _evaluator(tmp_path)


@pytest.mark.parametrize("fidelity", [0, 99])
def test_fidelity_outside_the_trained_epochs(folder: Path, fidelity: int) -> None:
    with pytest.raises(ConfigError, match=r"fidelity: the surrogate predicts epochs 1 to 98"):
        _evaluator(folder, fidelity=fidelity)


# ---------------------------------------------------------------------- the real surrogate
def test_predictions_rank_really_trained_cells(folder: Path, real_cells: tuple) -> None:
    archs, val_accuracy = real_cells
    ev = _evaluator(folder)
    rho = spearmanr(ev.predict(archs)[:, 0], val_accuracy).statistic
    assert rho >= 0.55  # README: 0.595 with the right column order
    # the alphabetical order of the column names (edge_normal_10 before edge_normal_2...) is wrong
    wrong = SurrogateEncoding(ev.space, json.loads((folder / "encoding_v2.json").read_text()),
                              columns=sorted(COLUMNS))
    rho_wrong = spearmanr(ev.predict_codes(wrong.encode(archs))[:, 0], val_accuracy).statistic
    assert rho_wrong < rho - 0.05


def test_result_protocol_and_fidelity(folder: Path, real_cells: tuple) -> None:
    arch = real_cells[0][0]
    full = _evaluator(folder).evaluate(arch)
    assert 80 < full.reward < 100 and not full.failed
    assert full.metrics["test_accuracy"] == full.reward == full.metrics["val_accuracy"]
    assert full.cost == full.metrics["runtime_s"] > 0 and full.metrics["val_cross_entropy"] > 0
    low_ev = _evaluator(folder, fidelity=10)
    low = low_ev.evaluate(arch)
    # a shorter training: lower accuracy, cheaper; the report stays the final (98-epoch) prediction
    assert low.reward < full.reward and low.cost < full.cost / 3
    assert low.metrics["test_accuracy"] == pytest.approx(full.reward, abs=1e-4)
    assert low_ev.evaluate(arch, fidelity=98).reward == pytest.approx(full.reward, abs=1e-4)
    assert low_ev.queries == 2 and low_ev.total_cost == pytest.approx(low.cost + full.cost, rel=1e-5)


def test_evaluator_survives_pickling(folder: Path, real_cells: tuple) -> None:
    archs = real_cells[0][:50]
    ev = _evaluator(folder)
    copy = pickle.loads(pickle.dumps(ev))
    assert copy._session is None  # rebuilt lazily in the receiving process
    assert [copy.evaluate(a).reward for a in archs] == [ev.evaluate(a).reward for a in archs]
    # its speed (about 0.3 ms a query on one core): benchmarks/evaluator_speed.py
    assert ev.optimum() is None  # not enumerable: benchmarks report no samples-to-optimum


def test_default_evaluator_of_darts_with_a_benchmark_is_the_surrogate() -> None:
    from nasforge.cli._common import default_evaluator

    assert default_evaluator("darts", "../shared/data/nb301-surrogate") == "surrogate"


def test_short_search_on_the_surrogate(folder: Path, tmp_path: Path) -> None:
    cfg = nf.RunConfig(space="darts", strategy="re", evaluator="surrogate", benchmark=str(folder),
                       budget=30, seed=1)
    record, result = nf.search(cfg, out=tmp_path / "run")
    rewards = [t.result.reward for t in record.trials]
    assert len(rewards) == 30 and not any(t.result.failed for t in record.trials)
    assert record.best.reward == max(rewards)
    again, _ = nf.search(cfg)
    assert [t.result.reward for t in again.trials] == rewards
