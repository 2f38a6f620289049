"""Run directories that survive what users do to them: damaged or emptied records, locks, read-only copies,
other working directories, finished runs, SIGTERM, and a real kill -9 after a sparse state save."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import nasforge as nf
from nasforge.cli import main
from nasforge.errors import RunDirError
from nasforge.run import RunStore, run_search
from nasforge.run.rundir import RESULT_FILE, RunLock, prepare_run_dir, resume_config
from nasforge.testing.tables import write_nb201_table
from nasforge.testing.toy import ToyEvaluator

SRC = Path(nf.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("table") / "fake-nb201.csv")


def _search(table: Path, out: Path, *extra: str, budget: int = 40) -> list[str]:
    return ["search", "--space", "nb201", "--benchmark", str(table), "--strategy", "re", "--budget", str(budget),
            "--seed", "1", "--set", "strategy.population=10", "--out", str(out), *extra]


def _one_line(capsys: pytest.CaptureFixture, *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def _history(run: Path) -> list[str]:
    return [h["arch"] for h in json.loads((run / RESULT_FILE).read_text())["history"]]


@pytest.fixture
def finished(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    run = tmp_path / "run"
    assert main(_search(table, run)) == 0
    capsys.readouterr()
    return run


# ----------------------------------------------------------------------------- bad records
def test_out_naming_a_file_is_one_line(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    assert main(_search(table, file)) == 2
    _one_line(capsys, f"{file}: exists and is not a directory")
    assert file.read_text() == "mine"


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_a_damaged_record_ends_resume_with_one_line(finished: Path, capsys: pytest.CaptureFixture, damage: str) -> None:
    db = finished / "run.db"
    data = db.read_bytes()
    db.write_bytes(os.urandom(len(data)) if damage == "random" else data[: len(data) // 3])
    result = (finished / RESULT_FILE).read_bytes()
    assert main(["search", "--resume", str(finished)]) == 2
    _one_line(capsys, str(db))
    assert main(["policy", str(finished), "--out", str(finished.parent / "plots")]) == 2  # readers too
    _one_line(capsys, str(db))
    assert (finished / RESULT_FILE).read_bytes() == result


def test_a_zero_byte_record_is_refused(finished: Path, capsys: pytest.CaptureFixture) -> None:
    (finished / "run.db").write_bytes(b"")
    result = (finished / RESULT_FILE).read_bytes()
    assert main(["search", "--resume", str(finished)]) == 2
    _one_line(capsys, "run.db: empty (0 bytes)")
    with pytest.raises(RunDirError, match="empty"):  # also through the library
        nf.resume(finished)
    assert (finished / RESULT_FILE).read_bytes() == result and (finished / "run.db").stat().st_size == 0


def test_an_emptied_record_is_refused(table: Path, finished: Path, capsys: pytest.CaptureFixture) -> None:
    db = sqlite3.connect(finished / "run.db")
    for tbl in ("trials", "events", "state", "attempts"):
        db.execute(f"DELETE FROM {tbl}")
    db.commit()
    db.close()
    assert main(["search", "--resume", str(finished)]) == 2
    _one_line(capsys, "holds no evaluations although result.json records 40")
    assert main(_search(table, finished)) == 2  # nor by searching into it again with the same config
    _one_line(capsys, "holds no evaluations")
    assert json.loads((finished / RESULT_FILE).read_text())["n_evaluations"] == 40


# ----------------------------------------------------------------------------- locks
def test_a_second_writer_is_refused_until_the_first_closes(table: Path, tmp_path: Path) -> None:
    config = nf.RunConfig(space="nb201", strategy="rs", benchmark=str(table), budget=5)
    first = prepare_run_dir(tmp_path / "run", config)
    with pytest.raises(RunDirError, match=r"in use by another nasforge process \(pid \d+\)"):
        prepare_run_dir(tmp_path / "run", config)
    first.close()
    prepare_run_dir(tmp_path / "run", config).close()


@contextlib.contextmanager
def _locked_by_another_process(run: Path) -> Iterator[int]:
    """``run``'s lock held by another process (its pid) within the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nasforge.run.rundir import RunLock; RunLock(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_resume_while_another_process_writes_is_one_line(finished: Path, capsys: pytest.CaptureFixture) -> None:
    with _locked_by_another_process(finished) as pid:
        assert main(["search", "--resume", str(finished), "--budget", "50"]) == 2
        _one_line(capsys, f"in use by another nasforge process (pid {pid})")
    assert yaml.safe_load((finished / "config.yaml").read_text())["budget"] == 40
    with RunLock(finished):  # released when its process ended
        pass


def test_a_replica_other_than_rank_0_leaves_the_lock_and_the_budget_to_rank_0(finished: Path) -> None:
    """Under ``--nproc`` every replica checks the run before joining the others; only rank 0 (``writer``) tries the
    lock and writes the new budget. Both replicas trying the lock at once, one of them found it taken and ended,
    and the other waited for it in the rendezvous."""
    with RunLock(finished):  # rank 0, say
        config, done = resume_config(finished, 50, writer=False)
        assert (config.budget, done) == (50, 40)
        assert yaml.safe_load((finished / "config.yaml").read_text())["budget"] == 40
        with pytest.raises(RunDirError, match="in use by another nasforge process"):
            resume_config(finished, 50)


def test_a_two_process_resume_of_a_run_in_use_ends_at_once_with_one_line(finished: Path) -> None:
    """Rank 0 finds the run in use and ends before the rendezvous; rank 1, already waiting in it (in C++, where
    Python's SIGTERM handler never runs), ends on the launcher's SIGTERM rather than being killed 30 s later."""
    with _locked_by_another_process(finished) as pid:
        resumed = subprocess.run([sys.executable, "-m", "nasforge", "-q", "search", "--resume", str(finished),
                                  "--budget", "50", "--nproc", "2"], capture_output=True, text=True, timeout=120,
                                 env={**os.environ, "PYTHONPATH": str(SRC)})
    assert resumed.returncode == 2, resumed.stderr
    assert resumed.stderr.splitlines() == [f"nasforge: error: {finished}: in use by another nasforge process "
                                           f"(pid {pid}); wait for it to end or stop it"]
    assert yaml.safe_load((finished / "config.yaml").read_text())["budget"] == 40


# ----------------------------------------------------------------------------- readers
def test_readers_leave_the_record_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "lanas"
    assert main(["search", "--space", "toy", "--evaluator", "toy", "--strategy", "lanas", "--budget", "30",
                 "--out", str(run)]) == 0
    db = run / "run.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=DELETE")  # a copy as an archive or a read-only mount holds it
    conn.close()
    before = db.read_bytes()
    capsys.readouterr()
    assert main(["lanas-tree", str(run)]) == 0
    assert main(["policy", str(run), "--out", str(tmp_path / "plots")]) == 0
    _, record, store = nf.load_record(run)
    store.close()
    assert record.n_evaluations == 30
    assert db.read_bytes() == before and not (run / "run.db-wal").exists()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_lanas_tree_of_an_interrupted_run_includes_what_was_recorded_after_the_last_save(tmp_path: Path) -> None:
    from nasforge.cli.lanas_tree import tree_description
    from nasforge.strategies.lanas import describe_tree

    config = nf.RunConfig(space="toy", strategy="lanas", evaluator="toy", budget=40)
    run = tmp_path / "run"
    space = nf.create_space("toy")

    class Stop(Exception):
        pass

    def stop(trial, record) -> None:
        if record.n_evaluations == 23:
            raise Stop

    store = prepare_run_dir(run, config)
    with pytest.raises(Stop):
        run_search(space, nf.create_strategy("lanas", space, 0), ToyEvaluator(space), 40, store=store,
                   state_every=10, callbacks=[stop])
    store.save_state = lambda *a, **k: None  # type: ignore[method-assign]
    store.close()
    straight = nf.create_strategy("lanas", space, 0)
    run_search(space, straight, ToyEvaluator(space), 23)
    assert tree_description(str(run)) == describe_tree(straight)


# ----------------------------------------------------------------------------- paths, finished runs, budgets
def test_a_run_directory_works_from_any_working_directory(table: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(table.parent)
    argv = _search(Path(table.name), tmp_path / "run")
    argv[argv.index("--budget") + 1] = "20"
    assert main(argv) == 0
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["benchmark"] == str(table)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--resume", str(tmp_path / "run"), "--budget", "30"]) == 0
    assert len(_history(tmp_path / "run")) == 30


def test_resuming_a_finished_run_says_so_and_evaluates_nothing(finished: Path, capsys: pytest.CaptureFixture) -> None:
    result = (finished / RESULT_FILE).read_bytes()
    assert main(["search", "--resume", str(finished)]) == 0
    assert "finished (40 of 40 evaluations), nothing to do" in capsys.readouterr().err
    assert (finished / RESULT_FILE).read_bytes() == result
    record, again = nf.resume(finished)
    assert record.n_evaluations == 40 and again == json.loads(result)


def test_budget_extends_a_finished_run_with_the_same_history(table: Path, finished: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["search", "--resume", str(finished), "--budget", "70"]) == 0
    assert yaml.safe_load((finished / "config.yaml").read_text())["budget"] == 70
    result = json.loads((finished / RESULT_FILE).read_text())
    assert result["n_evaluations"] == 70 and result["complete"]
    assert main(_search(table, tmp_path / "straight", budget=70)) == 0
    assert _history(finished) == _history(tmp_path / "straight")
    capsys.readouterr()
    assert main(["search", "--resume", str(finished), "--budget", "50"]) == 2
    _one_line(capsys, "--budget 50", "already finished 70 evaluations")
    assert main(["search", "--resume", str(finished), "--seed", "3"]) == 2
    _one_line(capsys, "only --budget may change", "--seed")


# ----------------------------------------------------------------------------- signals and kills
def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "nasforge", "-q", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _done(db: Path) -> int:
    try:
        return sqlite3.connect(db).execute("SELECT COUNT(*) FROM trials WHERE status != 'running'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path: Path) -> None:
    args = ["--space", "toy", "--evaluator", "toy", "--strategy", "ednas", "--budget", "80", "--seed", "2",
            "--set", "evaluator.delay=0.02"]
    run = tmp_path / "run"
    proc = _cli("search", *args, "--out", str(run))
    deadline = time.time() + 60
    while _done(run / "run.db") < 20 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    err = proc.stderr.read()
    assert code == 130, err
    assert f"continue with `nasforge search --resume {run}`" in err and "Traceback" not in err
    partial = json.loads((run / RESULT_FILE).read_text())
    assert 0 < partial["n_evaluations"] < 80 and not partial["complete"]
    assert _cli("search", "--resume", str(run)).wait(120) == 0
    straight = _cli("search", *args, "--out", str(tmp_path / "straight"))
    assert straight.wait(120) == 0
    assert _history(run) == _history(tmp_path / "straight")


KILLED_RUN = """
import os, signal, sys
import nasforge as nf
from nasforge.run import RunStore, run_search
from nasforge.testing.toy import ToyConfig, ToyEvaluator

space = nf.create_space("toy")
slow = ToyEvaluator(space, ToyConfig(delay=0.06))  # each result is committed at once (RunStore.commit_risk)

def kill(trial, record):
    if record.n_evaluations == 33:
        os.kill(os.getpid(), signal.SIGKILL)

run_search(space, nf.create_strategy("reinforce", space, 3), slow, 60, seed=3,
           store=RunStore(sys.argv[1]), state_every=10, callbacks=[kill])
"""


def test_kill_9_after_a_sparse_state_save_resumes_by_replay(tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(path)],
                          env={**os.environ, "PYTHONPATH": str(SRC)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    space = nf.create_space("toy")
    with RunStore(path, readonly=True) as store:
        trials = store.load(space.from_dict)
        saved_after, _ = store.load_state()
        assert saved_after < store.last_event, "events after the last saved state are replayed"
    n_recorded = sum(t.finished for t in trials)
    assert n_recorded == 33
    evaluator = ToyEvaluator(space)
    resumed = run_search(space, nf.create_strategy("reinforce", space, 3), evaluator, 60, seed=3, store=RunStore(path))
    assert evaluator.queries == 60 - n_recorded
    straight = run_search(space, nf.create_strategy("reinforce", space, 3), ToyEvaluator(space), 60, seed=3)
    assert [t.arch for t in resumed.trials] == [t.arch for t in straight.trials]


# ----------------------------------------------------------------------------- bench
def test_bench_resume_continues_the_recorded_bench(table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--space", "nb201", "--benchmark", str(table), "--strategies", "rs,re", "--budget", "30",
                 "--seeds", "2", "--jobs", "1", "--out", str(out)]) == 0
    (out / "runs" / "re" / "seed_1.json").unlink()
    assert main(["bench", "--resume", str(out), "--jobs", "1"]) == 0
    assert (out / "runs" / "re" / "seed_1.json").exists()
    capsys.readouterr()
    assert main(["bench", "--resume", str(out), "--seeds", "3"]) == 2
    _one_line(capsys, "--seeds")


def test_interrupt_hints_name_the_command_that_continues(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    import nasforge.cli.bench as bench_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("nasforge.bench.run_bench", interrupted)
    out = tmp_path / "b"
    assert main(["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "5",
                 "--seeds", "1", "--out", str(out)]) == 130
    assert f"continue with `nasforge bench --resume {out}`" in capsys.readouterr().err
    assert bench_cli  # the bench command module is what the hint is for


def test_resume_config_checks_before_anything_runs(finished: Path) -> None:
    config, done = resume_config(finished)
    assert done == 40 and config.budget == 40
    with pytest.raises(RunDirError, match="not a nasforge run directory"):
        resume_config(finished / "nothing")
