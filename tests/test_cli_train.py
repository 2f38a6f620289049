"""``nasforge train`` and ``nasforge export``, and ``nasforge.build`` from their files."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.cli import main
from nasforge.train import DataConfig, load_dataset, make_splits
from nasforge.train.loop import accuracy

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
TINY = ["--set", "model.C=4", "--set", "model.N=1"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    code = main(["-q", "train", "--space", "nb201", "--arch", ARCH, "--dataset", "digits", "--epochs", "2",
                 "--out", str(out), "--set", "train.lr=0.1", *TINY])
    assert code == 0
    return out


def test_train_writes_result_weights_and_genotype(trained_run):
    result = json.loads((trained_run / "result.json").read_text())
    for key in ("test_accuracy", "params", "flops", "epochs", "train_time_s", "config", "nasforge_version"):
        assert result[key] is not None, key
    assert result["arch"] == ARCH and result["epochs"] == 2 and result["kind"] == "train"
    assert result["config"]["train"]["lr"] == 0.1 and result["config"]["model"] == {"C": 4, "N": 1}
    assert result["config"]["data"]["val_size"] == 0 and result["val_accuracy"] is None  # all training images
    assert 30 < result["test_accuracy"] <= 100
    genotype = json.loads((trained_run / "genotype.json").read_text())
    assert genotype["input_shape"] == [1, 8, 8] and genotype["model_args"] == {"C": 4, "N": 1}
    assert (trained_run / "model.npz").exists()
    splits = make_splits(load_dataset("digits"), DataConfig(val_size=0))
    norm = genotype["normalisation"]  # what a deployed model's input must go through
    assert norm["pixel_scale"] == 16.0 and norm["mean"] == pytest.approx(splits.normalise.mean.flatten().tolist(), abs=1e-5)
    raw = torch.randint(0, 17, (2, 1, 8, 8))
    by_hand = (raw / norm["pixel_scale"] - torch.tensor(norm["mean"]).view(1, -1, 1, 1)) \
        / torch.tensor(norm["std"]).view(1, -1, 1, 1)
    assert torch.allclose(by_hand, splits.normalise(raw), atol=1e-4)


def test_build_from_the_genotype_with_the_weights_reproduces_the_test_accuracy(trained_run):
    result = json.loads((trained_run / "result.json").read_text())
    model = nf.build(trained_run / "genotype.json", weights=trained_run / "model.npz")
    splits = make_splits(load_dataset("digits"), DataConfig(val_size=0))
    assert 100 * accuracy(model, splits.test, splits.normalise) == pytest.approx(result["test_accuracy"])
    same = nf.build("nb201", ARCH, C=4, N=1, in_channels=1, num_classes=10)
    assert sum(p.numel() for p in same.parameters()) == result["params"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load is deprecated, still supported
def test_export_json_and_torchscript_load_without_nasforge_state(trained_run, tmp_path):
    assert main(["-q", "export", str(trained_run), "--format", "json", "--out", str(tmp_path / "g.json")]) == 0
    genotype = json.loads((tmp_path / "g.json").read_text())
    assert genotype["arch"] == ARCH and genotype["space"] == "nb201"
    assert main(["-q", "export", str(trained_run), "--format", "torchscript"]) == 0
    scripted = torch.jit.load(str(trained_run / "model.torchscript.pt"))
    reference = nf.build(trained_run / "genotype.json", weights=trained_run / "model.npz").eval()
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(scripted(x), reference(x), atol=1e-5)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_onnx_export_or_a_clear_error(trained_run, capsys):
    code = main(["-q", "export", str(trained_run), "--format", "onnx"])
    if importlib.util.find_spec("onnx") is None:
        assert code == 2 and "pip install nasforge[onnx]" in capsys.readouterr().err
        return
    assert code == 0 and (trained_run / "model.onnx").stat().st_size > 0
    assert "onstant" not in capsys.readouterr().err  # torch's constant-folding warnings are not shown
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(trained_run / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["nasforge.arch"] == ARCH and json.loads(meta["nasforge.input_shape"]) == [1, 8, 8]
    assert json.loads(meta["nasforge.normalisation"])["pixel_scale"] == 16.0
    x = torch.randn(3, 1, 8, 8)  # exported with batch 1: the batch axis is free
    reference = nf.build(trained_run / "genotype.json", weights=trained_run / "model.npz").eval()
    with torch.no_grad():
        expected = reference(x).numpy()
    assert np.allclose(session.run(None, {"input": x.numpy()})[0], expected, atol=1e-4)


def test_export_a_search_run_and_train_its_best(tmp_path):
    config = nf.make_run_config(
        {"space": "nb201", "strategy": "random", "evaluator": "train", "dataset": "digits", "budget": 2},
        ["evaluator.epochs=1", "evaluator.model_args={C: 4, N: 1}"],
    )
    _, result = nf.search(config, tmp_path / "search")
    assert all(row["params"] > 0 and row["flops"] > 0 for row in result["history"])  # sizes beside the rewards
    assert main(["-q", "export", str(tmp_path / "search")]) == 0
    genotype = json.loads((tmp_path / "search" / "genotype.json").read_text())
    assert genotype["arch"] == result["best"]["arch"] and genotype["model_args"] == {"C": 4, "N": 1}
    assert genotype["input_shape"] == [1, 8, 8] and genotype["num_classes"] == 10
    assert genotype["normalisation"]["pixel_scale"] == 16.0 and len(genotype["normalisation"]["std"]) == 1
    model = nf.build(tmp_path / "search" / "genotype.json")
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    out = tmp_path / "final"
    assert main(["-q", "train", "--from", str(tmp_path / "search"), "--epochs", "1", "--out", str(out), *TINY]) == 0
    final = json.loads((out / "result.json").read_text())
    assert final["arch"] == result["best"]["arch"] and not math.isnan(final["test_accuracy"])


@pytest.mark.parametrize("argv, message", [
    (["train", "--space", "nb201", "--arch", ARCH, "--set", "optim.lr=1"], "'optim' is not one of"),
    (["train", "--space", "nb201", "--arch", ARCH, "--set", "train.lr=fast"], "train.lr: expected a number"),
    (["train", "--space", "nb201", "--arch", "|bad|"], "nb201 string"),
    (["train", "--space", "nb201", "--arch", ARCH, "--dataset", "cifar10"], "needs --data PATH"),
    (["train", "--space", "nb201", "--arch", ARCH, "--dataset", "cifar10", "--data", "/no/such"], "data not found"),
    (["train", "--arch", ARCH], "--space and --arch are required"),
    (["export", "/no/such/run"], "no such run directory"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code = main(["-q", *argv] + (["--out", str(tmp_path / "o")] if argv[0] == "train" else []))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_train_refuses_to_overwrite_a_result(trained_run, capsys):
    code = main(["-q", "train", "--space", "nb201", "--arch", ARCH, "--out", str(trained_run), *TINY])
    assert code == 2 and "already holds a result.json" in capsys.readouterr().err
