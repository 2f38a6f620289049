"""Image data sets: scikit-learn digits (embedded) and CIFAR-10 or any image folder in their common layouts.

Readers turn files into :class:`ImageData`, raw ``(N, C, H, W)`` pixel arrays (``uint8`` for
photographs); :mod:`nasforge.train.splits` carves the training, validation and test sets from them.

CIFAR-10 is read from
- the original python layout ``cifar-10-batches-py/`` (pickled ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``), as a folder or inside its ``.tar.gz``. The pickles are read by a restricted
  unpickler that builds only dicts, lists, strings, numbers and numpy arrays: a file from a user's
  path can never run code;
- an image folder ``train/<class>/*`` and ``test/<class>/*``, as a folder or inside a ``.tar.gz``.
  Decoding 60,000 JPEGs takes ~15 s, so the decoded arrays are cached as ``.npz`` in a cache
  directory that the caller passes (see :func:`nasforge.paths.default_cache_dir`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError, DataError
from ..registry import Registry

if TYPE_CHECKING:
    from .distributed import Replicas

log = logging.getLogger(__name__)

#: name -> loader(path, cache_dir) -> ImageData; capabilities: needs_path, shape (C, H, W), classes
DATASETS: Registry = Registry("dataset")

CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_BATCHES, "test_batch", "batches.meta")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp")
CACHE_VERSION = 1


@dataclass
class ImageData:
    """A data set with a training and a test part, as raw ``(N, C, H, W)`` pixel arrays.

    Attributes:
        max_value: the value of a white pixel (255 for photographs, 16 for digits).
        flip: whether a horizontal flip keeps the label (true for photographs, not for digits).
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    max_value: float = 255.0
    flip: bool = True

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(int(s) for s in self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_dataset(name: str, path: str | Path | None = None, cache_dir: str | Path | None = None,
                 replicas: Replicas | None = None) -> ImageData:
    """Load a registered data set; ``path`` is where its files are, ``cache_dir`` where decoded arrays go.

    With data-parallel ``replicas`` (every replica calls this alike) images that are not decoded in
    ``cache_dir`` yet are decoded by rank 0 alone; the others wait and read its cache."""
    entry = DATASETS.get(name)
    if entry.capabilities.get("needs_path") and not path:
        raise ConfigError(f"data: the {entry.name!r} data set needs --data PATH ({entry.summary})")
    if replicas is not None:
        ready = not (cache_dir and path and name in ("cifar10", "folder") and _decodes(Path(path), Path(cache_dir), name))
        return replicas.main_first(lambda: load_dataset(name, path, cache_dir), ready)
    data = entry.factory(Path(path) if path else None, Path(cache_dir) if cache_dir else None)
    expected = entry.capabilities.get("shape")
    if expected and data.shape != tuple(expected):
        raise DataError(f"{path}: {entry.name} images must be {tuple(expected)} (C, H, W), got {data.shape}")
    return data


def dataset_shape(name: str) -> tuple[tuple[int, int, int], int] | None:
    """``((C, H, W), n_classes)`` of a registered data set when it is fixed, without loading it."""
    caps = DATASETS.get(name).capabilities
    if caps.get("shape") and caps.get("classes"):
        return tuple(caps["shape"]), int(caps["classes"])
    return None


# --------------------------------------------------------------------------- digits
@DATASETS.register("digits", needs_path=False, shape=(1, 8, 8), classes=10)
def load_digits(path: Path | None = None, cache_dir: Path | None = None) -> ImageData:
    """scikit-learn's 1,797 handwritten digits (1x8x8, values 0..16), shipped with scikit-learn.

    The set has no official test split: a fixed stratified fifth (360 images) is the test set.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = bunch.images.astype(np.uint8)[:, None]
    y = bunch.target.astype(np.int64)
    # A fixed seed: the test set is part of the data set's definition, not of a run.
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    classes = tuple(str(c) for c in range(10))
    return ImageData("digits", x[tr], y[tr], x[te], y[te], classes, max_value=16.0, flip=False)


# --------------------------------------------------------------------------- CIFAR-10
@DATASETS.register("cifar10", needs_path=True, shape=(3, 32, 32), classes=10)
def load_cifar10(path: Path | None, cache_dir: Path | None = None) -> ImageData:
    """CIFAR-10 from cifar-10-batches-py/, an image folder (train/<class>/, test/<class>/) or its .tar.gz."""
    if path is None:
        raise ConfigError("data: CIFAR-10 needs --data PATH")
    data = read_image_data(path, cache_dir, name="cifar10")
    if data.num_classes != 10:
        raise DataError(f"{path}: CIFAR-10 has 10 classes, found {data.num_classes} ({', '.join(data.classes)})")
    return data


@DATASETS.register("folder", needs_path=True)
def load_image_folder(path: Path | None, cache_dir: Path | None = None) -> ImageData:
    """Any image folder (train/<class>/*, test/<class>/*) or its .tar.gz; images of one size."""
    if path is None:
        raise ConfigError("data: an image folder needs --data PATH")
    return read_image_data(path, cache_dir, name="folder")


EXPECTED_LAYOUTS = (
    "expected cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta), "
    "an image folder with train/<class>/ and test/<class>/, or a .tar.gz of either"
)


def read_image_data(path: Path, cache_dir: Path | None, name: str) -> ImageData:
    """An :class:`ImageData` from any supported layout at ``path``."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: data not found ({EXPECTED_LAYOUTS})")
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise DataError(f"{path}: not a tar archive ({EXPECTED_LAYOUTS})")
        return _read_tar(path, cache_dir, name)
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file():
            return read_cifar_python(candidate, name)
    if (path / "train").is_dir() and (path / "test").is_dir():
        return _cached(path, _folder_key(path), cache_dir, lambda: _decode_folder(path, name), name)
    raise DataError(f"{path}: unknown data layout ({EXPECTED_LAYOUTS})")



# --------------------------------------------------------------------------- restricted unpickling
# A CIFAR batch is a dict of bytes, ints, lists and numpy arrays. Its pickle names a few numpy
# globals, which are mapped to the stand-ins below: arrays are only ever made by np.frombuffer from
# plain numeric dtypes (numpy's own constructors would read object pointers out of a crafted
# buffer), and every other global is refused, so reading a user's file runs no code from it.
class _Refused(pickle.UnpicklingError):
    pass


class _Malformed(pickle.UnpicklingError):
    pass


#: pickled byte order -> numpy's (``|``, "not applicable", is native)
_BYTE_ORDERS: dict[str, Literal["<", ">", "="]] = {"<": "<", ">": ">", "|": "=", "=": "="}


class _DtypeStandIn:
    """``numpy.dtype(spec, align, copy)`` and its pickled state; only plain numeric types resolve."""

    def __init__(self, spec: object = None, align: object = False, copy: object = False) -> None:
        self.spec, self.order = spec, "|"

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) > 1 and isinstance(state[1], (str, bytes)):
            self.order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]  # Python 2: bytes

    def resolve(self) -> np.dtype:
        spec = self.spec.decode("latin1") if isinstance(self.spec, bytes) else self.spec
        if not isinstance(spec, str) or not re.fullmatch(r"[biuf][1248]", spec) or self.order not in _BYTE_ORDERS:
            raise _Malformed(f"array of dtype {spec!r} (only plain numbers are expected)")
        return np.dtype(spec).newbyteorder(_BYTE_ORDERS[self.order])


class _ArrayStandIn:
    """An array as protocols 0-4 pickle it (``_reconstruct`` then its state); made real by :func:`_materialise`."""

    def __init__(self) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def resolve(self) -> np.ndarray:
        if not (isinstance(self.state, tuple) and len(self.state) == 5):
            raise _Malformed("malformed numpy array")
        _, shape, dtype, fortran, raw = self.state
        return _array(raw, dtype, shape, "F" if fortran else "C")


_NDARRAY = object()  # stands for numpy.ndarray, which may only be _reconstruct's first argument


def _array(raw: object, dtype: object, shape: object, order: object) -> np.ndarray:
    if not isinstance(dtype, _DtypeStandIn) or not isinstance(raw, (bytes, bytearray, pickle.PickleBuffer)):
        raise _Malformed("malformed numpy array")
    real = dtype.resolve()
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape) or order not in ("C", "F"):
        raise _Malformed(f"malformed numpy array shape {shape!r}")
    data = bytes(raw)
    if len(data) != int(np.prod(shape)) * real.itemsize:
        raise _Malformed(f"numpy array of shape {shape} has {len(data)} bytes of data")
    return np.frombuffer(data, real).reshape(shape, order=order).copy()


def _reconstruct(subtype: object, shape: object = None, typecode: object = None) -> _ArrayStandIn:
    if subtype is not _NDARRAY:
        raise _Malformed("numpy _reconstruct of something other than an ndarray")
    return _ArrayStandIn()


def _scalar(dtype: object, raw: object) -> np.generic:
    value = _array(raw, dtype, (), "C")[()]
    assert isinstance(value, np.generic)  # a 0-d array indexed by () is its scalar
    return value


def _latin1_encode(text: object, encoding: object = "latin1", errors: object = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes in protocols 0-2: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Malformed("bytes encoded other than as latin-1")
    return text.encode("latin1")


_STAND_INS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _array for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStandIn,
    ("_codecs", "encode"): _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that maps numpy's globals to the stand-ins and refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _STAND_INS[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _materialise(obj: Any) -> Any:
    """``obj`` with every array stand-in replaced by its array (the containers a batch has)."""
    if isinstance(obj, _ArrayStandIn):
        return obj.resolve()
    if isinstance(obj, _DtypeStandIn):
        return obj.resolve()
    if isinstance(obj, dict):
        return {_materialise(k): _materialise(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _unpickle(handle: io.BufferedIOBase | io.BytesIO, where: str) -> dict:
    """A pickled CIFAR batch, read without running code from the file (see the stand-ins above)."""
    try:
        obj = _materialise(_BatchUnpickler(handle, encoding="bytes").load())
    except _Refused as exc:
        raise DataError(
            f"{where}: refused: the file asks to call {exc}, but a CIFAR python batch holds only dicts, lists, "
            "bytes, numbers and numpy arrays (no code is run from data files)"
        ) from None
    except Exception as exc:  # any unpickling problem is a malformed file
        raise DataError(f"{where}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR python batch (a {type(obj).__name__}, expected a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _batch_arrays(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or "labels" not in batch:
        raise DataError(f"{where}: a CIFAR batch needs 'data' and 'labels' (has {', '.join(map(str, batch))})")
    x = np.asarray(batch["data"], dtype=np.uint8)
    y = np.asarray(batch["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
        raise DataError(f"{where}: 'data' must be N x 3072 with N labels, got {x.shape} and {y.shape[0]} labels")
    return x.reshape(-1, 3, 32, 32), y


def _cifar_python(open_file: Callable[[str], io.BufferedIOBase | io.BytesIO | None], where: str, name: str) -> ImageData:
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for fname in (*CIFAR_BATCHES, "test_batch"):
        handle = open_file(fname)
        if handle is None:
            raise DataError(f"{where}: missing {fname} ({EXPECTED_LAYOUTS})")
        with handle:
            parts[fname] = _batch_arrays(_unpickle(handle, f"{where}/{fname}"), f"{where}/{fname}")
    handle = open_file("batches.meta")
    if handle is not None:
        with handle:
            meta = _unpickle(handle, f"{where}/batches.meta")
        classes = tuple(c.decode() if isinstance(c, bytes) else str(c) for c in meta.get("label_names", ()))
    else:
        classes = ()
    train_x = np.concatenate([parts[f][0] for f in CIFAR_BATCHES])
    train_y = np.concatenate([parts[f][1] for f in CIFAR_BATCHES])
    n_classes = int(max(train_y.max(), parts["test_batch"][1].max())) + 1
    classes = classes or tuple(str(i) for i in range(n_classes))
    return ImageData(name, train_x, train_y, *parts["test_batch"], classes=classes)


def read_cifar_python(folder: Path, name: str = "cifar10") -> ImageData:
    """The original CIFAR-10 python layout (a folder with ``data_batch_1..5``, ``test_batch``, ``batches.meta``)."""

    def open_file(fname: str) -> io.BufferedIOBase | None:
        p = folder / fname
        return p.open("rb") if p.is_file() else None

    return _cifar_python(open_file, str(folder), name)


# --------------------------------------------------------------------------- image folders and archives
_SPLIT_RE = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)$")


def _decodes(path: Path, cache_dir: Path, name: str) -> bool:
    """Whether :func:`read_image_data` of ``path`` may decode images now: an archive or image folder whose
    arrays are not in ``cache_dir`` (an archive of CIFAR's python batches counts too: telling needs a read of it)."""
    path = path.expanduser()
    if path.is_file():
        return not (_cache_file(cache_dir, name, _file_key(path)) or Path()).is_file()
    if any((c / "data_batch_1").is_file() for c in (path, path / "cifar-10-batches-py")):
        return False
    if (path / "train").is_dir() and (path / "test").is_dir():
        return not (_cache_file(cache_dir, name, _folder_key(path)) or Path()).is_file()
    return False


def _folder_key(path: Path) -> str:
    stats = sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
        for split in ("train", "test")
        for p in (path / split).rglob("*")
        if p.is_file()
    )
    return hashlib.sha1(repr((str(path.resolve()), stats)).encode()).hexdigest()[:16]


def _file_key(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(repr((str(path.resolve()), st.st_size, st.st_mtime_ns)).encode()).hexdigest()[:16]


def _cache_file(cache_dir: Path | None, name: str, key: str) -> Path | None:
    return Path(cache_dir) / f"{name}-{key}-v{CACHE_VERSION}.npz" if cache_dir else None


def _load_cache(cache: Path | None, name: str) -> ImageData | None:
    if cache is None or not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            return ImageData(
                name, z["train_x"], z["train_y"], z["test_x"], z["test_y"],
                tuple(str(c) for c in z["classes"]), float(z["max_value"]), bool(z["flip"]),
            )
    except (OSError, KeyError, ValueError) as exc:
        log.warning("ignoring unreadable cache %s (%s)", cache, exc)
        return None


def _save_cache(cache: Path | None, data: ImageData) -> None:
    if cache is None:
        return
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")  # unique: parallel runs may decode at once
        np.savez(tmp, train_x=data.train_x, train_y=data.train_y, test_x=data.test_x,
                 test_y=data.test_y, classes=np.array(data.classes), max_value=data.max_value, flip=data.flip)
        os.replace(tmp, cache)
    except OSError as exc:
        log.warning("cannot write the data cache %s (%s); continuing without", cache, exc)


def _cached(path: Path, key: str, cache_dir: Path | None, decode: Callable[[], ImageData], name: str) -> ImageData:
    """Decode once; later calls read the arrays from ``cache_dir`` (no cache when it is None)."""
    cache = _cache_file(cache_dir, name, key)
    data = _load_cache(cache, name)
    if data is None:
        log.info("decoding %s (once; cached in %s)", path, cache_dir or "memory only")
        data = decode()
        _save_cache(cache, data)
    return data


def _decode(blob: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(blob)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where}: not a readable image ({exc})") from None


#: images between two progress lines while a data set is decoded
DECODE_LOG_EVERY = 10_000


def _assemble(items: Iterable[tuple[str, str, str, bytes]], where: str, name: str) -> ImageData:
    """ImageData from ``(split, class, file name, encoded bytes)`` items of an image folder."""
    images: dict[str, list[tuple[str, str, np.ndarray]]] = {"train": [], "test": []}
    start = time.monotonic()
    for n, (split, cls, fname, blob) in enumerate(items, start=1):
        images[split].append((cls, fname, _decode(blob, f"{where}:{split}/{cls}/{fname}")))
        if n % DECODE_LOG_EVERY == 0:  # a first decode of CIFAR-10 takes a while: say how far it is
            log.info("decoding %s: %d images, %.0f s", name, n, time.monotonic() - start)
    if not images["train"] or not images["test"]:
        empty = "train" if not images["train"] else "test"
        raise DataError(f"{where}: no images in {empty}/<class>/ ({EXPECTED_LAYOUTS})")
    classes = tuple(sorted({c for c, _, _ in images["train"]}))
    unknown = sorted({c for c, _, _ in images["test"]} - set(classes))
    if unknown:
        raise DataError(f"{where}: test classes {', '.join(unknown)} have no training images")
    shapes = {a.shape for part in images.values() for _, _, a in part}
    if len(shapes) != 1:
        raise DataError(f"{where}: images must all have one size, found {', '.join(map(str, sorted(shapes)))}")

    def arrays(part: list[tuple[str, str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        part = sorted(part, key=lambda item: (item[0], item[1]))  # archive order must not matter
        x = np.stack([a for _, _, a in part])
        y = np.array([classes.index(c) for c, _, _ in part], dtype=np.int64)
        return x, y

    return ImageData(name, *arrays(images["train"]), *arrays(images["test"]), classes=classes)


def _is_image(name: str) -> bool:
    # Hidden files include macOS "._name.jpg" metadata that archives often carry.
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _folder_items(path: Path) -> Iterator[tuple[str, str, str, bytes]]:
    for split in ("train", "test"):
        for cls_dir in sorted(p for p in (path / split).iterdir() if p.is_dir()):
            for f in sorted(cls_dir.iterdir()):
                if _is_image(f.name):
                    yield split, cls_dir.name, f.name, f.read_bytes()


def _decode_folder(path: Path, name: str) -> ImageData:
    return _assemble(_folder_items(path), str(path), name)


def _tar_items(tar: tarfile.TarFile) -> Iterator[tuple[str, str, str, bytes]]:
    for member in tar:
        m = _SPLIT_RE.search(member.name)
        if member.isfile() and m and _is_image(m.group(3)):
            handle = tar.extractfile(member)
            if handle is not None:
                yield m.group(1), m.group(2), m.group(3), handle.read()


def _read_tar(path: Path, cache_dir: Path | None, name: str) -> ImageData:
    key = _file_key(path)
    data = _load_cache(_cache_file(cache_dir, name, key), name)
    if data is not None:
        return data
    try:
        with tarfile.open(path) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile() and Path(m.name).name in CIFAR_FILES}
            if "data_batch_1" in members:

                def open_file(fname: str) -> io.BytesIO | None:
                    m = members.get(fname)
                    handle = tar.extractfile(m) if m is not None else None
                    return io.BytesIO(handle.read()) if handle is not None else None

                return _cifar_python(open_file, str(path), name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read the archive ({exc})") from None

    def decode() -> ImageData:
        try:
            with tarfile.open(path, mode="r|*") as tar:  # streaming: one pass over the compressed file
                return _assemble(_tar_items(tar), str(path), name)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read the archive ({exc})") from None

    return _cached(path, key, cache_dir, decode, name)
