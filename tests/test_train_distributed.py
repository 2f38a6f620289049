"""Data-parallel training: two gloo processes take the steps one process takes on the combined batch."""

from __future__ import annotations

import numpy as np
import pytest

from nasforge.testing.distributed import run_replicas, train_small
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


def test_nproc_flag_is_removed_for_the_replicas() -> None:
    from nasforge.cli._launch import without_nproc

    assert without_nproc(["train", "--nproc", "2", "--epochs", "1", "--nproc=3"]) == ["train", "--epochs", "1"]
