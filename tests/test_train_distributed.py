"""Data-parallel training: two gloo processes take the steps one process takes on the combined batch."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pytest

from nasforge.testing.distributed import run_replicas, threads_after_leaving, train_small
from nasforge.train.distributed import Replicas

dist = pytest.importorskip("torch.distributed")
if not dist.is_available():
    pytest.skip("torch.distributed is not available in this torch build", allow_module_level=True)


@pytest.mark.parametrize("world, n", [(2, 32), (2, 33), (3, 10)])
def test_shares_cover_a_batch_once(world: int, n: int) -> None:
    parts = [Replicas(rank, world).share(n) for rank in range(world)]
    covered = [i for p in parts for i in range(p.start, p.stop)]
    assert covered == list(range(n)) and max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1


def test_two_processes_train_like_one_on_the_combined_batch(tmp_path) -> None:
    """Without batch norm the only difference is float summation order: weights agree to 1e-5 after 2 epochs
    (22 steps; the uneven last batch included)."""
    train_small(tmp_path / "one.npz")
    run_replicas(2, train_small, tmp_path / "two.npz")
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert set(one.files) == set(two.files)
    for key in one.files:
        assert np.allclose(one[key], two[key], atol=1e-5), key
    assert not np.allclose(one["0.weight"], _untrained()), "the weights must have moved"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread names from /proc (Linux)")
def test_leaving_the_group_stops_its_threads_after_an_optimiser_step_imported_dynamo(tmp_path) -> None:
    """torch.distributed.nn, imported once a group exists, holds the group in its default arguments: gloo's threads
    then outlive the group and abort a replica at exit now and then."""
    run_replicas(2, threads_after_leaving, tmp_path)
    for rank in (0, 1):
        names = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert [n for n in names["in"] if "gloo" in n], f"gloo's threads are not told by name here: {names['in']}"
        assert not [n for n in names["after"] if "gloo" in n], names["after"]


def _untrained() -> np.ndarray:
    from nasforge.testing.distributed import small_model

    return small_model().state_dict()["0.weight"].numpy()


def test_train_nproc_2_writes_one_result_from_rank_0(tmp_path) -> None:
    import json

    from nasforge.cli import main

    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    out = tmp_path / "run"
    code = main(["-q", "train", "--space", "nb201", "--arch", arch, "--dataset", "digits", "--epochs", "1",
                 "--set", "model.C=4", "--set", "model.N=1", "--set", "data.fraction=0.3", "--nproc", "2",
                 "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["replicas"] == 2 and result["train_images_per_s"] > 0 and result["test_accuracy"] > 0
    assert (out / "model.npz").exists() and {p.name for p in tmp_path.iterdir()} == {"run"}


def test_the_launcher_says_each_replicas_reason_once(tmp_path, capsys) -> None:
    from nasforge.cli._launch import _relay

    files = [tmp_path / "rank0.txt", tmp_path / "rank1.txt", tmp_path / "rank2.txt"]
    for f in files[:2]:
        f.write_text("nasforge: error: bad\n")
    _relay(files)  # rank 2 said nothing
    assert capsys.readouterr().err == "nasforge: error: bad\n"
    files[1].write_text("nasforge: error: other\n")
    _relay(files)
    assert capsys.readouterr().err == "nasforge: error: bad (replica 0)\nnasforge: error: other (replica 1)\n"


@pytest.mark.skipif(__import__("sys").platform != "linux", reason="the parent-death signal is Linux'")
def test_replicas_end_when_the_launcher_is_killed(tmp_path) -> None:
    """SIGKILL to the ``--nproc 2`` launcher (no chance to stop its replicas) ends the replicas too, instead of
    leaving them searching on unseen (they did, until the end of the budget)."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "run"
    launcher = subprocess.Popen([sys.executable, "-m", "nasforge", "-q", "search", "--space", "nb201", "--evaluator",
                                 "supernet", "--strategy", "enas", "--dataset", "digits", "--budget", "100000",
                                 "--set", "evaluator.model_args={C: 4, N: 1}", "--nproc", "2", "--out", str(out)],
                                stderr=subprocess.DEVNULL)

    def started() -> bool:
        try:
            return sqlite3.connect(out / "run.db").execute("SELECT COUNT(*) FROM trials").fetchone()[0] > 0
        except sqlite3.Error:
            return False

    deadline = time.time() + 300
    while not started() and time.time() < deadline and launcher.poll() is None:
        time.sleep(0.2)
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
    assert len(children) == 2, children
    launcher.send_signal(signal.SIGKILL)
    launcher.wait()

    def alive(pid: str) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.time() + 30
    while any(alive(c) for c in children) and time.time() < deadline:
        time.sleep(0.2)
    left = [c for c in children if alive(c)]
    for c in left:
        os.kill(int(c), signal.SIGKILL)
    assert not left, "replicas outlived their launcher"


def test_nproc_flag_is_removed_for_the_replicas() -> None:
    from nasforge.cli._launch import without_nproc

    assert without_nproc(["train", "--nproc", "2", "--epochs", "1", "--nproc=3"]) == ["train", "--epochs", "1"]


def test_two_process_one_shot_search_stays_in_step(tmp_path) -> None:
    """Both replicas see the same rewards, sample the same children and hold the same shared weights. Against one
    process on the combined batches they differ only through batch norm's per-replica statistics (16 images a
    replica here): before the policy's first update both train the same children, and every convolution's weights
    stay within 15% (mean relative difference) of the one-process ones after 4 steps."""
    from nasforge.testing.distributed import oneshot_small

    oneshot_small(tmp_path / "one", 4)
    run_replicas(2, oneshot_small, tmp_path / "two", 4)
    one = np.load(tmp_path / "one.rank0.npz")
    r0, r1 = np.load(tmp_path / "two.rank0.npz"), np.load(tmp_path / "two.rank1.npz")
    assert list(r0["archs"]) == list(r1["archs"]) == list(one["archs"])
    assert np.array_equal(r0["rewards"], r1["rewards"])
    weights = [k for k in one.files if k not in ("rewards", "archs") and not k.startswith("init:")]
    for key in weights:
        assert np.array_equal(r0[key], r1[key]), key  # replicas never drift apart
    untouched = [k for k in weights if np.array_equal(one[k], one[f"init:{k}"])]
    assert untouched, "some operations are in none of the 4 children"
    for key in untouched:  # no gradient on any replica: the optimiser leaves them alone, as in one process
        assert np.array_equal(r0[key], one[key]), key
    convs = [k for k in weights if one[k].ndim == 4]
    for key in convs:
        apart = np.abs(one[key] - r0[key]).mean() / np.abs(one[key]).mean()
        assert apart < 0.15, (key, apart)


@pytest.mark.parametrize("strategy, overrides", [("darts", ("strategy.order=2",)), ("gdas", ())],
                         ids=["darts-order-2", "gdas"])
def test_two_process_differentiable_search_stays_in_step(tmp_path, strategy: str, overrides: tuple) -> None:
    """darts and gdas under ``--nproc 2``: each replica computes the architecture gradient on its share of the
    validation batch and the gradients are summed (checked exactly below), so both replicas take the same
    architecture and weight steps and see the same rewards."""
    from nasforge.testing.distributed import oneshot_small

    oneshot_small(tmp_path / "one", 8, "nb201", strategy, overrides)
    run_replicas(2, oneshot_small, tmp_path / "two", 8, "nb201", strategy, overrides)
    one = np.load(tmp_path / "one.rank0.npz")
    r0, r1 = np.load(tmp_path / "two.rank0.npz"), np.load(tmp_path / "two.rank1.npz")
    assert list(r0["archs"]) == list(r1["archs"]) and np.array_equal(r0["rewards"], r1["rewards"])
    for key in (k for k in one.files if k not in ("rewards", "archs")):
        assert np.array_equal(r0[key], r1[key]), key  # replicas never drift apart
    for run in (one, r0):
        assert np.abs(run["policy"] - run["init:policy"]).max() > 0, "the architecture weights must learn"


def test_two_replicas_sum_the_architecture_gradient_of_the_whole_batch(tmp_path) -> None:
    """Each of two replicas takes its half of the validation (and training) batch; the summed first- and
    second-order architecture gradients and losses are one process' on the whole batch (two copies of the same
    images, so that batch norm's statistics agree too)."""
    from nasforge.testing.distributed import relaxed_gradients_small

    relaxed_gradients_small(tmp_path / "one")
    run_replicas(2, relaxed_gradients_small, tmp_path / "two")
    one = np.load(tmp_path / "one.rank0.npz")
    r0, r1 = np.load(tmp_path / "two.rank0.npz"), np.load(tmp_path / "two.rank1.npz")
    # the second order's central difference divides float summation differences by 2 eps
    for key, atol in (("first", 1e-6), ("second", 1e-4), ("exact", 1e-6), ("losses", 1e-6)):
        assert np.array_equal(r0[key], r1[key]), key
        assert np.allclose(r0[key], one[key], rtol=1e-4, atol=atol), (key, np.abs(r0[key] - one[key]).max())
    assert np.abs(one["first"]).max() > 1e-4 and not np.allclose(one["first"], one["second"])


@pytest.mark.parametrize("strategy, again", [("enas", "resume"), ("darts", "resume"), ("enas", "rerun")])
def test_a_killed_two_process_one_shot_search_resumes(tmp_path, strategy: str, again: str) -> None:
    """``--nproc 2``: interrupted after its first checkpoint (Ctrl-C to the launcher reaches both replicas) and
    resumed with ``--resume DIR --nproc 2``, or continued by the same command again, the search records what an
    uninterrupted two-process search records (a policy strategy's and a differentiable one's)."""
    import json
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    args = ["search", "--space", "nb201", "--evaluator", "supernet", "--strategy", strategy, "--dataset", "digits",
            "--budget", "45", "--seed", "3", "--set", "evaluator.model_args={C: 4, N: 1}", "--nproc", "2"]

    def cli(*extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "nasforge", "-q", *extra], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def checkpointed(db) -> bool:
        try:
            return sqlite3.connect(db).execute("SELECT COUNT(*) FROM checkpoint").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False

    killed = tmp_path / "killed"
    proc = cli(*args, "--out", str(killed))
    deadline = time.time() + 600
    while not checkpointed(killed / "run.db") and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) in (0, 130), proc.stderr.read()
    first = json.loads((killed / "result.json").read_text())["n_evaluations"]
    assert 0 < first < 45, "the search should have been stopped in the middle"
    resumed = cli("search", "--resume", str(killed), "--nproc", "2") if again == "resume" else cli(*args, "--out", str(killed))
    assert resumed.wait(600) == 0, resumed.stderr.read()
    straight = cli(*args, "--out", str(tmp_path / "straight"))
    assert straight.wait(600) == 0, straight.stderr.read()
    a = json.loads((killed / "result.json").read_text())
    b = json.loads((tmp_path / "straight" / "result.json").read_text())
    assert a["n_evaluations"] == 45 and a["replicas"] == b["replicas"] == 2
    assert [(h["arch"], h["reward"]) for h in a["history"]] == [(h["arch"], h["reward"]) for h in b["history"]]
    assert a["derived"]["sampled_best"] == b["derived"]["sampled_best"]



@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> dict[str, Any]:
    """One process and two replicas (one start for both tests: it costs seconds) score a fixed model and derive
    from the checkpoint of one short one-shot search."""
    from nasforge import api
    from nasforge.config import make_run_config
    from nasforge.testing.distributed import sharded_checks

    tmp = tmp_path_factory.mktemp("sharded")
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("a", "b"):
            (tmp / "images" / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                    tmp / "images" / split / cls / f"{i}.png")
    config = make_run_config({"space": "nb201", "strategy": "enas", "evaluator": "supernet", "dataset": "digits",
                              "budget": 24, "seed": 0},
                             ["evaluator.model_args={C: 4, N: 1}", "evaluator.batch_size=32", "evaluator.val_size=0.2"])
    api.search(config, tmp / "run")
    darts = make_run_config({"space": "nb201", "strategy": "darts", "evaluator": "supernet", "dataset": "digits",
                             "budget": 16, "seed": 0},
                            ["evaluator.model_args={C: 4, N: 1}", "evaluator.batch_size=32", "evaluator.val_size=0.2"])
    api.search(darts, tmp / "darts")
    sharded_checks(tmp / "one", tmp / "run", None, tmp / "darts")
    run_replicas(2, sharded_checks, tmp / "two", tmp / "run", tmp / "images", tmp / "darts")
    checks: dict[str, Any] = {name: (np.load(tmp / f"{name}.npz"), json.loads((tmp / f"{name}.json").read_text()),
                                     json.loads((tmp / f"{name}.darts.json").read_text()))
                              for name in ("one.rank0", "two.rank0", "two.rank1")}
    return {**checks, "dirs": {"run": tmp / "run", "darts": tmp / "darts"}}


def test_sharded_evaluation_scores_like_one_process(sharded) -> None:
    """Each of two replicas scores its share of every test batch (uneven last batch): the accuracy is one
    process', for batch norm with running statistics and for batch norm on each batch's statistics (synced over
    the replicas); and the synced outputs of two halves of a batch are those of the whole batch."""
    (one, _, _), (r0, _, _), (r1, _, _) = sharded["one.rank0"], sharded["two.rank0"], sharded["two.rank1"]
    for key in ("acc_running_True", "acc_running_False"):
        assert float(r0[key]) == float(r1[key]) == float(one[key]), key
    assert 0.5 < float(one["acc_running_True"]) < 1.0, "a trained model, not chance"
    assert int(r0["seen"]) + int(r1["seen"]) == int(one["seen"]) and abs(int(r0["seen"]) - int(r1["seen"])) <= 4
    assert len(r0["outputs"]) == len(r1["outputs"]) == 25
    assert np.allclose(np.concatenate([r0["outputs"], r1["outputs"]]), one["outputs"], atol=1e-5)


def test_two_process_derivation_is_one_process(sharded) -> None:
    """The derivation's candidates are split between the replicas, each scoring its candidates on every whole
    validation chunk: both replicas and one process derive the same architecture with the same scores."""
    (_, one, _), (_, r0, _), (_, r1, _) = sharded["one.rank0"], sharded["two.rank0"], sharded["two.rank1"]
    calls = [d.pop("score_calls") for d in (one, r0, r1)]
    assert calls[1] + calls[2] == calls[0] and abs(calls[1] - calls[2]) <= 1, f"candidates not split: {calls}"
    assert r0 == r1
    assert r0["sampled_best"]["arch"] == one["sampled_best"]["arch"]
    assert [c["arch"] for c in r0["ranked"]] == [c["arch"] for c in one["ranked"]]
    assert np.allclose([c["score"] for c in r0["ranked"]], [c["score"] for c in one["ranked"]], atol=1e-9)
    assert r0["most_likely"] == one["most_likely"]
    assert len({c["score"] for c in one["ranked"]}) > 1, "the candidates must score differently"


def test_two_process_perturbation_selection_is_one_process(sharded) -> None:
    """A darts search's perturbation-based selection splits each edge's removals between the replicas, each
    scoring its removals on every whole validation chunk: both replicas and one process keep the same operations
    with the same scores."""
    (_, _, one), (_, _, r0), (_, _, r1) = sharded["one.rank0"], sharded["two.rank0"], sharded["two.rank1"]
    calls = [d.pop("score_calls") for d in (one, r0, r1)]
    # each replica scores its share of the candidates and of each edge's removals; the pick each scores alike
    assert calls[1] + calls[2] == calls[0] + 1 and max(calls[1:]) < 0.6 * calls[0], f"work not split: {calls}"
    assert r0 == r1 == one
    steps = one["perturbed"]["steps"]
    assert len(steps) == 6 and all(len(s["removed"]) == 5 for s in steps)
    assert len({v for s in steps for v in s["removed"]}) > 1, "the removals must score differently"


def test_derive_nproc_2_derives_as_one_process_and_writes_once(sharded, tmp_path) -> None:
    """``nasforge derive RUN --nproc 2`` on a darts search (policy samples, then perturbation-based selection)
    records the derivation one process records, written by rank 0 alone."""
    import shutil

    from nasforge.cli import main

    runs = {}
    for name, extra in (("one", []), ("two", ["--nproc", "2"])):
        shutil.copytree(sharded["dirs"]["darts"], tmp_path / name)
        assert main(["-q", "derive", str(tmp_path / name), "--samples", "10", *extra]) == 0
        runs[name] = json.loads((tmp_path / name / "result.json").read_text())
    one, two = runs["one"], runs["two"]
    assert len(two["derived_history"]) == len(one["derived_history"]) == 1, "one new derivation, written once"
    assert two["derived"].pop("replicas") == 2 and "replicas" not in one["derived"]
    assert two["derived"] == one["derived"]
    assert one["derived"]["perturbed"]["arch"] and len(one["derived"]["ranked"]) > 1
    assert {p.name for p in tmp_path.iterdir()} == {"one", "two"}


def test_an_evaluation_failing_in_one_replica_stops_every_replica(tmp_path) -> None:
    """A one-shot search whose third evaluation raises in replica 1 alone: neither replica retries it or records a
    failure (which would put them out of step or leave one waiting); both stop with a ReplicaError, rank 0 because
    its next collective finds replica 1 gone, and what they recorded before stays."""
    from nasforge.testing.distributed import failing_search

    run_replicas(2, failing_search, tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r1["error"]["type"] == "ReplicaError" and "a failure of this replica alone" in r1["error"]["message"]
    assert r0["error"] is not None and r0["error"]["type"] == "ReplicaError", r0
    for r in (r0, r1):
        assert r["failed"] == 0 and r["attempts"] == 0, r
    assert r1["finished"] == 2 and r0["finished"] in (2, 3), (r0, r1)


def test_a_run_of_another_configuration_is_refused_by_every_replica(tmp_path) -> None:
    """``--out`` holding a run of another configuration: every replica refuses it (the others used to search on
    in a private copy and fail in collectives), the launcher says so once, and nothing is added to the run."""
    import subprocess
    import sys

    args = ["-q", "search", "--space", "nb201", "--evaluator", "supernet", "--strategy", "enas", "--dataset",
            "digits", "--set", "evaluator.model_args={C: 4, N: 1}", "--out", str(tmp_path / "run")]
    # as a user runs them, in new processes: replicas forked from a process that has computed with torch's
    # thread pool (this test process) can hang in it
    assert subprocess.run([sys.executable, "-m", "nasforge", *args, "--budget", "2"]).returncode == 0
    before = (tmp_path / "run" / "result.json").read_text()
    done = subprocess.run([sys.executable, "-m", "nasforge", *args, "--budget", "3", "--nproc", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("nasforge: error")]
    assert errors == [f"nasforge: error: {tmp_path / 'run'}: holds a run with another configuration (budget: 2 in "
                      f"the run, 3 now); use --resume {tmp_path / 'run'} or another --out"], done.stderr  # said once
    assert "Connection closed" not in done.stderr, done.stderr
    assert (tmp_path / "run" / "result.json").read_text() == before


def test_a_failing_replica_ends_the_command_with_its_code(tmp_path, capsys) -> None:
    """The replicas (forks of the launcher on Linux) report a bad argument as one process does: exit code 2."""
    from nasforge.cli import main

    code = main(["-q", "train", "--space", "nb201", "--arch", "|bogus~0|", "--nproc", "2", "--out",
                 str(tmp_path / "run")])
    assert code == 2
    assert not (tmp_path / "run" / "result.json").exists()


def test_replicas_decode_images_once(sharded) -> None:
    """Images not in the cache yet are decoded by rank 0 alone; the other replica reads its cache; once cached,
    neither decodes."""
    _, (r0, _, _), (r1, _, _) = sharded["one.rank0"], sharded["two.rank0"], sharded["two.rank1"]
    assert list(r0["decoded"]) == [1, 0] and list(r1["decoded"]) == [0, 0]
    assert np.array_equal(r0["images"], r1["images"]) and len(r0["images"]) == 6
