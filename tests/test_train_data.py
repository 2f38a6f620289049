"""Data sets (digits, CIFAR-10 python layout, image folders and archives), splits and augmentation."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_file
from nasforge.errors import ConfigError, DataError
from nasforge.train import augment as aug
from nasforge.train import data as D

CLASSES10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# --------------------------------------------------------------------------- digits and splits
def test_digits_is_embedded_with_a_fixed_stratified_test_set():
    a, b = D.load_dataset("digits"), D.load_dataset("digits")
    assert a.shape == (1, 8, 8) and a.num_classes == 10 and not a.flip
    assert len(a.train_y) + len(a.test_y) == 1797 and len(a.test_y) == 360
    assert a.train_x.max() == 16 and a.max_value == 16
    assert np.array_equal(a.test_x, b.test_x)  # the test set is part of the data set, not of a run
    assert set(np.bincount(a.test_y)) <= {35, 36, 37}  # stratified: 36 per class, give or take one


def test_split_sizes_disjointness_and_seed():
    data = D.load_dataset("digits")
    s = D.make_splits(data, D.DataConfig(val_size=0.2, split_seed=1))
    n = len(data.train_y)
    assert len(s.val) == round(0.2 * n) and len(s.train) + len(s.val) == n and len(s.test) == 360
    flat = data.train_x.reshape(n, -1)
    rows = {r.tobytes(): i for i, r in enumerate(flat)}  # identify images by content
    train_ids = {rows[x.numpy().tobytes()] for x in s.train.x}
    val_ids = {rows[x.numpy().tobytes()] for x in s.val.x}
    assert not train_ids & val_ids
    same = D.make_splits(data, D.DataConfig(val_size=0.2, split_seed=1))
    other = D.make_splits(data, D.DataConfig(val_size=0.2, split_seed=2))
    assert torch.equal(same.val.y, s.val.y) and torch.equal(same.val.x, s.val.x)
    assert not torch.equal(other.val.x, s.val.x)
    counts = np.bincount(s.val.y.numpy(), minlength=10)
    assert counts.min() >= 27 and counts.max() <= 31  # stratified


def test_split_counts_fraction_and_full_training():
    data = D.load_dataset("digits")
    s = D.make_splits(data, D.DataConfig(val_size=100, fraction=0.5))
    assert len(s.val) == 100 and len(s.train) == round(0.5 * (len(data.train_y) - 100))
    full = D.make_splits(data, D.DataConfig(val_size=0))
    assert len(full.val) == 0 and len(full.train) == len(data.train_y)
    with pytest.raises(ConfigError, match="val_size"):
        D.make_splits(data, D.DataConfig(val_size=len(data.train_y)))
    with pytest.raises(ValueError, match="fraction"):
        D.DataConfig(fraction=0)


def test_normalisation_uses_training_statistics():
    s = D.make_splits(D.load_dataset("digits"), D.DataConfig(val_size=0.1))
    x = s.normalise(s.train.x)
    assert x.dtype == torch.float32 and x.shape == s.train.x.shape
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_unknown_dataset_and_missing_path():
    with pytest.raises(Exception, match="unknown dataset 'mnist'"):
        D.load_dataset("mnist")
    for name in ("cifar10", "folder"):
        with pytest.raises(ConfigError, match="needs --data"):
            D.load_dataset(name)


# --------------------------------------------------------------------------- CIFAR-10 python layout
def _write_cifar_python(folder: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny data set in the original layout: uint8 rows of 3072 values, R then G then B planes."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    written = {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n)]
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y}, f)
        written[name] = (x, np.array(y))
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CLASSES10], b"num_vis": 3072}, f)
    return written


def test_cifar_python_layout(tmp_path):
    written = _write_cifar_python(tmp_path / "cifar-10-batches-py")
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):
        data = D.load_dataset("cifar10", where)
        assert data.shape == (3, 32, 32) and data.classes == CLASSES10 and data.flip
        assert len(data.train_y) == 20 and len(data.test_y) == 6
        x, y = written["data_batch_2"]
        # the first image of batch 2: red plane is the first 1024 values, row-major
        assert np.array_equal(data.train_x[4, 0], x[0, :1024].reshape(32, 32))
        assert np.array_equal(data.train_x[4, 2], x[0, 2048:].reshape(32, 32))
        assert data.train_y[4] == y[0]
        assert np.array_equal(data.test_y, written["test_batch"][1])


def test_cifar_python_layout_inside_its_tarball(tmp_path):
    _write_cifar_python(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    a = D.load_dataset("cifar10", archive, tmp_path / "cache")
    b = D.load_dataset("cifar10", tmp_path / "src")
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)


def test_cifar_python_layout_errors_name_what_is_expected(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_python(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        D.load_dataset("cifar10", tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch"):
        D.load_dataset("cifar10", tmp_path)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="N x 3072"):
        D.load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="data not found.*cifar-10-batches-py"):
        D.load_dataset("cifar10", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="unknown data layout.*train/<class>"):
        D.load_dataset("cifar10", tmp_path / "empty")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(DataError, match="not a tar archive"):
        D.load_dataset("cifar10", tmp_path / "file.txt")


# --------------------------------------------------------------------------- image folders
def _write_folder(root: Path, classes: tuple[str, ...], per_class: dict[str, int], size: int = 32, seed: int = 0):
    """PNG (lossless) images; returns {(split, class, file): pixels (C, H, W)}."""
    rng = np.random.default_rng(seed)
    pixels = {}
    for split, n in per_class.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                img = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
                Image.fromarray(img).save(root / split / cls / f"{k:04d}.png")
                pixels[(split, cls, f"{k:04d}.png")] = img.transpose(2, 0, 1)
    return pixels


def test_image_folder_and_its_tarball_are_decoded_once_and_cached(tmp_path, monkeypatch):
    classes = ("cat", "dog", "emu")
    pixels = _write_folder(tmp_path / "imgs", classes, {"train": 2, "test": 1}, size=8)
    data = D.read_image_data(tmp_path / "imgs", tmp_path / "cache", name="folder")
    assert data.classes == classes and data.shape == (3, 8, 8)
    assert len(data.train_y) == 6 and len(data.test_y) == 3
    # sorted by class then file name, labels are class indices
    assert np.array_equal(data.train_x[3], pixels[("train", "dog", "0001.png")])
    assert list(data.train_y) == [0, 0, 1, 1, 2, 2]

    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname="imgs")
    from_tar = D.read_image_data(archive, tmp_path / "cache", name="folder")
    assert np.array_equal(from_tar.train_x, data.train_x) and np.array_equal(from_tar.test_y, data.test_y)
    assert len(list((tmp_path / "cache").glob("folder-*.npz"))) == 2
    registered = D.load_dataset("folder", tmp_path / "imgs", tmp_path / "cache")  # any image folder
    assert registered.classes == classes and np.array_equal(registered.train_x, data.train_x)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(D, "_assemble", no_decoding)
    again = D.read_image_data(archive, tmp_path / "cache", name="folder")
    assert np.array_equal(again.train_x, data.train_x) and again.classes == classes
    again = D.read_image_data(tmp_path / "imgs", tmp_path / "cache", name="folder")
    assert np.array_equal(again.test_x, data.test_x)


def test_cifar10_from_an_image_folder_checks_classes_and_size(tmp_path):
    _write_folder(tmp_path / "ok", CLASSES10, {"train": 1, "test": 1})
    data = D.load_dataset("cifar10", tmp_path / "ok", tmp_path / "cache")
    assert data.classes == CLASSES10 and data.shape == (3, 32, 32) and len(data.train_y) == 10
    _write_folder(tmp_path / "three", CLASSES10[:3], {"train": 1, "test": 1})
    with pytest.raises(DataError, match="10 classes, found 3"):
        D.load_dataset("cifar10", tmp_path / "three")
    _write_folder(tmp_path / "small", CLASSES10, {"train": 1, "test": 1}, size=16)
    with pytest.raises(DataError, match=r"\(3, 32, 32\)"):
        D.load_dataset("cifar10", tmp_path / "small")


def test_image_folder_errors(tmp_path):
    _write_folder(tmp_path / "mixed", ("a", "b"), {"train": 1, "test": 1}, size=8)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "mixed" / "train" / "a" / "big.png")
    with pytest.raises(DataError, match="one size"):
        D.read_image_data(tmp_path / "mixed", None, name="folder")
    _write_folder(tmp_path / "bad", ("a",), {"train": 1, "test": 1}, size=8)
    (tmp_path / "bad" / "test" / "a" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        D.read_image_data(tmp_path / "bad", None, name="folder")
    (tmp_path / "notest" / "train" / "a").mkdir(parents=True)
    (tmp_path / "notest" / "test").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "notest" / "train" / "a" / "x.png")
    with pytest.raises(DataError, match="no images in test/"):
        D.read_image_data(tmp_path / "notest", None, name="folder")


@pytest.mark.slow
def test_real_cifar10_jpeg_tarball(request):
    path = shared_file("cifar10-jpeg.tar.gz")
    cache_plugin = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = cache_plugin.mkdir("nasforge-data") if cache_plugin else None  # decoded once, kept between runs
    data = D.load_dataset("cifar10", path, cache)
    assert data.classes == CLASSES10
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    assert np.array_equal(np.bincount(data.train_y), [5000] * 10)
    mean, _ = D.channel_stats(data.train_x, 255.0)
    assert np.allclose(mean, [0.4913, 0.4821, 0.4465], atol=0.002)


# --------------------------------------------------------------------------- augmentation
def _batch(n: int = 6, c: int = 2, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1  # no zeros


def test_random_crop_is_a_window_of_the_padded_image():
    x = _batch()
    out = aug.random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], wnd) for wnd in windows)
    assert torch.equal(aug.random_crop(x, 0, torch.Generator()), x)
    shifted = [not torch.equal(out[i], x[i]) for i in range(len(x))]
    assert any(shifted)


def test_flip_and_cutout():
    x = _batch()
    assert torch.equal(aug.random_flip(x, torch.Generator(), p=1.0), x.flip(3))
    assert torch.equal(aug.random_flip(x, torch.Generator(), p=0.0), x)
    mixed = aug.random_flip(x, torch.Generator().manual_seed(3))
    assert all(torch.equal(m, a) or torch.equal(m, a.flip(2)) for m, a in zip(mixed, x))
    out = aug.cutout(x, 4, torch.Generator().manual_seed(0))
    holes = (out == 0).all(dim=1)  # the same pixels of every channel
    per_image = holes.flatten(1).sum(1)
    assert bool(((per_image >= 4) & (per_image <= 16)).all())  # a 4x4 square, clipped at the border
    assert torch.equal(out[~(out == 0)], x[~(out == 0)])


def test_augmentation_is_seeded_by_its_generator():
    x = _batch(32)

    def run(seed: int) -> torch.Tensor:
        return aug.augment_batch(x, torch.Generator().manual_seed(seed), padding=2, flip=True, cutout_size=3)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_resolution_shrinks_every_split_by_area_averaging():
    data = D.load_dataset("digits")
    s = D.make_splits(data, D.DataConfig(val_size=0.1, resolution=4))
    assert s.train.x.shape[1:] == s.val.x.shape[1:] == s.test.x.shape[1:] == (1, 4, 4)
    # Each 2x2 block becomes its mean (rounded: the images stay integers).
    full = D.make_splits(data, D.DataConfig(val_size=0.1))
    assert s.train.x.dtype == full.train.x.dtype
    block = full.test.x[0, 0, :2, :2].float().mean()
    assert abs(float(s.test.x[0, 0, 0, 0]) - float(block)) <= 0.5
    assert D.resize(full.test.x[:0], 4).shape == (0, 1, 4, 4)
    with pytest.raises(ValueError, match="resolution"):
        D.DataConfig(resolution=-1)
