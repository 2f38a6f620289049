"""Bad input ends as one line on stderr and exit code 2, before anything is written that would block the
corrected command: executors and their settings, seeds, output paths, a Ray cluster that cannot be joined."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

import nasforge as nf
from nasforge.cli import main
from nasforge.cli._common import check_output_dir, check_output_file
from nasforge.errors import ConfigError, NasforgeError
from nasforge.factory import check_executor, check_seed
from nasforge.testing.tables import write_nb201_table

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def fake_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nb201_table(tmp_path_factory.mktemp("table") / "fake-nb201.csv")


@pytest.fixture(scope="module")
def lanas_run(fake_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search on NB201 cells with a policy and a tree to draw, and a best architecture to export."""
    out = tmp_path_factory.mktemp("runs") / "lanas"
    assert main(["-q", "search", "--space", "nb201", "--benchmark", str(fake_table), "--strategy", "lanas",
                 "--budget", "12", "--out", str(out)]) == 0
    return out


def _one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run ``argv``; it must end with exit code 2 and one line on stderr (no traceback). Returns the line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("INFO ")]
    assert len(err) == 1 and err[0].startswith("nasforge: error: ") and "Traceback" not in err[0], err
    return err[0]


def _toy_search(out: Path, *extra: str) -> list[str]:
    return ["search", "--space", "toy", "--evaluator", "toy", "--strategy", "rs", "--budget", "4", "--out", str(out),
            *extra]


# ---------------------------------------------------------------------- A: checked before anything is written
@pytest.mark.parametrize("extra, message", [
    (["--executor", "nope"], "unknown executor 'nope'; known executors: process, ray, sequential"),
    (["--workers", "2"], "workers: the sequential executor has one worker"),
    (["--executor", "process", "--workers", "2", "--cpus-per-trial", "0"], "cpus_per_trial: must be positive, got 0"),
    (["--executor", "process", "--workers", "2", "--gpus-per-trial", "-1"], "gpus_per_trial: must be 0 or more"),
])
def test_a_bad_executor_is_refused_before_the_run_directory_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str) -> None:
    out = tmp_path / "run"
    assert message in _one_line_error(capsys, _toy_search(out, *extra))
    assert not out.exists()
    assert main(["-q", *_toy_search(out)]) == 0  # the corrected command is not refused


def test_a_one_shot_search_on_another_process_is_refused_before_its_data_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    start = time.perf_counter()
    line = _one_line_error(capsys, ["search", "--space", "nb201", "--strategy", "darts", "--evaluator", "supernet",
                                    "--executor", "process", "--budget", "4", "--out", str(out)])
    assert "executor: a one-shot search keeps its shared weights in one process" in line
    assert not out.exists() and time.perf_counter() - start < 10


def test_check_executor_names_the_setting() -> None:
    with pytest.raises(NasforgeError, match="unknown executor 'nope'"):
        check_executor(nf.RunConfig(executor="nope"))
    with pytest.raises(ConfigError, match="workers: the sequential executor has one worker"):
        check_executor(nf.RunConfig(workers=3))
    check_executor(nf.RunConfig(executor="process", workers=3, cpus_per_trial=0.5))


def test_a_bench_of_bad_settings_writes_nothing_and_a_changed_one_names_the_field(
        fake_table: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bench"

    def bench(*extra: str) -> list[str]:
        return ["bench", "--space", "nb201", "--benchmark", str(fake_table), "--strategies", "rs", "--seeds", "1",
                "--budget", "3", "--out", str(out), *extra]

    # `--set evaluator.model_args={C:8,N:1}`: YAML reads the key 'C:8', which the evaluator refuses when built
    line = _one_line_error(capsys, ["bench", "--space", "nb201", "--evaluator", "train", "--dataset", "digits",
                                    "--strategies", "rs", "--seeds", "1", "--budget", "2", "--out", str(out),
                                    "--set", "evaluator.epochs=1", "--set", "evaluator.model_args={C:8,N:1}"])
    assert "model: unknown field 'C:8'" in line and not out.exists()
    assert "unknown executor 'nope'" in _one_line_error(capsys, bench("--executor", "nope"))
    assert not out.exists()
    assert main(["-q", *bench("--set", "evaluator.cost_model_args={C: 8, N: 1}")]) == 0
    line = _one_line_error(capsys, bench("--set", "evaluator.cost_model_args={C: 8, N: 2}"))
    assert "holds a bench of another configuration (base.evaluator.cost_model_args.N: 1 in the bench, 2 now)" in line
    line = _one_line_error(capsys, bench("--set", "evaluator.cost_model_args={C: 8, N: 1}", "--budget", "4"))
    assert "(base.budget: 3 in the bench, 4 now)" in line


# ---------------------------------------------------------------------- B: seeds
@pytest.mark.parametrize("argv", [
    ["search", "--space", "toy", "--evaluator", "toy", "--budget", "3", "--seed", "-1", "--out", "{o}"],
    ["search", "--space", "toy", "--evaluator", "toy", "--budget", "3", "--set", "seed=-1", "--out", "{o}"],
    ["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "3", "--seed", "-1",
     "--out", "{o}"],
    ["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "3", "--seeds=2,-1",
     "--out", "{o}"],
    ["train", "--space", "nb201", "--arch", ARCH, "--seed", "-1", "--out", "{o}"],
    ["train", "--space", "nb201", "--arch", ARCH, "--set", "seed=-1", "--out", "{o}"],
])
def test_a_negative_seed_is_one_line_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      argv: list[str]) -> None:
    out = tmp_path / "out"
    line = _one_line_error(capsys, [a.format(o=out) for a in argv])
    assert line.endswith("must be an integer >= 0, got -1"), line
    assert line.split(": ")[2] in ("seed", "seeds")
    assert not out.exists()


def test_one_rule_for_every_seed() -> None:
    assert check_seed(0) == 0 and check_seed(np.int64(7)) == 7 and check_seed(2**40) == 2**40
    for bad in (-1, 1.5, True, "3", None):
        with pytest.raises(ConfigError, match="seed: must be an integer >= 0"):
            check_seed(bad)
    with pytest.raises(ConfigError, match="seed: must be an integer >= 0, got -3"):
        nf.create_strategy("rs", nf.create_space("toy"), seed=-3)
    with pytest.raises(ConfigError, match="seed: must be an integer >= 0, got -1"):
        nf.build_components(nf.RunConfig(space="toy", evaluator="toy", seed=-1))
    with pytest.raises(ConfigError, match="seed: must be an integer >= 0, got -2"):
        nf.derive("no-such-run", seed=-2)  # refused before the run is read


# ---------------------------------------------------------------------- B: a Ray cluster that cannot be joined
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_ray_address_where_nothing_listens_is_one_line_at_once(fake_table: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    address = f"127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    line = _one_line_error(capsys, ["search", "--space", "nb201", "--benchmark", str(fake_table), "--budget", "5",
                                    "--executor", "ray", "--ray-address", address, "--out", str(out)])
    assert f"ray_address: no Ray cluster at {address} (Connection refused)" in line
    assert time.perf_counter() - start < 30  # Ray's own attempt takes 20 s to minutes
    assert not out.exists()


def test_a_ray_cluster_that_refuses_to_be_joined_leaves_no_run_directory(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    ray = pytest.importorskip("ray")

    def fail(*args: object, **kwargs: object) -> None:  # as ray.init after its 20 s of retries
        try:
            raise RuntimeError("Failed to connect to GCS. Last connection error: Traceback (most recent call last):\n"
                               "  File ...\nray.exceptions.RpcError: RPC error: Received http2 header with status: 404")
        except RuntimeError as exc:
            raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs.get('address')}") from exc

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fail)
    with socket.socket() as listening:  # something answers there, so the quick probe lets Ray try
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        out = tmp_path / "run"
        line = _one_line_error(capsys, _toy_search(out, "--executor", "ray", "--ray-address", address))
    assert line == (f"nasforge: error: ray_address: cannot join a Ray cluster at {address} "
                    "(ray.exceptions.RpcError: RPC error: Received http2 header with status: 404)")
    assert not out.exists()


# ---------------------------------------------------------------------- B: output paths
@pytest.mark.parametrize("argv, message", [
    (["export", "{run}", "--format", "json", "--out", "{missing}/m.json"], "--out {missing}/m.json: directory {missing} does not exist"),
    (["export", "{run}", "--format", "onnx", "--out", "{missing}/m.onnx"], "--out {missing}/m.onnx: directory {missing} does not exist"),
    (["export", "{run}", "--format", "torchscript", "--out", "{missing}/m.pt"], "--out {missing}/m.pt: directory {missing} does not exist"),
    (["export", "{run}", "--out", "{tmp}"], "--out {tmp}: is a directory; give a file name"),
    (["lanas-tree", "{run}", "--png", "{missing}/t.png"], "--png {missing}/t.png: directory {missing} does not exist"),
    (["policy", "{run}", "--out", "{file}"], "--out {file}: exists and is not a directory"),
    (["policy", "{run}", "--out", "{file}/sub"], "--out {file}/sub: {file} is not a directory"),
    (["export-history", "{run}", "--out", "{missing}/h.csv"], "--out {missing}/h.csv: directory {missing} does not exist"),
    (["report", "{run}", "--out", "{missing}/r.html"], "--out {missing}/r.html: directory {missing} does not exist"),
    (["report", "{run}", "--out", "{tmp}"], "--out {tmp}: is a directory; give a file name"),
    (["draw", "--from", "{run}", "--out", "{file}/cell"], "--out {file}/cell.svg: {file} is not a directory"),
    (["train", "--space", "nb201", "--arch", ARCH, "--out", "{file}/final"], "--out {file}/final: {file} is not a directory"),
    (["search", "--space", "toy", "--evaluator", "toy", "--out", "{file}/run"], "--out {file}/run: {file} is not a directory"),
    (["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "3", "--out", "{file}"],
     "{file}: exists and is not a directory"),
    (["bench", "--space", "toy", "--evaluator", "toy", "--strategies", "rs", "--budget", "3", "--out", "{file}/b"],
     "{file}/b: cannot create the bench directory"),
])
def test_an_output_path_that_cannot_be_written_is_one_line(lanas_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture, argv: list[str],
                                                           message: str) -> None:
    names = {"run": lanas_run, "missing": tmp_path / "no" / "dir", "tmp": tmp_path, "file": tmp_path / "afile"}
    (tmp_path / "afile").write_text("")
    before = sorted(p.name for p in lanas_run.iterdir())
    line = _one_line_error(capsys, [a.format(**names) for a in argv])
    assert message.format(**names) in line
    assert sorted(p.name for p in lanas_run.iterdir()) == before  # nothing written into the run either


def test_the_output_checks(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    assert check_output_file(tmp_path / "x.png") == tmp_path / "x.png"
    assert check_output_file(tmp_path / "f") == tmp_path / "f"  # an existing file is replaced
    assert check_output_dir(tmp_path / "a" / "b" / "c") == tmp_path / "a" / "b" / "c"  # parents are made
    with pytest.raises(ConfigError, match=r"--png .*: directory .*nope does not exist"):
        check_output_file(tmp_path / "nope" / "x.png", "--png")
    with pytest.raises(ConfigError, match="is a directory; give a file name"):
        check_output_file(tmp_path)
    with pytest.raises(ConfigError, match=r"f is not a directory"):
        check_output_file(tmp_path / "f" / "x.png")
    with pytest.raises(ConfigError, match=r"f is not a directory"):
        check_output_dir(tmp_path / "f" / "a" / "b")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        check_output_dir(tmp_path / "f")


def test_the_default_outputs_work_and_nothing_else_changed(lanas_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "genotype.json"
    assert main(["-q", "export", str(lanas_run), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["space"] == "nb201"
    assert main(["-q", "lanas-tree", str(lanas_run), "--png", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").stat().st_size > 0
    assert main(["-q", "policy", str(lanas_run), "--out", str(tmp_path / "p" / "q")]) == 0
    assert any((tmp_path / "p" / "q").iterdir())
