"""Plain-data serialisation of search state: a JSON tree plus NumPy arrays, never pickle.

:func:`encode` turns an object tree (a strategy's attributes, a one-shot evaluator's checkpoint, a policy
snapshot) into an :class:`Encoded`: a JSON-ready tree and a dict of arrays. :meth:`Encoded.to_bytes`
packs both into one ``.npz`` blob (the tree as a ``uint8`` array), read back with ``allow_pickle=False``.
:func:`decode` rebuilds the objects. Reading a blob therefore never runs code named by it, with one
bounded exception: plain objects of nasforge's own classes are created with ``cls.__new__`` when the
class lives in an already-imported ``nasforge.*`` module (no import, no ``__init__``).

What is encoded, and how it comes back:

* ``None``, ``bool``, ``int``, ``str``; ``float`` (NaN and infinities included); ``list``, ``tuple``,
  ``dict`` (any hashable keys), ``OrderedDict`` (with a ``state_dict``'s ``_metadata``), ``set``,
  ``frozenset``, ``deque``;
* NumPy arrays and scalars (exact dtype; object arrays are refused), ``numpy.random.Generator``
  (its bit generator's state);
* PyTorch tensors and parameters (dtype and ``requires_grad``; ``bfloat16`` travels as ``float32``),
  ``torch.Generator`` (``get_state``);
* ``nn.Module``, optimisers, learning-rate schedulers and gradient scalers as their ``state_dict``,
  restored *into* the live object found at the same place (see ``live`` below), so that references
  between them (an optimiser holding a policy's parameters) stay intact;
* :class:`~nasforge.arch.Architecture`, :class:`~nasforge.result.Result`, and plain objects and
  dataclasses of nasforge's own classes (their ``__dict__``, or ``__getstate__``/``__setstate__``);
* objects named in ``externals`` (a strategy's space and config) as references to them;
* the same object met twice is stored once and comes back as one object.

Anything else is a :class:`CodecError` naming where in the tree it was found.

``live`` is the tree as it is now (for a strategy: its current attributes). Modules, optimisers,
generators and nasforge objects found in ``live`` at the same place as in the saved tree are restored
into, instead of being replaced.
"""

from __future__ import annotations

import collections
import gc
import io
import json
import math
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arch import Architecture
from .errors import NasforgeError
from .result import Result

#: format version of the tree; bump when an encoding changes meaning
FORMAT = 1
TREE_KEY = "__tree__"
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


class CodecError(NasforgeError):
    """An object that cannot be saved as plain data, or a blob that does not decode."""


@dataclass
class Encoded:
    """An encoded object tree: JSON-ready ``tree`` and the arrays it refers to by name."""

    tree: Any
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """One ``.npz`` blob: the arrays concatenated by dtype (a few entries, however many arrays), and the
        tree with each array's place as UTF-8 JSON in a ``uint8`` array."""
        groups: dict[str, list[np.ndarray]] = {}
        index: dict[str, list[Any]] = {}
        sizes: dict[str, int] = {}
        for name, arr in self.arrays.items():
            key = arr.dtype.str
            flat = np.ascontiguousarray(arr).reshape(-1)
            index[name] = [key, sizes.get(key, 0), list(arr.shape)]
            sizes[key] = sizes.get(key, 0) + flat.size
            groups.setdefault(key, []).append(flat)
        head = {"format": FORMAT, "tree": self.tree, "arrays": index, "groups": list(groups)}
        text = json.dumps(head, separators=(",", ":"), allow_nan=False)
        entries = {f"g{i}": np.concatenate(parts) for i, parts in enumerate(groups.values())}
        entries[TREE_KEY] = np.frombuffer(text.encode(), dtype=np.uint8)
        buf = io.BytesIO()
        savez: Any = np.savez  # never an object array (the encoder refuses them), so nothing is pickled
        savez(buf, **entries)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, source: str = "blob") -> Encoded:
        """Read :meth:`to_bytes` output (``allow_pickle=False``: object arrays are refused)."""
        try:
            with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
                entries = {name: npz[name] for name in npz.files}
            head = json.loads(entries.pop(TREE_KEY).tobytes().decode())
            if not isinstance(head, dict) or head.get("format") != FORMAT:
                found = head.get("format") if isinstance(head, dict) else "?"
                raise CodecError(f"{source}: saved state of format {found}, this nasforge reads format {FORMAT}")
            groups = {key: entries[f"g{i}"] for i, key in enumerate(head["groups"])}
            arrays = {}
            for name, (key, start, shape) in head["arrays"].items():
                group = groups[key]
                if group.dtype.str != key:
                    raise ValueError(f"array group of dtype {group.dtype.str}, expected {key}")
                size = int(np.prod(shape, dtype=np.int64))
                arrays[name] = group[start : start + size].reshape(shape)
        except CodecError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
            raise CodecError(f"{source}: not a saved nasforge state ({exc})") from None
        return cls(head["tree"], arrays)


def dumps(obj: Any, externals: dict[str, Any] | None = None) -> bytes:
    """``encode(obj, externals).to_bytes()``."""
    return encode(obj, externals).to_bytes()


def loads(blob: bytes, live: Any = None, externals: dict[str, Any] | None = None, source: str = "blob") -> Any:
    """``decode(Encoded.from_bytes(blob), live, externals)``."""
    return decode(Encoded.from_bytes(blob, source), live, externals)


# --------------------------------------------------------------------------- encoding
def _torch() -> Any:
    """torch if it is already imported (an object tree holding tensors has imported it), else None."""
    return sys.modules.get("torch")


def _qualname(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _where(path: Any) -> str:
    """The readable form of a place in the tree (kept as nested tuples until an error needs it)."""
    parts = []
    while isinstance(path, tuple):
        path, key, style = path
        parts.append(f".{key}" if style == "." else "{member}" if style == "{" else
                     f"[key {key!r}]" if style == "k" else f"[{key!r}]")
    return str(path) + "".join(reversed(parts))


def _int_rows(values: Any) -> np.ndarray | None:
    """Many tuples of Python ints of one length as an int64 matrix, else None."""
    if len(values) < 16:
        return None
    width = -1
    for t in values:
        if type(t) is not tuple or (width >= 0 and len(t) != width):
            return None
        width = len(t)
    if width == 0 or not all(type(v) is int for t in values for v in t):
        return None
    try:
        return np.array(list(values), dtype=np.int64)
    except OverflowError:
        return None


def _is_nasforge(cls: type) -> bool:
    return cls.__module__ == "nasforge" or cls.__module__.startswith("nasforge.")


def _custom_getstate(cls: type) -> bool:
    return getattr(cls, "__getstate__", None) is not getattr(object, "__getstate__", None) and \
        hasattr(cls, "__setstate__")


def _stateful_kinds(torch: Any) -> tuple[type, ...]:
    """torch classes saved as their ``state_dict`` and restored into the live object."""
    kinds: list[type] = [torch.optim.Optimizer]
    sched = torch.optim.lr_scheduler
    kinds += [c for c in (getattr(sched, "LRScheduler", None), getattr(sched, "_LRScheduler", None),
                          getattr(sched, "ReduceLROnPlateau", None)) if isinstance(c, type)]
    for mod in ("amp", "cuda.amp"):
        scaler = getattr(sys.modules.get(f"torch.{mod}"), "GradScaler", None)
        if isinstance(scaler, type):
            kinds.append(scaler)
    return tuple(kinds)


class _Encoder:
    def __init__(self, externals: dict[str, Any] | None) -> None:
        self.externals = {id(v): k for k, v in (externals or {}).items()}
        self.memo: dict[int, tuple[int, Any]] = {}  # id -> (index, object kept alive)
        self.arrays: dict[str, np.ndarray] = {}
        self.torch = _torch()
        self.stateful: tuple[Any, ...] = _stateful_kinds(self.torch) if self.torch is not None else ()

    def array(self, value: np.ndarray, path: Any) -> str:
        if value.dtype.hasobject or value.dtype.kind == "V":
            raise CodecError(f"{_where(path)}: a NumPy array of dtype {value.dtype} cannot be saved as plain data")
        name = f"a{len(self.arrays)}"
        self.arrays[name] = value
        return name

    def memoised(self, obj: Any) -> dict[str, Any] | None:
        """A reference to an object met before, or None (and the object is numbered now)."""
        seen = self.memo.get(id(obj))
        if seen is not None:
            return {"$ref": seen[0]}
        self.memo[id(obj)] = (len(self.memo), obj)
        return None

    def items(self, pairs: Any, path: Any) -> list[list[Any]]:
        return [[self.enc(k, (path, k, "k")), self.enc(v, (path, k, "["))] for k, v in pairs]

    def enc(self, obj: Any, path: Any) -> Any:
        tp: Any = type(obj)
        if obj is None or tp in (bool, int, str):
            return obj
        if tp is float:
            return obj if math.isfinite(obj) else {"$float": repr(obj)}
        if id(obj) in self.externals:
            return {"$ext": self.externals[id(obj)]}
        if tp is Architecture:
            return {"$arch": [obj.space, list(obj.choices), obj.text]}
        if tp is Result:
            return {"$result": [self.enc(obj.reward, path), self.enc(obj.metrics, (path, "metrics", ".")),
                                self.enc(obj.cost, path), obj.failed, obj.error]}
        if tp is tuple:
            if all(type(v) is int for v in obj):  # the common case (choices, keys): no recursion
                return {"$tuple": list(obj)}
            return {"$tuple": [self.enc(v, (path, i, "[")) for i, v in enumerate(obj)]}
        if tp is frozenset:
            return {"$frozenset": [self.enc(v, (path, "", "{")) for v in obj]}
        if isinstance(obj, np.generic):
            if isinstance(obj, (np.object_, np.void)):
                raise CodecError(f"{_where(path)}: a NumPy {tp.__name__} cannot be saved as plain data")
            return {"$npscalar": self.array(np.asarray(obj), path)}
        ref = self.memoised(obj)
        if ref is not None:
            return ref
        if tp is list:
            return [self.enc(v, (path, i, "[")) for i, v in enumerate(obj)]
        if tp is dict:
            if all(type(k) is str and not k.startswith("$") for k in obj):
                return {k: self.enc(v, (path, k, ".")) for k, v in obj.items()}
            return {"$dict": self.items(obj.items(), path)}
        if tp is collections.OrderedDict:
            out: dict[str, Any] = {"$odict": self.items(obj.items(), path)}
            meta = getattr(obj, "_metadata", None)  # a state_dict's per-module versions
            if meta is not None:
                out["meta"] = self.enc(meta, (path, "_metadata", "."))
            return out
        if tp is set:
            rows = _int_rows(obj)
            if rows is not None:  # the common case (architectures seen): one array, not a JSON list per member
                return {"$set": [], "rows": self.array(rows, path)}
            return {"$set": [self.enc(v, (path, "", "{")) for v in obj]}
        if tp is collections.deque:
            return {"$deque": [self.enc(v, (path, i, "[")) for i, v in enumerate(obj)], "maxlen": obj.maxlen}
        if tp is np.ndarray:
            return {"$nd": self.array(obj, path)}
        if isinstance(obj, np.random.Generator):
            name = type(obj.bit_generator).__name__
            if name not in _BIT_GENERATORS:
                raise CodecError(f"{_where(path)}: NumPy bit generator {name} is not supported")
            return {"$npgen": name, "state": self.enc(obj.bit_generator.state, (path, "state", "."))}
        torch = self.torch
        if torch is not None:
            if isinstance(obj, torch.Tensor):
                return self.tensor(obj, path)
            if isinstance(obj, torch.Generator):
                if obj.device.type != "cpu":
                    raise CodecError(f"{_where(path)}: a {obj.device} generator cannot be saved (CPU generators only)")
                return {"$tgen": self.array(obj.get_state().numpy(), path)}
            if isinstance(obj, torch.nn.Module):
                return {"$module": _qualname(tp), "state": self.enc(obj.state_dict(), (path, "state_dict()", ".")),
                        "training": [m.training for m in obj.modules()]}
            if isinstance(obj, self.stateful):
                return {"$live": _qualname(tp), "state": self.enc(obj.state_dict(), (path, "state_dict()", "."))}
        if _is_nasforge(tp) and not isinstance(obj, type):
            if _custom_getstate(tp):
                return {"$obj": _qualname(tp), "getstate": self.enc(obj.__getstate__(), (path, "__getstate__()", "."))}
            if not hasattr(obj, "__dict__"):
                raise CodecError(f"{_where(path)}: {tp.__qualname__} has no __dict__ to save")
            return {"$obj": _qualname(tp), "attrs": {k: self.enc(v, (path, k, ".")) for k, v in vars(obj).items()}}
        raise CodecError(f"{_where(path)}: cannot save a {tp.__module__}.{tp.__qualname__} as plain data")

    def tensor(self, t: Any, path: Any) -> dict[str, Any]:
        torch = self.torch
        data = t.detach().cpu()
        dtype = str(data.dtype).removeprefix("torch.")
        if data.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
            data = data.float()
        if data.is_quantized or data.is_sparse or data.is_complex() and data.dtype == torch.complex32:
            raise CodecError(f"{_where(path)}: a {dtype} tensor cannot be saved as plain data")
        return {"$tensor": self.array(data.numpy(), path), "dtype": dtype,
                "param": isinstance(t, torch.nn.Parameter), "grad": bool(t.requires_grad)}


def encode(obj: Any, externals: dict[str, Any] | None = None) -> Encoded:
    """``obj`` as plain data; objects in ``externals`` (by identity) are saved as references to their names."""
    enc = _Encoder(externals)
    # the tree is many small new containers: without this, they trigger full garbage collections of a
    # heap that holds torch (measured: most of a save's time)
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree = enc.enc(obj, "state")
    finally:
        if collecting:
            gc.enable()
    return Encoded(tree, enc.arrays)


# --------------------------------------------------------------------------- decoding
def _find_class(name: str, path: Any) -> type:
    """A class of an already-imported nasforge module (never imports anything)."""
    module, _, qualname = name.partition(":")
    if not (module == "nasforge" or module.startswith("nasforge.")) or "<" in qualname:
        raise CodecError(f"{_where(path)}: refusing to create an object of {name} (only nasforge's own classes)")
    obj: Any = sys.modules.get(module)
    if obj is None:
        raise CodecError(f"{_where(path)}: class {name} is not available (module {module} is not loaded)")
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or obj.__module__ != module:
        raise CodecError(f"{_where(path)}: no class {name}")
    return obj


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], externals: dict[str, Any] | None) -> None:
        self.arrays = arrays
        self.externals = externals or {}
        self.memo: list[Any] = []

    def array(self, name: Any, path: Any) -> np.ndarray:
        if not isinstance(name, str) or name not in self.arrays:
            raise CodecError(f"{_where(path)}: refers to a missing array {name!r}")
        return self.arrays[name]

    def keep(self, obj: Any) -> Any:
        self.memo.append(obj)
        return obj

    def pairs(self, items: Any, live: Any, path: Any) -> list[tuple[Any, Any]]:
        out = []
        for k, v in items:
            key = self.dec(k, None, (path, "", "k"))
            hint = live.get(key) if isinstance(live, dict) and _hashable(key) else None
            out.append((key, self.dec(v, hint, (path, key, "["))))
        return out

    def dec(self, node: Any, live: Any, path: Any) -> Any:
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        if isinstance(node, list):
            out: list[Any] = self.keep([])
            for i, v in enumerate(node):
                out.append(self.dec(v, live[i] if isinstance(live, list) and i < len(live) else None, (path, i, "[")))
            return out
        if not isinstance(node, dict):
            raise CodecError(f"{_where(path)}: unexpected {type(node).__name__} in a saved state")
        tag = next((k for k in node if k.startswith("$")), None)
        if tag is None:
            plain: dict[str, Any] = self.keep({})
            for k, v in node.items():
                plain[k] = self.dec(v, live.get(k) if isinstance(live, dict) else None, (path, k, "."))
            return plain
        handler = _TAGS.get(tag)
        if handler is None:
            raise CodecError(f"{_where(path)}: unknown tag {tag!r} in a saved state")
        return handler(self, node, node[tag], live, path)

    # --- immutable values (not numbered)
    def _float(self, node: dict, value: Any, live: Any, path: Any) -> float:
        if value not in ("nan", "inf", "-inf"):
            raise CodecError(f"{_where(path)}: bad float {value!r}")
        return float(value)

    def _ext(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        if value not in self.externals:
            raise CodecError(f"{_where(path)}: refers to {value!r}, which was not given")
        return self.externals[value]

    def _ref(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        if not isinstance(value, int) or not 0 <= value < len(self.memo):
            raise CodecError(f"{_where(path)}: bad reference {value!r}")
        return self.memo[value]

    def _arch(self, node: dict, value: Any, live: Any, path: Any) -> Architecture:
        space, choices, text = value
        return Architecture(str(space), tuple(int(c) for c in choices), str(text))

    def _result(self, node: dict, value: Any, live: Any, path: Any) -> Result:
        reward, metrics, cost, failed, error = value
        return Result(self.dec(reward, None, path), self.dec(metrics, None, (path, "metrics", ".")),
                      self.dec(cost, None, path), bool(failed), error)

    def _tuple(self, node: dict, value: Any, live: Any, path: Any) -> tuple:
        hints = live if isinstance(live, tuple) else ()
        return tuple(self.dec(v, hints[i] if i < len(hints) else None, (path, i, "[")) for i, v in enumerate(value))

    def _frozenset(self, node: dict, value: Any, live: Any, path: Any) -> frozenset:
        return frozenset(self.dec(v, None, (path, "", "{")) for v in value)

    def _npscalar(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        return self.array(value, path)[()]

    # --- containers and objects (numbered in the order met, as when encoding)
    def _dict(self, node: dict, value: Any, live: Any, path: Any) -> dict:
        out: dict[Any, Any] = self.keep({})
        out.update(self.pairs(value, live, path))
        return out

    def _odict(self, node: dict, value: Any, live: Any, path: Any) -> collections.OrderedDict:
        out: collections.OrderedDict = self.keep(collections.OrderedDict())
        out.update(self.pairs(value, live, path))
        if "meta" in node:
            out._metadata = self.dec(node["meta"], None, (path, "_metadata", "."))  # type: ignore[attr-defined]
        return out

    def _set(self, node: dict, value: Any, live: Any, path: Any) -> set:
        out: set[Any] = self.keep(set())
        if "rows" in node:
            rows = self.array(node["rows"], path)
            if rows.ndim != 2 or rows.dtype.kind != "i":
                raise CodecError(f"{_where(path)}: bad rows of a set")
            out.update(map(tuple, rows.tolist()))
        out.update(self.dec(v, None, (path, "", "{")) for v in value)
        return out

    def _deque(self, node: dict, value: Any, live: Any, path: Any) -> collections.deque:
        out: collections.deque = self.keep(collections.deque(maxlen=node.get("maxlen")))
        out.extend(self.dec(v, None, (path, i, "[")) for i, v in enumerate(value))
        return out

    def _nd(self, node: dict, value: Any, live: Any, path: Any) -> np.ndarray:
        return self.keep(self.array(value, path).copy())  # writable, owning its memory

    def _npgen(self, node: dict, value: Any, live: Any, path: Any) -> np.random.Generator:
        if value not in _BIT_GENERATORS:
            raise CodecError(f"{_where(path)}: unknown NumPy bit generator {value!r}")
        if isinstance(live, np.random.Generator) and type(live.bit_generator).__name__ == value:
            gen = live
        else:
            gen = np.random.Generator(getattr(np.random, value)())
        self.keep(gen)
        gen.bit_generator.state = self.dec(node["state"], None, (path, "state", "."))
        return gen

    def _tensor(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        torch = _require_torch(path)
        dtype = getattr(torch, str(node.get("dtype")), None)
        if not isinstance(dtype, torch.dtype):
            raise CodecError(f"{_where(path)}: unknown tensor dtype {node.get('dtype')!r}")
        data = torch.from_numpy(self.array(value, path).copy()).to(dtype)
        if node.get("param"):
            data = torch.nn.Parameter(data, requires_grad=bool(node.get("grad")))
        elif node.get("grad"):
            data.requires_grad_(True)
        return self.keep(data)

    def _tgen(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        torch = _require_torch(path)
        gen = live if isinstance(live, torch.Generator) and live.device.type == "cpu" else torch.Generator()
        gen.set_state(torch.from_numpy(self.array(value, path).copy()))
        return self.keep(gen)

    def _live(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        """Load a saved ``state_dict`` into the live object of that class at the same place."""
        if live is None or _qualname(type(live)) != value:
            found = "nothing" if live is None else f"a {_qualname(type(live))}"
            raise CodecError(f"{_where(path)}: a saved {value} is restored into the live object, but {found} is there")
        self.keep(live)
        live.load_state_dict(self.dec(node["state"], None, (path, "state_dict()", ".")))
        return live

    def _module(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        module = self._live(node, value, live, path)
        flags = node.get("training")
        subs = list(module.modules())
        if isinstance(flags, list) and len(flags) == len(subs):
            for m, flag in zip(subs, flags):
                m.training = bool(flag)
        return module

    def _obj(self, node: dict, value: Any, live: Any, path: Any) -> Any:
        cls: Any = _find_class(str(value), path)
        params = getattr(cls, "__dataclass_params__", None)
        frozen = params is not None and params.frozen  # a value, maybe shared: made anew, never changed
        obj: Any = live if type(live) is cls and not frozen else cls.__new__(cls)
        self.keep(obj)
        if "getstate" in node:
            obj.__setstate__(self.dec(node["getstate"], None, (path, "__getstate__()", ".")))
            return obj
        current = vars(obj) if obj is live else {}
        attrs = {k: self.dec(v, current.get(k), (path, k, ".")) for k, v in node["attrs"].items()}
        for k in [k for k in current if k not in attrs]:
            object.__delattr__(obj, k)
        for k, v in attrs.items():
            object.__setattr__(obj, k, v)  # also for frozen dataclasses
        return obj


_TAGS = {f"${name}": getattr(_Decoder, f"_{name}") for name in (
    "float", "ext", "ref", "arch", "result", "tuple", "frozenset", "npscalar", "dict", "odict", "set", "deque",
    "nd", "npgen", "tensor", "tgen", "module", "live", "obj")}


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _require_torch(path: Any) -> Any:
    torch = _torch()
    if torch is None:
        import torch
    return torch


def decode(encoded: Encoded, live: Any = None, externals: dict[str, Any] | None = None) -> Any:
    """The object tree ``encoded`` describes; ``live`` is the current tree to restore modules and objects into."""
    try:
        return _Decoder(encoded.arrays, externals).dec(encoded.tree, live, "state")
    except CodecError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
        raise CodecError(f"saved state does not decode ({type(exc).__name__}: {exc})") from None
