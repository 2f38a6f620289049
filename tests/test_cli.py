from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasforge.cli import main
from nasforge.errors import NasforgeError
from nasforge.testing.tables import write_nb201_table


@pytest.fixture(scope="module")
def fake_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("table") / "fake-nb201.csv")


def _search(table: Path, out: Path, *extra: str) -> list[str]:
    return ["search", "--space", "nb201", "--benchmark", str(table), "--budget", "40", "--seed", "0",
            "--out", str(out), *extra]


def test_search_writes_a_complete_run_directory(fake_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "re0"
    assert main(_search(fake_table, out, "--strategy", "re", "--set", "strategy.population=10")) == 0
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "meta.json", "run.db", "result.json"}
    result = json.loads((out / "result.json").read_text())
    assert {"space", "strategy", "seed", "budget", "n_evaluations", "best", "history"} <= set(result)
    assert result["n_evaluations"] == 40 and len(result["history"]) == 40
    assert set(result["best"]) >= {"arch", "reward", "test_accuracy"}
    assert set(result["history"][0]) >= {"arch", "reward", "test_accuracy", "incumbent_test_accuracy", "cost", "time_s"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["nasforge_version"]
    assert "population: 10" in (out / "config.yaml").read_text()
    rows = sqlite3.connect(out / "run.db").execute("SELECT COUNT(*) FROM trials WHERE status='done'").fetchone()
    assert rows[0] == 40


@pytest.mark.parametrize("argv, message", [
    (["search", "--space", "nb201", "--strategy", "nope", "--benchmark", "{t}", "--out", "{o}"], "unknown strategy 'nope'"),
    (["search", "--space", "mars", "--benchmark", "{t}", "--out", "{o}"], "unknown space 'mars'"),
    (["search", "--space", "nb201", "--benchmark", "{t}", "--budget", "0", "--out", "{o}"], "budget: must be a positive"),
    (["search", "--space", "nb201", "--benchmark", "{t}", "--set", "strategy.x=1", "--out", "{o}"], "strategy: unknown field 'x'"),
    (["search", "--space", "nb201", "--benchmark", "{o}/missing.csv", "--out", "{o}"], "benchmark table not found"),
])
def test_bad_input_is_one_line_and_exit_2(fake_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                          argv: list[str], message: str) -> None:
    argv = [a.format(t=fake_table, o=tmp_path / "run") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    with pytest.raises(NasforgeError):
        main(["--debug", *argv])


def test_run_directory_of_another_configuration(fake_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert main(_search(fake_table, out, "--strategy", "rs")) == 0
    assert main(_search(fake_table, out, "--strategy", "re")) == 2
    err = capsys.readouterr().err
    assert "another configuration (strategy.name: 'rs' in the run, 're' now)" in err


def test_malformed_table_line_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table = tmp_path / "bad.csv"
    table.write_text("arch,val_acc_200,test_acc_200\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,x,1\n")
    assert main(_search(table, tmp_path / "r")) == 2
    assert "bad.csv:2: column 'val_acc_200': 'x' is not a number" in capsys.readouterr().err


def _run_cli(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nasforge", "-q", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _done(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        return sqlite3.connect(db).execute("SELECT COUNT(*) FROM trials WHERE status != 'running'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    args = ["--space", "toy", "--evaluator", "toy", "--strategy", "re", "--budget", "120", "--seed", "4",
            "--set", "evaluator.delay=0.02", "--set", "strategy.population=20"]
    killed = tmp_path / "killed"
    proc = _run_cli("search", *args, "--out", str(killed))
    deadline = time.time() + 60
    while _done(killed / "run.db") < 40 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = _done(killed / "run.db")
    assert 0 < n_before < 120, "the run should have been killed in the middle"
    resumed = _run_cli("search", "--resume", str(killed))
    assert resumed.wait(120) == 0, resumed.stderr.read()
    straight = _run_cli("search", *args, "--out", str(tmp_path / "straight"))
    assert straight.wait(120) == 0, straight.stderr.read()
    a = json.loads((killed / "result.json").read_text())
    b = json.loads((tmp_path / "straight" / "result.json").read_text())
    assert a["n_evaluations"] == 120
    assert [h["arch"] for h in a["history"]] == [h["arch"] for h in b["history"]]
    assert a["best"] == b["best"]
    ids = sqlite3.connect(killed / "run.db").execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM trials").fetchone()
    assert ids[0] == 120  # no evaluation recorded twice


def test_bench_writes_summary_and_curves(fake_table: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "--space", "nb201", "--benchmark", str(fake_table), "--strategies", "rs,re",
            "--budget", "60", "--seeds", "4", "--jobs", "2", "--out", str(out), "--strategy-set", "re.population=10"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "curves.png").stat().st_size > 10_000
    assert set(summary["optimum"]) >= {"arch", "test_accuracy"}
    for name in ("rs", "re"):
        entry = summary["strategies"][name]
        assert set(entry["incumbent_test_accuracy"]) == {"25", "50", "60"}  # and at the budget itself
        assert set(entry["incumbent_test_accuracy"]["50"]) == {"mean", "q25", "q75"}
        assert set(entry["samples_to_optimum"]) >= {"mean", "median", "found_fraction", "n_found", "mean_found"}
        assert entry["overhead_ms_per_query"]["median"] >= 0
    assert json.loads((out / "bench.json").read_text())["strategy_args"]["re"]["population"] == 10
    # A second call finds every job done and only rewrites the summary.
    before = (out / "runs" / "re" / "seed_0.json").stat().st_mtime
    assert main(argv[:-4] + ["--jobs", "1", "--out", str(out), "--strategy-set", "re.population=10"]) == 0
    assert (out / "runs" / "re" / "seed_0.json").stat().st_mtime == before


def test_list_names_registered_things(capsys: pytest.CaptureFixture) -> None:
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out
    assert "rs" in out and "re" in out


def test_progress_line_shows_loss_reward_baseline_and_entropy_of_a_one_shot_search() -> None:
    import nasforge as nf
    from nasforge.cli.search import _status
    from nasforge.run.loop import SearchRecord
    from nasforge.run.store import Trial

    space = nf.create_space("toy")
    strategy = nf.create_strategy("ednas", space, 0, warmup=2, batch_size=1)
    archs = strategy.ask(3)
    trials = [Trial(i, a, "done", result=nf.Result(float(i), {"train_loss": 2.5 - i})) for i, a in enumerate(archs)]
    strategy.tell(archs[:1], [trials[0].result])
    record = SearchRecord(space, trials[:1], 10)
    assert _status(trials[0], record, strategy) == "best reward 0.000  test -  loss 2.500  reward 0.000  warm-up left 1.000"
    strategy.tell(archs[1:], [t.result for t in trials[1:]])
    line = _status(trials[2], SearchRecord(space, trials, 10), strategy)
    assert "loss 0.500  reward 2.000" in line and "baseline" in line and "entropy" in line


def test_derive_command_rederives_a_one_shot_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "ws"
    assert main(["search", "--space", "nb201", "--evaluator", "supernet", "--strategy", "ednas", "--budget", "12",
                 "--out", str(run), "--set", "evaluator.model_args={C: 4, N: 1}"]) == 0
    capsys.readouterr()
    assert main(["derive", str(run), "--samples", "5", "--set", "evaluator.derive_batch=64"]) == 0
    err = capsys.readouterr().err
    assert "after 12 evaluations" in err and "best of 5 sampled from the policy" in err
    result = json.loads((run / "result.json").read_text())
    assert result["derived"]["n_samples"] == 5 and len(result["derived_history"]) == 1
    assert main(["derive", str(run), "--set", "strategy.lr=1"]) == 2
    assert "evaluator.KEY=VALUE" in capsys.readouterr().err
    written = (run / "result.json").read_text()
    assert main(["derive", str(run), "--samples", "3", "--no-write"]) == 0
    err = capsys.readouterr().err
    assert "not written (--no-write)" in err and "best of 3 sampled from the policy" in err
    assert (run / "result.json").read_text() == written


def test_derive_retrains_the_best_scored_candidates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "ws"
    assert main(["search", "--space", "nb201", "--evaluator", "supernet", "--strategy", "enas", "--budget", "12",
                 "--out", str(run), "--set", "evaluator.model_args={C: 4, N: 1, running_stats: true}",
                 "--set", "evaluator.resolution=4"]) == 0
    assert main(["derive", str(run), "--retrain-only"]) == 2
    assert "--retrain-top" in capsys.readouterr().err
    before = json.loads((run / "result.json").read_text())["derived"]
    assert main(["derive", str(run), "--retrain-only", "--retrain-top", "3", "--retrain-epochs", "1"]) == 0
    assert "best of 3 candidates trained for 1 epochs" in capsys.readouterr().err
    derived = json.loads((run / "result.json").read_text())["derived"]
    retrained = derived["retrained"]["candidates"]
    # the shared weights' three best, each with its own validation accuracy after one epoch from scratch
    assert [c["arch"] for c in retrained] == [c["arch"] for c in before["ranked"][:3]]
    assert all(0 <= c["retrained"] <= 100 for c in retrained)
    best = max(retrained, key=lambda c: c["retrained"])
    assert derived["retrained_best"] == {"arch": best["arch"], "score": best["retrained"]}
    assert derived["sampled_best"] == before["sampled_best"]  # nothing recorded is lost
    # the retrained pick is what the run hands on to training and export
    assert shlex.quote(best["arch"]) in derived["train_command"]
    from nasforge.export import run_genotype

    assert run_genotype(run)["arch"] == best["arch"]


def test_export_history_csv_has_every_evaluation_with_its_metrics(fake_table: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import csv

    out = tmp_path / "run"
    assert main(_search(fake_table, out, "--strategy", "rs", "--budget", "12")) == 0
    assert main(["export-history", str(out), "--csv"]) == 0
    rows = list(csv.DictReader((out / "history.csv").open()))
    result = json.loads((out / "result.json").read_text())
    assert len(rows) == 12 and [r["arch"] for r in rows] == [h["arch"] for h in result["history"]]
    assert list(rows[0])[:4] == ["n", "arch", "reward", "test_accuracy"]
    assert float(rows[3]["reward"]) == pytest.approx(result["history"][3]["reward"])
    capsys.readouterr()
    assert main(["export-history", str(out), "--out", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("n,arch,reward")


@pytest.mark.parametrize("after", [0.6, 1.2, 3.0])
def test_ctrl_c_at_any_moment_of_the_start_ends_with_one_line(tmp_path: Path, after: float) -> None:
    """While torch imports (the first seconds; the interrupt is held until the imports end, since raised inside
    torch's C++ start-up it can abort the process), while the subcommands load, or once the search runs: one line,
    never a traceback, and exit code 130."""
    args = ["search", "--space", "toy", "--evaluator", "toy", "--budget", "100000", "--set", "evaluator.delay=0.02",
            "--out", str(tmp_path / "run")]
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and "nasforge: interrupted" in err, err
