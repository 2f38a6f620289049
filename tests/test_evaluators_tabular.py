from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import nasforge as nf
from nasforge.cli import main
from nasforge.errors import ConfigError, DataError
from nasforge.evaluators.tabular import Table
from nasforge.testing.tables import COLUMNS, fake_nb201_rows, write_nb201_table

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def _evaluator(path: Path, fidelity: int | None = None, partial: bool = True) -> nf.evaluators.Evaluator:
    """The tabular evaluator of ``path``; most tables here hold a row or two, so a partial table is accepted
    unless ``partial=False``."""
    cfg = nf.RunConfig(space="nb201", evaluator="tabular", benchmark=str(path), fidelity=fidelity,
                       evaluator_args={"partial": True} if partial else {})
    return nf.create_evaluator(cfg, nf.create_space("nb201"))


def _small_table(tmp_path: Path, rows: list[str], header: str = ",".join(COLUMNS)) -> Path:
    path = tmp_path / "t.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_protocol_reward_is_validation_report_is_test(tmp_path: Path) -> None:
    path = _small_table(tmp_path, [f"{BEST},91.6,94.37,80.1,85.2,94.1,85.0"])
    ev = _evaluator(path)
    arch = nf.create_space("nb201").parse(BEST)
    res = ev.evaluate(arch)
    assert res.reward == 91.6 and res.test_accuracy == 94.37 and res.cost == 200
    low = _evaluator(path, fidelity=12).evaluate(arch)
    assert low.reward == 80.1 and low.test_accuracy == 94.37 and low.cost == 12
    assert ev.queries == 1 and ev.total_cost == 200


def test_a_table_with_training_times_costs_seconds(tmp_path: Path) -> None:
    header = ",".join(COLUMNS) + ",train_time_12,train_time_200"
    path = _small_table(tmp_path, [f"{BEST},91.6,94.37,80.1,85.2,94.1,85.0,850.5,14000.0"], header)
    ev = _evaluator(path)
    arch = nf.create_space("nb201").parse(BEST)
    assert ev.cost_unit == "seconds" and ev.fidelities == (12.0, 200.0)
    assert ev.evaluate(arch).cost == 14000.0 and ev.evaluate(arch, 12).cost == 850.5
    assert _evaluator(_small_table(tmp_path, [f"{BEST},91.6,94.37,80.1,85.2,94.1,85.0"])).cost_unit == "epochs"


def test_missing_architecture_is_a_failed_result(tmp_path: Path) -> None:
    path = _small_table(tmp_path, [f"{BEST},91.6,94.37,80.1,85.2,94.1,85.0"])
    other = nf.create_space("nb201").make([0] * 6)
    res = _evaluator(path).evaluate(other)
    assert res.failed and "not in" in res.error


@pytest.mark.parametrize("header, row, message", [
    ("arch,test_acc_200", f"{BEST},94.3", r"missing column 'val_acc_<epochs>'"),
    ("arch,val_acc_200", f"{BEST},91.0", r"missing column 'test_acc_200'"),
    ("arch,test_acc_200,val_acc_12,test_acc_12", f"{BEST},94.3,80.1,85.2", r"t.csv: missing column 'val_acc_200'"),
    (",".join(COLUMNS), BEST.replace("skip_connect", "conv_7x7") + ",1,2,3,4,5,6", r"t.csv:2: .*unknown operation 'conv_7x7'"),
    (",".join(COLUMNS), f"{BEST},91.6,n/a,80,85,94,85", r"t.csv:2: column 'test_acc_200': 'n/a' is not a number"),
    (",".join(COLUMNS), f"{BEST},91.6,94.37", r"t.csv:2: expected 7 fields, got 3"),
])
def test_malformed_tables_name_file_line_and_field(tmp_path: Path, header: str, row: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        _evaluator(_small_table(tmp_path, [row], header))


def test_duplicate_architecture_is_rejected(tmp_path: Path) -> None:
    row = f"{BEST},91.6,94.37,80.1,85.2,94.1,85.0"
    with pytest.raises(DataError, match=r"t.csv:3: duplicate architecture"):
        _evaluator(_small_table(tmp_path, [row, row]))


def test_missing_file_and_missing_flag(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="benchmark table not found"):
        _evaluator(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="--benchmark"):
        nf.create_evaluator(nf.RunConfig(space="nb201", evaluator="tabular"), nf.create_space("nb201"))
    with pytest.raises(ConfigError, match="fidelity: 7 is not in"):
        _evaluator(write_nb201_table(tmp_path / "f.csv"), fidelity=7)


def test_fake_full_table_optimum(tmp_path: Path) -> None:
    rows = fake_nb201_rows(0)
    ev = _evaluator(write_nb201_table(tmp_path / "f.csv", rows=rows), partial=False)
    arch, res = ev.optimum()
    best_row = max(rows, key=lambda r: round(r[1], 4))
    assert str(arch) == best_row[0] and res.test_accuracy == pytest.approx(best_row[2], abs=1e-4)


def test_real_table_facts(nb201_table: Path) -> None:
    ev = _evaluator(nb201_table, partial=False)
    table: Table = ev.table
    assert len(table.archs) == 15625
    arch, res = ev.optimum()
    assert res.reward == pytest.approx(91.607, abs=1e-3)
    assert res.test_accuracy == pytest.approx(94.373, abs=1e-3)
    tests = table.column("test_acc_200")
    assert res.test_accuracy == pytest.approx(tests.max(), abs=1e-3)
    assert np.mean(tests) == pytest.approx(87.06, abs=0.01)
    assert str(arch) == BEST


def test_cli_table_without_the_protocols_column_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    header = "arch,test_acc_200,val_acc_12,test_acc_12"
    path = _small_table(tmp_path, [f"{BEST},94.3,80.1,85.2"], header)
    argv = ["search", "--space", "nb201", "--benchmark", str(path), "--budget", "3", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t.csv: missing column 'val_acc_200'" in err[0]


def test_cli_search_whose_every_evaluation_failed_exits_non_zero(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    path = _small_table(tmp_path, [f"{BEST},91.6,94.37,80.1,85.2,94.1,85.0"])  # the search never meets BEST
    argv = ["search", "--space", "nb201", "--benchmark", str(path), "--budget", "3", "--out", str(tmp_path / "run"),
            "--set", "evaluator.partial=true"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "every evaluation failed" in err and "not in" in err


def test_a_table_lacking_architectures_of_the_space_is_refused_when_loaded(tmp_path: Path) -> None:
    rows = fake_nb201_rows(0)
    cut = write_nb201_table(tmp_path / "cut.csv", rows=rows[1:])
    with pytest.raises(DataError, match=r"cut.csv: holds 15,624 of the 15,625 architectures of space 'nb201' "
                                        rf"\(missing, for example, {re.escape(rows[0][0])}\)"):
        _evaluator(cut, partial=False)
    assert _evaluator(cut).table.value(nf.create_space("nb201").parse(rows[0][0]), "val_acc_200") is None
    assert len(_evaluator(write_nb201_table(tmp_path / "all.csv", rows=rows), partial=False).table.archs) == 15625


def test_cli_search_on_a_cut_table_exits_2_before_writing_anything(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    rows = [f"{r[0]},{','.join(f'{v:.4f}' for v in r[1:])}" for r in fake_nb201_rows(0)[:99]]
    path = _small_table(tmp_path, rows)  # as `head -100` of a table
    out = tmp_path / "run"
    argv = ["search", "--space", "nb201", "--strategy", "rs", "--benchmark", str(path), "--budget", "5",
            "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "t.csv: holds 99 of the 15,625 architectures" in err[0], err
    assert "evaluator.partial=true" in err[0] and not out.exists()
