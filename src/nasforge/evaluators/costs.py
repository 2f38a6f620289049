"""Parameters, FLOPs and latency of the networks an evaluator scores, cached per architecture.

Parameters and FLOPs are counted on the built network without training it (:mod:`nasforge.ops.measure`), so
a table look-up reports them too. A whole table's worth is computed once and cached on disk
(:func:`table_costs`): for a space whose networks' costs add up over its decisions (NAS-Bench-201: every edge
holds its own operation, and the cells of a stage are alike), counting one network per (decision, option) gives
every network's counts exactly; a few networks counted directly check the sum before it is trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..arch import Architecture
from ..objectives import LATENCY_METRICS, MeasureConfig
from ..ops.measure import count_flops, count_params, measure_latency
from ..spaces.base import SearchSpace

log = logging.getLogger(__name__)

#: networks counted directly to check an additive decomposition before it is trusted
CHECKS = 8

Builder = Callable[[Architecture], nn.Module]


def static_costs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """``params`` and ``flops`` (one image of ``input_shape`` = (C, H, W)) of a built network."""
    return {"params": float(count_params(model)), "flops": float(count_flops(model, (1, *input_shape)))}


class CostModel:
    """Costs of architectures of ``space``, each network built by ``build`` (input ``(C, H, W)``).

    ``static(arch)`` counts parameters and FLOPs; ``latency(arch)`` times forward passes of batch 1
    (``latency_ms``) and ``measure.batch`` (``latency_ms_batch``) on ``device``. Both are cached per
    architecture (``space.key``) for the life of the model; ``preset`` fills the static cache in bulk.
    """

    def __init__(self, space: SearchSpace, build: Builder, input_shape: Sequence[int],
                 measure: MeasureConfig | None = None, device: str | torch.device = "cpu") -> None:
        self.space, self.build, self.input_shape = space, build, tuple(int(x) for x in input_shape)
        self.measure = measure or MeasureConfig()
        self.device = device
        self._static: dict[Any, dict[str, float]] = {}
        self._preset: dict[Any, dict[str, float]] = {}
        self._latency: dict[Any, dict[str, float]] = {}

    def preset(self, archs: Sequence[Architecture], values: np.ndarray, names: Sequence[str]) -> None:
        """Known costs (``names``, one column each) of ``archs``, used instead of counting or timing."""
        for arch, row in zip(archs, values):
            self._preset.setdefault(self.space.key(arch), {}).update({n: float(v) for n, v in zip(names, row)})

    def static(self, arch: Architecture) -> dict[str, float]:
        key = self.space.key(arch)
        if key not in self._static:
            self._static[key] = static_costs(self.build(arch), self.input_shape)
        return dict(self._static[key])

    def latency(self, arch: Architecture) -> dict[str, float]:
        key = self.space.key(arch)
        if key not in self._latency:
            m = self.measure
            model = self.build(arch)
            one = measure_latency(model, (1, *self.input_shape), warmup=m.warmup, repeats=m.repeats, device=self.device,
                                  clock=m.clock)
            many = measure_latency(model, (m.batch, *self.input_shape), warmup=m.warmup, repeats=m.repeats,
                                   device=self.device, clock=m.clock)
            self._latency[key] = {"latency_ms": one, "latency_ms_batch": many, "latency_batch": float(m.batch)}
        return dict(self._latency[key])

    def costs(self, arch: Architecture, wanted: set[str]) -> dict[str, float]:
        """The costs among ``wanted`` (``params``, ``flops``, latency metrics): preset ones as they are, the
        others counted or timed."""
        out = {m: v for m, v in self._preset.get(self.space.key(arch), {}).items() if m in wanted}
        missing = wanted - set(out)
        if missing & {"params", "flops"}:
            out = {**self.static(arch), **out}
        if missing & set(LATENCY_METRICS):
            out = {**self.latency(arch), **out}
        return out


def additive_costs(space: SearchSpace, build: Builder, input_shape: Sequence[int],
                   rng: np.random.Generator | None = None) -> np.ndarray | None:
    """Per decision and option, the ``params`` and ``flops`` that option adds to the network with every
    decision at option 0 (row 0: that network's own), from 1 + sum(options - 1) counted networks: a
    (1 + D) x max(options) x 2 array. None when a few directly counted networks disagree with the sum
    (then costs are not additive over this space's decisions)."""
    base_choices = [0] * len(space.decisions)

    def counted(choices: Sequence[int]) -> np.ndarray:
        c = static_costs(build(space.make(list(choices))), input_shape)
        return np.array([c["params"], c["flops"]])

    width = max(d.n_choices for d in space.decisions)
    model = np.zeros((1 + len(space.decisions), width, 2))
    model[0, 0] = counted(base_choices)
    for d, dec in enumerate(space.decisions):
        for o in range(1, dec.n_choices):
            model[1 + d, o] = counted([*base_choices[:d], o, *base_choices[d + 1:]]) - model[0, 0]
    rng = rng or np.random.default_rng(0)
    for _ in range(CHECKS):
        arch = space.sample(rng)
        if not np.allclose(counted(arch.choices), sum_costs(model, np.array([arch.choices]))[0], rtol=0, atol=0.5):
            log.warning("%s: costs are not additive over decisions (%s); counting every network", space.name, arch)
            return None
    return model


def sum_costs(model: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """The costs (n x 2) of choice rows (n x D) from an :func:`additive_costs` model."""
    total = np.tile(model[0, 0], (len(choices), 1))
    for d in range(choices.shape[1]):
        total += model[1 + d][choices[:, d]]
    return total


def _cache_path(cache_dir: str | Path | None, space: SearchSpace, sig: dict[str, Any], kind: str) -> Path | None:
    digest = hashlib.sha256(json.dumps(sig, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return Path(cache_dir) / "costs" / f"{space.name}-{kind}-{digest}.npz" if cache_dir else None


def _load(path: Path | None) -> dict[str, np.ndarray] | None:
    if path is None or not path.exists():
        return None
    try:
        with np.load(path) as saved:
            return {k: np.asarray(saved[k]) for k in saved.files}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable cost cache (%s); counting again", path, exc)
        return None


def _save(path: Path | None, **arrays: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic: concurrent workers never read half a file


def table_costs(space: SearchSpace, build: Builder, input_shape: Sequence[int], archs: Sequence[Architecture],
                signature: dict[str, Any], cache_dir: str | Path | None, additive: bool = False) -> np.ndarray:
    """``params`` and ``flops`` (n x 2) of every one of ``archs``.

    With ``additive`` the per-option costs of :func:`additive_costs` are counted once per network setting
    (``signature``: what the networks are built with) and cached in ``cache_dir/costs``, so that any table of the
    space costs a sum; otherwise (or when the costs turn out not to add up) every network is counted and the
    counts are cached for these very architectures."""
    sig = {**signature, "space": space.name, "input": list(input_shape), "torch": torch.__version__.split("+")[0]}
    choices = np.array([a.choices for a in archs], dtype=np.int64)
    if additive:
        path = _cache_path(cache_dir, space, sig, "additive")
        saved = _load(path)
        if saved is None:
            model = additive_costs(space, build, input_shape)
            _save(path, model=np.zeros(0) if model is None else model, additive=np.array(model is not None))
        else:
            model = saved["model"] if bool(saved.get("additive", np.array(False))) else None
        if model is not None:
            return sum_costs(model, choices)
    path = _cache_path(cache_dir, space, sig, "networks")
    saved = _load(path)
    if saved is not None and "choices" in saved and np.array_equal(saved["choices"], choices):
        return np.asarray(saved["costs"], dtype=np.float64)
    rows = [static_costs(build(a), input_shape) for a in archs]
    values = np.array([[r["params"], r["flops"]] for r in rows])
    _save(path, choices=choices, costs=values)
    return values
