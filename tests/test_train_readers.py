"""Data-set readers: digits, CIFAR-10 in its python layout (restricted unpickling), image folders, archives, cache."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import shared_file
from nasforge.errors import ConfigError, DataError
from nasforge.train import readers as R
from nasforge.train.splits import channel_stats

CLASSES10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# --------------------------------------------------------------------------- digits
def test_digits_is_embedded_with_a_fixed_stratified_test_set():
    a, b = R.load_dataset("digits"), R.load_dataset("digits")
    assert a.shape == (1, 8, 8) and a.num_classes == 10 and not a.flip
    assert len(a.train_y) + len(a.test_y) == 1797 and len(a.test_y) == 360
    assert a.train_x.max() == 16 and a.max_value == 16
    assert np.array_equal(a.test_x, b.test_x)  # the test set is part of the data set, not of a run
    assert set(np.bincount(a.test_y)) <= {35, 36, 37}  # stratified: 36 per class, give or take one


def test_unknown_dataset_and_missing_path():
    with pytest.raises(Exception, match="unknown dataset 'mnist'"):
        R.load_dataset("mnist")
    for name in ("cifar10", "folder"):
        with pytest.raises(ConfigError, match="needs --data"):
            R.load_dataset(name)


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
        data = R.load_dataset("cifar10", where)
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
    a = R.load_dataset("cifar10", archive, tmp_path / "cache")
    b = R.load_dataset("cifar10", tmp_path / "src")
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)


def test_cifar_python_layout_errors_name_what_is_expected(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_python(folder)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing test_batch"):
        R.load_dataset("cifar10", tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch"):
        R.load_dataset("cifar10", tmp_path)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match="N x 3072"):
        R.load_dataset("cifar10", tmp_path)
    with pytest.raises(DataError, match="data not found.*cifar-10-batches-py"):
        R.load_dataset("cifar10", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="unknown data layout.*train/<class>"):
        R.load_dataset("cifar10", tmp_path / "empty")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(DataError, match="not a tar archive"):
        R.load_dataset("cifar10", tmp_path / "file.txt")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar_python_batches_of_every_pickle_protocol_are_read(tmp_path, protocol):
    written = _write_cifar_python(tmp_path / "cifar-10-batches-py")
    folder = tmp_path / "cifar-10-batches-py"
    for name, (x, y) in written.items():  # rewrite with the protocol (2 and below: bytes via _codecs.encode)
        batch = {b"batch_label": name.encode(), b"data": x, b"labels": [int(v) for v in y],
                 b"filenames": [f"{i}.png".encode() for i in range(len(y))], b"scale": np.float32(1.5)}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    data = R.load_dataset("cifar10", tmp_path)
    x, y = written["data_batch_3"]
    assert np.array_equal(data.train_x[8:12].reshape(4, -1), x) and np.array_equal(data.train_y[8:12], y)
    assert data.train_x.flags.writeable and data.classes == CLASSES10


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING), as the original CIFAR-10 batches are."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def test_cifar_python_batches_written_by_python_2_are_read(tmp_path):
    written = _write_cifar_python(tmp_path / "cifar-10-batches-py")
    folder = tmp_path / "cifar-10-batches-py"
    for name, (x, y) in written.items():
        out = io.BytesIO()
        _Python2Pickler(out, protocol=2).dump({b"batch_label": name.encode(), b"data": x, b"labels": list(map(int, y))})
        blob = out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # numpy 1's name
        assert b"_codecs" not in blob and b"numpy.core.multiarray" in blob
        (folder / name).write_bytes(blob)
    data = R.load_dataset("cifar10", tmp_path)
    x, y = written["test_batch"]
    assert np.array_equal(data.test_x.reshape(len(y), -1), x) and np.array_equal(data.test_y, y)


class _RunsCode:
    """Unpickling this calls os.system: what a malicious file in a user's data folder would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_cifar_python_batch_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_python(folder)
    marker = tmp_path / "pwned"
    with (folder / "data_batch_2").open("wb") as f:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0]}, f)
    with pytest.raises(DataError, match=r"data_batch_2: refused: the file asks to call (os|posix)\.system"):
        R.load_dataset("cifar10", tmp_path)
    assert not marker.exists()
    # the same file inside the archive is refused too
    archive = tmp_path / "cifar.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=r"cifar\.tar\.gz/data_batch_2: refused"):
        R.load_dataset("cifar10", archive, tmp_path / "cache")
    assert not marker.exists()


class _ArrayFromPointers:
    """numpy.ndarray((1,), 'O', buffer) would read object pointers out of the buffer."""

    def __reduce__(self):
        return np.ndarray, ((1,), "O", b"\x01" * 8)


@pytest.mark.parametrize("payload", [
    _ArrayFromPointers(),
    np.array([1, "a"], dtype=object),  # an array of objects: only plain numbers are expected
    np.zeros(3, dtype=[("a", "u1"), ("b", "f4")]),  # a structured array
])
def test_cifar_python_batch_with_unexpected_numpy_objects_is_refused(tmp_path, payload):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_python(folder)
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": payload, b"labels": [0]}, f)
    with pytest.raises(DataError, match="test_batch: not a CIFAR python batch"):
        R.load_dataset("cifar10", tmp_path)


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
    data = R.read_image_data(tmp_path / "imgs", tmp_path / "cache", name="folder")
    assert data.classes == classes and data.shape == (3, 8, 8)
    assert len(data.train_y) == 6 and len(data.test_y) == 3
    # sorted by class then file name, labels are class indices
    assert np.array_equal(data.train_x[3], pixels[("train", "dog", "0001.png")])
    assert list(data.train_y) == [0, 0, 1, 1, 2, 2]

    archive = tmp_path / "imgs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "imgs", arcname="imgs")
    from_tar = R.read_image_data(archive, tmp_path / "cache", name="folder")
    assert np.array_equal(from_tar.train_x, data.train_x) and np.array_equal(from_tar.test_y, data.test_y)
    assert len(list((tmp_path / "cache").glob("folder-*.npz"))) == 2
    registered = R.load_dataset("folder", tmp_path / "imgs", tmp_path / "cache")  # any image folder
    assert registered.classes == classes and np.array_equal(registered.train_x, data.train_x)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(R, "_assemble", no_decoding)
    again = R.read_image_data(archive, tmp_path / "cache", name="folder")
    assert np.array_equal(again.train_x, data.train_x) and again.classes == classes
    again = R.read_image_data(tmp_path / "imgs", tmp_path / "cache", name="folder")
    assert np.array_equal(again.test_x, data.test_x)


def test_cifar10_from_an_image_folder_checks_classes_and_size(tmp_path):
    _write_folder(tmp_path / "ok", CLASSES10, {"train": 1, "test": 1})
    data = R.load_dataset("cifar10", tmp_path / "ok", tmp_path / "cache")
    assert data.classes == CLASSES10 and data.shape == (3, 32, 32) and len(data.train_y) == 10
    _write_folder(tmp_path / "three", CLASSES10[:3], {"train": 1, "test": 1})
    with pytest.raises(DataError, match="10 classes, found 3"):
        R.load_dataset("cifar10", tmp_path / "three")
    _write_folder(tmp_path / "small", CLASSES10, {"train": 1, "test": 1}, size=16)
    with pytest.raises(DataError, match=r"\(3, 32, 32\)"):
        R.load_dataset("cifar10", tmp_path / "small")


def test_image_folder_errors(tmp_path):
    _write_folder(tmp_path / "mixed", ("a", "b"), {"train": 1, "test": 1}, size=8)
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "mixed" / "train" / "a" / "big.png")
    with pytest.raises(DataError, match="one size"):
        R.read_image_data(tmp_path / "mixed", None, name="folder")
    _write_folder(tmp_path / "bad", ("a",), {"train": 1, "test": 1}, size=8)
    (tmp_path / "bad" / "test" / "a" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg: not a readable image"):
        R.read_image_data(tmp_path / "bad", None, name="folder")
    (tmp_path / "notest" / "train" / "a").mkdir(parents=True)
    (tmp_path / "notest" / "test").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "notest" / "train" / "a" / "x.png")
    with pytest.raises(DataError, match="no images in test/"):
        R.read_image_data(tmp_path / "notest", None, name="folder")


@pytest.mark.slow
def test_real_cifar10_jpeg_tarball(request):
    path = shared_file("cifar10-jpeg.tar.gz")
    cache_plugin = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = cache_plugin.mkdir("nasforge-data") if cache_plugin else None  # decoded once, kept between runs
    data = R.load_dataset("cifar10", path, cache)
    assert data.classes == CLASSES10
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    assert np.array_equal(np.bincount(data.train_y), [5000] * 10)
    mean, _ = channel_stats(data.train_x, 255.0)
    assert np.allclose(mean, [0.4913, 0.4821, 0.4465], atol=0.002)


def test_decoding_says_how_far_it_is(tmp_path, monkeypatch, caplog):
    _write_folder(tmp_path / "imgs", ("a", "b"), {"train": 3, "test": 1}, size=4)
    monkeypatch.setattr(R, "DECODE_LOG_EVERY", 3)
    with caplog.at_level("INFO", logger=R.log.name):
        R.read_image_data(tmp_path / "imgs", None, name="folder")
    progress = [r.getMessage() for r in caplog.records if "images," in r.getMessage()]
    assert progress[:2] == [m for m in progress[:2] if m.startswith("decoding folder: ")] and len(progress) == 2
    assert "decoding folder: 6 images" in progress[1]
