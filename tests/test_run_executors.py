"""Parallel and distributed executors: full budgets, no duplicates, failures recorded and retried."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nasforge as nf
from nasforge.errors import ConfigError
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

        def kill_node(trial, record) -> None:  # noqa: ANN001
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
