"""Parallel and distributed executors: full budgets, no duplicates, failures recorded and retried."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import nasforge as nf
from nasforge.errors import ConfigError
from nasforge.result import Result
from nasforge.run.executors import Done, Job
from nasforge.run.rundir import open_store
from nasforge.testing.tables import write_nb201_table


@pytest.fixture(scope="module")
def fake_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("t") / "fake.csv")


def _check_consistent(out: Path, budget: int) -> dict:
    result = json.loads((out / "result.json").read_text())
    assert result["n_evaluations"] == budget
    db = sqlite3.connect(out / "run.db")
    n, distinct, finished = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT id), SUM(status != 'running') FROM trials").fetchone()
    assert n == distinct == finished == budget, "every trial recorded once and finished"
    seqs = [r[0] for r in db.execute("SELECT seq FROM trials ORDER BY seq")]
    assert seqs == list(range(1, budget + 1)), "arrival order recorded without gaps"
    return result


def test_process_executor_on_a_table(fake_table: Path, tmp_path: Path) -> None:
    cfg = nf.RunConfig(space="nb201", benchmark=str(fake_table), evaluator="tabular", strategy="re",
                       budget=60, executor="process", workers=2, strategy_args={"population": 10})
    nf.search(cfg, tmp_path / "run")
    _check_consistent(tmp_path / "run", 60)


def test_process_executor_with_the_train_evaluator(tmp_path: Path) -> None:
    cfg = nf.RunConfig(space="nb201", evaluator="train", dataset="digits", strategy="rs", budget=4,
                       executor="process", workers=2,
                       evaluator_args={"epochs": 1, "fraction": 0.3, "model_args": {"C": 4, "N": 1}})
    record, _ = nf.search(cfg, tmp_path / "run")
    _check_consistent(tmp_path / "run", 4)
    assert all(not t.result.failed and 0 <= t.reward <= 100 for t in record.trials)
    assert all(t.result.metrics["params"] > 0 for t in record.trials)


@pytest.mark.parametrize("fault, kind", [("hang_every", "timeout"), ("exit_every", "lost")])
def test_process_executor_retries_raises_hangs_and_lost_workers(tmp_path: Path, fault: str, kind: str) -> None:
    # Each worker process raises on its 2nd call and hangs or dies on its 3rd.
    cfg = nf.RunConfig(space="toy", evaluator="faulty", strategy="re", budget=8, executor="process", workers=2,
                       trial_timeout=2.0, max_retries=3, evaluator_args={"raise_every": 2, fault: 3})
    record, result = nf.search(cfg, tmp_path / "run")
    _check_consistent(tmp_path / "run", 8)
    # a trial that kept landing on misbehaving calls may exhaust its retries: then its failure is its result
    assert all(t.attempts == 3 for t in record.trials if t.result.failed)
    kinds = {a["kind"] for a in open_store(tmp_path / "run").attempts()}
    assert kinds == {"exception", kind}


def test_sequential_executor_refuses_several_workers() -> None:
    cfg = nf.RunConfig(space="toy", evaluator="toy", workers=2)
    with pytest.raises(ConfigError, match="workers"):
        nf.search(cfg)


@contextlib.contextmanager
def _alarm(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: raise in the main thread after ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("fault", ["raise_at_start", "hang_at_start"])
def test_a_worker_that_never_starts_is_given_up(monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    from nasforge.run import process

    monkeypatch.setattr(process, "STARTUP_GRACE_S", 3.0)
    cfg = nf.RunConfig(space="toy", evaluator="faulty", strategy="rs", budget=4, executor="process", workers=1,
                       evaluator_args={fault: True})
    spawned = []
    spawn = process.ProcessExecutor._spawn
    monkeypatch.setattr(process.ProcessExecutor, "_spawn", lambda self: spawned.append(1) or spawn(self))
    with _alarm(240), pytest.raises(ConfigError, match=r"could not start \(3 attempts in a row.*--executor sequential"):
        nf.search(cfg)
    assert len(spawned) == process.MAX_START_FAILURES


class _FakeRay:
    """Just enough of Ray for the executor's bookkeeping: remote calls run at once, every result is ready."""

    class exceptions:  # mirrors ray.exceptions
        RayError = RuntimeError

    class _Ref:
        def __init__(self, value: object) -> None:
            self.value = value

    class _Method:
        def __init__(self, fn) -> None:
            self.fn = fn

        def remote(self, *args: object) -> _FakeRay._Ref:
            return _FakeRay._Ref(self.fn(*args))

    class _Actor:
        def __init__(self) -> None:
            self.where = _FakeRay._Method(lambda: "node")
            self.evaluate = _FakeRay._Method(lambda job: Done(job.trial_id, Result(1.0), 0.0))

    def is_initialized(self) -> bool:
        return True

    def remote(self, **options: object):
        return lambda cls: SimpleNamespace(remote=lambda config: _FakeRay._Actor())

    def wait(self, refs: list, num_returns: int = 1, timeout: float | None = None) -> tuple[list, list]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: _FakeRay._Ref) -> object:
        return ref.value

    def kill(self, actor: object) -> None:
        pass


def test_ray_jobs_are_tagged_with_their_own_actors_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from nasforge.run import ray_executor

    monkeypatch.setattr(ray_executor, "_import_ray", lambda: _FakeRay())
    cfg = nf.RunConfig(space="toy", evaluator="toy", executor="ray", workers=3)
    ex = ray_executor.RayExecutor(None, cfg)
    for i in range(3):
        ex.submit(Job(i, None, None, i))
    tags = {entry[1].trial_id: entry[3] for entry in ex.running.values()}
    assert sorted(tags.values()) == ["ray-actor-1", "ray-actor-2", "ray-actor-3"]
    assert all(tags[e[1].trial_id] == ex.names[e[0]] for e in ex.running.values())
    done = []
    while ex.pending():
        done += ex.wait()
    assert sorted(d.worker for d in done) == ["ray-actor-1", "ray-actor-2", "ray-actor-3"]


def _db_done(db: Path) -> int:
    try:
        return sqlite3.connect(db).execute("SELECT COUNT(*) FROM trials WHERE status != 'running'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_driver_killed_with_evaluations_in_flight_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--space", "toy", "--evaluator", "faulty", "--strategy", "re", "--budget", "40", "--seed", "1",
            "--executor", "process", "--workers", "2", "--set", "evaluator.delay=0.1", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "nasforge", "-q", "search", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _db_done(out / "run.db") < 10 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    db = sqlite3.connect(out / "run.db")
    running = db.execute("SELECT COUNT(*) FROM trials WHERE status = 'running'").fetchone()[0]
    db.close()
    assert 0 < _db_done(out / "run.db") < 40
    resumed = subprocess.run([sys.executable, "-m", "nasforge", "-q", "search", "--resume", str(out)],
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert running >= 1, "with two workers busy, some evaluations were in flight at the kill"
    _check_consistent(out, 40)  # ...and they were evaluated again on resume, each recorded once


#: seconds a stopped command has to end (it takes about one on an idle machine; unstopped, a test's would hang)
STOP_WITHIN_S = 20
#: seconds the hung evaluations of the tests below last, were they not stopped
HANG_S = 120
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc")


def _group_running(pgid: int) -> list[str]:
    """The processes of a process group still running (a zombie waiting for its reaper has ended)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        state, _, pgrp = text.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            found.append(text.split(")", 1)[0] + ")")
    return found


def _stop_like_a_terminal(tmp_path: Path, args: list[str], started: Callable[[], bool], *, to_group: bool = True,
                          sig: int = signal.SIGINT) -> subprocess.CompletedProcess:
    """Run ``nasforge args`` in its own process group; once ``started()``, send ``sig`` to the whole group (as a
    terminal's Ctrl-C or ``timeout`` does; then once more to the command alone, as ``timeout`` does) or to the
    command alone. Returns its exit code and stderr; fails if it does not end within :data:`STOP_WITHIN_S`, or if
    any of its processes outlives it."""
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "nasforge", *args], stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not started() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"it ended before it was stopped: {err.read_text()}"
        assert started(), "it did not start in 120 s"
        if to_group:
            os.killpg(proc.pid, sig)
        os.kill(proc.pid, sig)
        try:
            proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_WITHIN_S} s after the signal: {err.read_text()}")
        deadline = time.monotonic() + 10  # multiprocessing's resource tracker ends when it sees its parent gone
        while _group_running(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_running(proc.pid), "processes outlived the command"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err.read_text())


@needs_proc
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm-to-the-parent"])
def test_a_stopped_bench_ends_its_workers_at_once_and_quietly(tmp_path: Path, how: str) -> None:
    """Ctrl-C reaches the bench and its workers; SIGTERM to the bench alone, only the bench: either way it ends
    promptly with the interrupted line and no traceback, and no worker outlives it, though both are in the middle
    of an evaluation that would go on for minutes. Before, the workers died with tracebacks, and the bench now
    and then waited forever at exit for workers that waited for jobs."""
    out = tmp_path / "bench"
    # every 11th evaluation of a worker hangs: its first job (at most 10) is saved, the next ones hang; had the
    # jobs not started yet run on, those too would hang
    args = ["bench", "--space", "toy", "--evaluator", "faulty", "--strategies", "rs,re", "--seeds", "6",
            "--budget", "10", "--jobs", "2", "--set", "evaluator.hang_every=11",
            "--set", f"evaluator.hang_seconds={HANG_S}", "--out", str(out)]

    def saved() -> int:
        return len(list(out.glob("runs/*/seed_*.json")))

    done = _stop_like_a_terminal(tmp_path, args, lambda: saved() >= 2, to_group=how == "ctrl-c",
                                 sig=signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr, done.stderr
    assert saved() == 2, "the jobs cut short are not saved: they run again on resume"


@needs_proc
def test_a_search_stopped_with_ctrl_c_ends_its_workers_quietly_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C reaches the search and its worker processes: only the search reacts. Before, each worker printed a
    traceback ending in KeyboardInterrupt."""
    out = tmp_path / "run"
    args = ["search", "--space", "toy", "--evaluator", "faulty", "--strategy", "re", "--budget", "12", "--seed", "3",
            "--executor", "process", "--workers", "2", "--set", "evaluator.delay=0.2", "--out", str(out)]
    done = _stop_like_a_terminal(tmp_path, args, lambda: _db_done(out / "run.db") >= 3)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr, done.stderr
    assert _db_done(out / "run.db") < 12
    resumed = subprocess.run([sys.executable, "-m", "nasforge", "-q", "search", "--resume", str(out)],
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    _check_consistent(out, 12)


def test_closing_kills_a_worker_in_the_middle_of_an_evaluation() -> None:
    """A worker ignores Ctrl-C; the executor, closed, kills one that is evaluating at once (its result would be
    thrown away) instead of waiting for it."""
    from nasforge.run import process

    cfg = nf.RunConfig(space="toy", evaluator="faulty", strategy="rs", executor="process", workers=1,
                       evaluator_args={"hang_every": 1, "hang_seconds": HANG_S})
    ex = process.ProcessExecutor(None, cfg)
    arch = nf.create_space("toy").sample(np.random.default_rng(0))
    ex.submit(Job(0, arch, None, 0))
    (w,) = ex.workers
    try:
        assert w.conn.poll(120) and w.conn.recv() == "ready"
        w.ready = True
        ex._dispatch()  # the job goes to the worker, whose evaluation hangs
        os.kill(w.proc.pid, signal.SIGINT)
        time.sleep(0.5)
        assert w.proc.is_alive(), "a worker ignores Ctrl-C: its parent stops it"
        start = time.monotonic()
        ex.close()
        assert time.monotonic() - start < process.STOP_GRACE_S
        assert not w.proc.is_alive() and ex.workers == []
    finally:
        if w.proc.is_alive():
            w.proc.kill()


try:  # only the Ray tests below skip without the extra; the process executor's above always run
    import ray
except ImportError:
    ray = None
requires_ray = pytest.mark.skipif(ray is None, reason="the ray extra is not installed (pip install 'nasforge[ray]')")


@requires_ray
def test_ray_executor_local_instance(fake_table: Path, tmp_path: Path) -> None:
    cfg = nf.RunConfig(space="nb201", benchmark=str(fake_table), evaluator="tabular", strategy="rs",
                       budget=30, executor="ray", workers=2)
    nf.search(cfg, tmp_path / "run")
    _check_consistent(tmp_path / "run", 30)
    assert not ray.is_initialized(), "a Ray instance the executor started is shut down with it"


@requires_ray
def test_ray_two_node_cluster_survives_losing_a_node(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        doomed = cluster.add_node(num_cpus=2)
        cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address)
        cluster.wait_for_nodes()
        cfg = nf.RunConfig(space="toy", evaluator="faulty", strategy="re", budget=30, executor="ray", workers=2,
                           ray_address=cluster.address, evaluator_args={"delay": 0.2})
        removed: list[bool] = []

        def kill_node(trial, record) -> None:
            if record.n_evaluations == 8 and not removed:
                cluster.remove_node(doomed)
                removed.append(True)

        nf.search(cfg, tmp_path / "run", callbacks=[kill_node])
        assert removed
        _check_consistent(tmp_path / "run", 30)
        attempts = open_store(tmp_path / "run").attempts()
        assert attempts and all(a["kind"] == "lost" for a in attempts)
    finally:
        ray.shutdown()
        cluster.shutdown()


@requires_ray
def test_bench_runs_its_seeds_on_ray(fake_table: Path, tmp_path: Path) -> None:
    from nasforge.cli import main

    out = tmp_path / "bench"
    assert main(["bench", "--space", "nb201", "--benchmark", str(fake_table), "--strategies", "rs,re",
                 "--budget", "30", "--seeds", "2", "--executor", "ray", "--jobs", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"rs", "re"} and summary["n_seeds"] == 2
    assert len(list((out / "runs").glob("*/seed_*.json"))) == 4
