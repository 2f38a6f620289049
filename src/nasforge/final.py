"""Final training: one architecture trained from scratch to the end, with its result, genotype and weights.

:func:`train_final` is the library side of ``nasforge train`` and of the demo's second step. It builds the
network of an architecture (an image classifier or a language model, as the space says), trains it with
the training loop of its family (:func:`~nasforge.train.loop.train_architecture`,
:func:`~nasforge.train.lm.train_language_model`) and returns the content of ``result.json`` with the
trained model. Given ``out``, it writes ``model.npz`` (the weights), ``genotype.json`` and ``result.json``
there, each atomically (a temporary file renamed into place), ``result.json`` last: a directory holding a
``result.json`` holds the rest too.

:func:`prepare_final` says what to train: an architecture named by space and string, or a run's
(``nasforge train --from RUN``): a final training's architecture, a one-shot search's derived one, a
finished search's best, or the best so far of an interrupted search, read from its store without writing
to it (:func:`run_pick`). The run's data set, data path, space arguments and model size are the defaults,
under the caller's settings; which model size was built, and why, is logged and kept in ``result.json``.

Settings are ``key=value`` overrides typed through :class:`FinalConfig` by the package's one parser
(:func:`nasforge.config.apply_overrides`): ``train.lr=0.05``, ``data.val_size=0.1``, ``model.C=16``,
``space.nodes=4``, or whole mappings such as ``model_args={C: 16, N: 3}``.

Weights are a zip of ``.npy`` arrays (numpy's ``.npz``) read with ``allow_pickle=False``
(:func:`save_weights`, :func:`load_weights`): loading a weights file never runs code from it, which
``torch.load`` of a pickle cannot promise.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .arch import Architecture
from .config import RunConfig, apply_overrides, build, to_dict
from .errors import ConfigError, DataError, RunDirError
from .export import GENOTYPE_FILE, WEIGHTS_FILE, make_genotype
from .registry import SPACES
from .spaces.base import SearchSpace

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
#: ``SECTION.KEY=VALUE`` overrides of a final training: training loop, data split, model size, search space
SECTIONS = ("train", "data", "model", "space")
#: model arguments a run records that are not the network's size (a language model's vocabulary comes from the corpus)
_NOT_SIZE = ("vocab_size",)


@dataclass
class FinalConfig:
    """Settings of a final training besides the architecture.

    ``train_args`` are fields of :class:`~nasforge.train.loop.TrainConfig` for image classifiers and of
    :class:`~nasforge.train.lm.LMTrainConfig` for language models; ``data_args`` those of
    :class:`~nasforge.train.splits.DataConfig` (images only; ``val_size`` is 0 unless set: final training
    uses every training image); ``model_args`` go to the space's ``build`` (the network's size, e.g.
    ``C`` and ``N``); ``space_args`` to the space. ``dataset`` is digits unless set for image cells, and
    must be ptb (with ``data``) for recurrent ones. ``seed`` seeds initialisation, batch order,
    augmentation and dropout.
    """

    dataset: str | None = None
    data: str | None = None
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    space_args: dict[str, Any] = field(default_factory=dict)
    model_args: dict[str, Any] = field(default_factory=dict)
    train_args: dict[str, Any] = field(default_factory=dict)
    data_args: dict[str, Any] = field(default_factory=dict)


def final_config(values: Mapping[str, Any] | None = None, overrides: Sequence[str] = ()) -> FinalConfig:
    """A :class:`FinalConfig` from plain values and ``key=value`` overrides (``train.lr=0.05``,
    ``model.C=16``, ``model_args={C: 16, N: 3}``, ``seed=1``); values are typed, never evaluated."""
    data = apply_overrides(dict(values or {}), list(overrides), sections=SECTIONS)
    try:
        return build(FinalConfig, data, "")
    except ConfigError as exc:
        raise ConfigError(str(exc).removeprefix(": ")) from None


def is_language_model(space: SearchSpace) -> bool:
    """Whether the space's networks are language models (registered with ``language_model=True``)."""
    return space.name in SPACES and bool(SPACES.get(space.name).capabilities.get("language_model"))


def train_config(space: SearchSpace, config: FinalConfig) -> Any:
    """The typed training settings of ``config`` for ``space``'s model family (errors name ``train.KEY``)."""
    if is_language_model(space):
        from .train.lm import LMTrainConfig

        return build(LMTrainConfig, config.train_args, "train")
    from .train.loop import TrainConfig

    return build(TrainConfig, config.train_args, "train")


def describe_model_args(model_args: Mapping[str, Any]) -> str:
    """``C=8, N=1``, or "the space's default size" when empty."""
    return ", ".join(f"{k}={v}" for k, v in model_args.items()) or "the space's default size"


# --------------------------------------------------------------------------- what to train
@dataclass
class FinalJob:
    """What :func:`train_final` trains, and where it came from (``origin``, kept in ``result.json``)."""

    space: SearchSpace
    arch: Architecture
    config: FinalConfig
    origin: dict[str, Any] = field(default_factory=dict)

    def train(self, out: str | Path | None = None, *, callback: Callable[[Any], None] | None = None) -> FinalTraining:
        """:func:`train_final` of this job."""
        return train_final(self.space, self.arch, self.config, out, callback=callback, origin=self.origin)


def prepare_final(
    space: str | None = None,
    arch: str | None = None,
    *,
    from_run: str | Path | None = None,
    overrides: Sequence[str] = (),
    **settings: Any,
) -> FinalJob:
    """The space, architecture and settings of a final training.

    ``settings`` are :class:`FinalConfig` fields the caller gives (None counts as not given), and
    ``overrides`` ``key=value`` strings applied over them. With ``from_run``, the architecture is the
    run's (:func:`run_pick`; ``space`` and ``arch`` still override it) and the run's data set, data path,
    space arguments and model size (its evaluator's ``model_args``, super-network options dropped) are
    the defaults under ``settings`` and ``overrides``.
    """
    values = {k: v for k, v in settings.items() if v is not None}
    origin: dict[str, Any] = {"run": None}
    run_model_args: dict[str, Any] | None = None
    if from_run is not None:
        genotype, origin, run_values = _run_defaults(Path(from_run))
        space, arch = space or genotype["space"], arch or genotype["arch"]
        run_model_args = run_values["model_args"]
        values = {**run_values, **values}
    elif not space or not arch:
        raise ConfigError("--space and --arch are required (or --from RUN_DIR)")
    config = final_config(values, overrides)
    if run_model_args is None:
        origin["model_args"] = "set here" if config.model_args else "the space's defaults"
    elif config.model_args == run_model_args:
        origin["model_args"] = "the run's"
    else:
        origin["model_args"] = f"set here; the run's: {describe_model_args(run_model_args)}"
    from .factory import create_space

    built = create_space(space, **config.space_args)
    return FinalJob(built, built.parse(arch), config, origin)


def _run_defaults(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A run's genotype, where its architecture comes from, and the :class:`FinalConfig` values it implies."""
    from .export import run_genotype
    from .run.rundir import read_config, read_result

    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    result = read_result(run_dir)
    genotype = run_genotype(run_dir)
    values: dict[str, Any]
    if "genotype" in result:  # a final training
        arch_from = "the architecture trained in this run"
        values = {"dataset": result.get("dataset"), "data": result.get("data")}
    else:
        _, arch_from = run_pick(run_dir, result)
        config = read_config(run_dir)
        values = {"dataset": genotype.get("dataset"), "data": config.data, "cache_dir": config.cache_dir}
    values = {k: v for k, v in values.items() if v is not None}
    values["space_args"] = dict(genotype.get("space_args") or {})
    values["model_args"] = {k: v for k, v in (genotype.get("model_args") or {}).items() if k not in _NOT_SIZE}
    return genotype, {"run": str(run_dir), "arch": arch_from}, values


def search_model_args(config: RunConfig) -> dict[str, Any]:
    """The model size of a search's networks: its evaluator's ``model_args`` without the super-network's
    own options (``shared_affine``, ``running_stats``), which no single network takes."""
    from .supernet import SupernetOptions

    args = dict(config.evaluator_args.get("model_args") or {})
    return {k: v for k, v in args.items() if k not in SupernetOptions.__dataclass_fields__}


def run_pick(run_dir: str | Path, result: Mapping[str, Any] | None = None) -> tuple[dict[str, Any] | None, str]:
    """The architecture a search hands on (``{"arch": ...}``, None when no evaluation succeeded) and a
    phrase saying which it is.

    A finished search: its derived architecture (one-shot, :func:`~nasforge.run.rundir.derived_pick`) or its
    best trial, from ``result.json``. An interrupted one (``result.json`` partial or missing): the best
    finished trial in its store (:func:`best_stored_trial`), which may be newer than ``result.json``.
    """
    from .run.rundir import derived_pick, read_config, read_result

    run_dir = Path(run_dir)
    config = read_config(run_dir)  # also: not a run directory is an error here
    result = read_result(run_dir) if result is None else result
    if result.get("complete"):
        derived = derived_pick(result.get("derived") or {})
        if derived:
            return derived, "the architecture derived by the one-shot search"
        return result.get("best"), f"the best of the search ({result.get('n_evaluations')} evaluations)"
    stored, finished = best_stored_trial(run_dir)
    best = stored or result.get("best")
    return best, f"the best so far of the interrupted search ({finished} of {config.budget} evaluations finished)"


def best_stored_trial(run_dir: str | Path) -> tuple[dict[str, Any] | None, int]:
    """The best successful trial in a run's store (the search's own incumbent: the first of equal rewards) and
    the number of finished trials, read through the run store opened read-only (nothing is written to the run
    directory, and a read-only copy of a run works)."""
    from .factory import create_space
    from .run.loop import SearchRecord
    from .run.rundir import DB_FILE, open_store, read_config

    if not (Path(run_dir) / DB_FILE).exists():
        return None, 0
    config = read_config(run_dir)
    space = create_space(config.space, **config.space_args)
    with open_store(run_dir, readonly=True) as store:
        store.load(space.from_dict)
        finished = store.finished()
    best = SearchRecord(space, finished, config.budget).best
    if best is None or best.result is None:
        return None, len(finished)
    return {"arch": str(best.arch), "reward": best.reward, "metrics": best.result.metrics}, len(finished)


# --------------------------------------------------------------------------- training
@dataclass
class FinalTraining:
    """A final training's outcome: ``result`` is the content of ``result.json``, ``model`` the trained network."""

    result: dict[str, Any]
    model: nn.Module

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))


def train_final(
    space: SearchSpace,
    arch: Architecture,
    config: FinalConfig | None = None,
    out: str | Path | None = None,
    *,
    data: Any = None,
    callback: Callable[[Any], None] | None = None,
    origin: Mapping[str, Any] | None = None,
) -> FinalTraining:
    """Train ``arch`` of ``space`` from scratch as ``config`` says, score it, and with ``out`` write its files.

    ``data`` is the loaded data set (an :class:`~nasforge.train.readers.ImageData`, or a
    :class:`~nasforge.train.text.Corpus` for language models) when the caller trains several
    architectures on it; by default it is loaded from ``config``. ``callback`` receives the training's
    progress (:class:`~nasforge.train.loop.Progress` for images, each epoch's record for language models).
    ``origin`` says where the architecture and its size came from (:func:`prepare_final`); it is logged
    and kept in the result. Image results give accuracies in percent (``val_accuracy`` is None without a
    validation split), language models perplexities. A training whose loss stopped being finite is a
    result with ``failed`` and ``error``, not an exception.
    """
    config = config or FinalConfig()
    origin = {"run": None, "model_args": "set here" if config.model_args else "the space's defaults", **(origin or {})}
    settings = train_config(space, config)  # bad settings fail before any data is read
    lm = is_language_model(space)
    if lm:
        _check_lm_config(space, config)
    else:
        from .train import DataConfig

        data_config = build(DataConfig, {"val_size": 0, **config.data_args}, "data")
    from .train.loop import resolve_device

    device = resolve_device(config.device)
    out = None if out is None else _check_out(Path(out))
    if data is None:
        data = load_final_data(space, config)
    if origin.get("run"):
        log.info("training %s, %s in %s", arch, origin.get("arch", "the architecture"), origin["run"])
    log.info("building %s at model size %s (%s)", space.name, describe_model_args(config.model_args),
             origin["model_args"])
    if lm:
        done = _train_lm(space, arch, config, settings, data, device, callback)
    else:
        done = _train_image(space, arch, config, settings, data_config, data, device, callback)
    result, model, genotype = done
    result.update({"model_args": dict(config.model_args), "origin": origin, **provenance()})
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"{out}: cannot create the output directory ({exc.strerror})") from None
        write_final(out, model, genotype, result)
    return FinalTraining(result, model)


def load_final_data(space: SearchSpace, config: FinalConfig) -> Any:
    """The data set a final training of ``space`` reads: PTB's corpus for language models, else images."""
    if is_language_model(space):
        from .train.text import load_corpus

        _check_lm_config(space, config)
        return load_corpus(config.data or "")
    from .train import default_cache_dir, load_dataset
    from .train.distributed import Replicas

    cache = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    # data-parallel: rank 0 decodes what is not in the cache yet, the others then read the cache
    return load_dataset(config.dataset or "digits", config.data, cache, Replicas.current())


def _check_lm_config(space: SearchSpace, config: FinalConfig) -> None:
    if config.dataset not in (None, "ptb"):
        raise ConfigError(f"dataset: {space.name} cells are language models trained on ptb, not {config.dataset!r}")
    if not config.data:
        raise ConfigError("data: a folder or .zip holding ptb.train.txt, ptb.valid.txt and ptb.test.txt is required")
    if config.data_args:
        raise ConfigError("data.*: language models read the whole corpus; there is no data section")


def _check_out(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another --out")
    if (out / RESULT_FILE).exists():
        raise RunDirError(f"{out}: already holds a {RESULT_FILE}; choose another --out")
    return out


def _replica_count() -> int:
    """How many data-parallel processes trained (1 without torch.distributed)."""
    from .train.distributed import Replicas

    replicas = Replicas.current()
    return 1 if replicas is None else replicas.world


def _percent(x: float) -> float | None:
    return None if x != x else 100.0 * x  # nan (no such split) is None in JSON


def _train_image(space: SearchSpace, arch: Architecture, config: FinalConfig, settings: Any, data_config: Any,
                 data: Any, device: torch.device, callback: Any) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    from .train import make_splits
    from .train.loop import train_architecture

    splits = make_splits(data, data_config)
    done = train_architecture(space, arch, splits, settings, model_args=config.model_args, seed=config.seed,
                              device=device, callback=callback)
    outcome, trained = done.outcome, done.outcome.train
    genotype = make_genotype(space.name, arch, space_args=config.space_args, model_args=config.model_args,
                             input_shape=splits.shape, num_classes=splits.num_classes, dataset=data.name,
                             normalisation=splits.normalise.describe())
    result = {
        "kind": "train", "space": space.name, "arch": str(arch), "dataset": data.name, "data": config.data,
        "seed": config.seed, "device": str(device),
        "test_accuracy": _percent(outcome.test_accuracy), "val_accuracy": _percent(outcome.val_accuracy),
        "train_accuracy": _percent(trained.train_accuracy), "train_loss": trained.train_loss,
        "params": done.params, "flops": done.flops, "epochs": trained.epochs, "train_time_s": trained.time_s,
        "train_images_per_s": None if trained.images_per_s != trained.images_per_s else trained.images_per_s,
        "replicas": _replica_count(),
        "failed": trained.failed, "error": trained.error, "history": trained.history,
        "config": {"train": to_dict(settings), "data": to_dict(data_config), "model": dict(config.model_args),
                   "space": dict(config.space_args)},
        "genotype": genotype,
    }
    return result, done.model, genotype


def _train_lm(space: SearchSpace, arch: Architecture, config: FinalConfig, settings: Any, corpus: Any,
              device: torch.device, callback: Any) -> tuple[dict[str, Any], nn.Module, dict[str, Any]]:
    from .train.lm import train_language_model

    done = train_language_model(space, arch, corpus, settings, model_args=config.model_args, seed=config.seed,
                                device=device, callback=callback)
    model_args = {**config.model_args, "vocab_size": corpus.vocab_size}
    genotype = make_genotype(space.name, arch, space_args=config.space_args, model_args=model_args, dataset="ptb")
    result = {
        "kind": "train", "space": space.name, "arch": str(arch), "dataset": "ptb", "data": config.data,
        "seed": config.seed, "device": str(device), "valid_perplexity": done.valid_perplexity,
        "test_perplexity": done.test_perplexity, "params": done.params, "epochs": done.epochs,
        "train_time_s": done.time_s, "replicas": _replica_count(), "failed": done.failed, "error": done.error,
        "history": done.history,
        "config": {"train": to_dict(settings), "model": dict(config.model_args), "space": dict(config.space_args)},
        "genotype": genotype,
    }
    return result, done.model, genotype


def provenance() -> dict[str, Any]:
    """Versions, time and torch's thread count of a result, for whoever reads it later."""
    from . import __version__

    return {"nasforge_version": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- files
def write_final(out: str | Path, model: nn.Module, genotype: dict[str, Any], result: dict[str, Any]) -> None:
    """``model.npz``, ``genotype.json`` and, last, ``result.json`` of a final training, each written atomically."""
    out = Path(out)
    save_weights(model.state_dict(), out / WEIGHTS_FILE)
    _write_atomic(out / GENOTYPE_FILE, (json.dumps(genotype, indent=2) + "\n").encode())
    _write_atomic(out / RESULT_FILE, (json.dumps(result, indent=2, default=float) + "\n").encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_weights(state: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """A state dict as a ``.npz`` (a zip of ``.npy`` arrays, no pickle), written atomically.

    bfloat16 tensors, which numpy has no type for, are stored as float32 (loading casts them back).
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for name, tensor in state.items():
            value = tensor.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, value.numpy(), allow_pickle=False)
    os.replace(tmp, path)
    return path


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict written by :func:`save_weights`; nothing in the file is executed (no pickle)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except FileNotFoundError:
        raise DataError(f"{path}: weights file not found") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a nasforge weights file (.npz): {exc}") from None
    if not all(name.endswith(".npy") for name in names):
        raise DataError(f"{path}: not a nasforge weights file (.npz of arrays); weights saved by torch.save "
                        "are not read, since loading a pickle can run code")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: torch.from_numpy(np.array(arrays[name])) for name in arrays.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable weights ({exc})") from None
