"""Genotype files and model export: a found architecture as a file others can rebuild or load.

A genotype file (``genotype.json``) holds everything needed to rebuild the network without the
search's state: the space and its config, the architecture string, the model arguments, and the
input the network expects. :func:`build` recreates the model from it (or from a space name and an
architecture string); :func:`export_run` writes a run's architecture as a genotype, a TorchScript
module or an ONNX model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .arch import Architecture
from .errors import ConfigError, NasforgeError, RunDirError

log = logging.getLogger(__name__)

GENOTYPE_FORMAT = "nasforge-genotype"
GENOTYPE_FILE = "genotype.json"
WEIGHTS_FILE = "model.npz"  # arrays, no pickle: see nasforge.final.save_weights
FORMATS = ("json", "torchscript", "onnx")
EXPORT_FILES = {"json": GENOTYPE_FILE, "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}
#: when a run does not say what data its networks see (a table lookup), the CIFAR-10 input is assumed
DEFAULT_INPUT = (3, 32, 32)
DEFAULT_CLASSES = 10


def make_genotype(
    space: str,
    arch: Architecture | str,
    *,
    space_args: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT,
    num_classes: int = DEFAULT_CLASSES,
    dataset: str | None = None,
    normalisation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-ready genotype of ``arch``; ``normalisation`` (:meth:`~nasforge.train.splits.Normalise.describe`)
    says how raw pixels become the network's input, so that a deployed model can be fed."""
    from . import __version__

    return {
        "format": GENOTYPE_FORMAT,
        "space": space,
        "space_args": dict(space_args or {}),
        "arch": str(arch),
        "model_args": dict(model_args or {}),
        "num_classes": int(num_classes),
        "input_shape": [int(s) for s in input_shape],
        "dataset": dataset,
        "normalisation": normalisation,
        "nasforge_version": __version__,
    }


def read_genotype(path: str | Path) -> dict[str, Any]:
    """A genotype file, checked for the fields :func:`build` needs."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NasforgeError(f"{path}: genotype file not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise NasforgeError(f"{path}: not a genotype file ({exc})") from None
    missing = [k for k in ("space", "arch") if not isinstance(data, dict) or k not in data]
    if missing:
        raise NasforgeError(f"{path}: not a genotype file (missing {', '.join(missing)})")
    return data


def write_genotype(genotype: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(genotype, indent=2) + "\n")
    return path


def build_from_genotype(genotype: dict[str, Any], seed: int | None = None, **overrides: Any) -> nn.Module:
    """The model a genotype describes (``overrides`` replace its model arguments)."""
    from .factory import create_space
    from .train.loop import build_model

    space = create_space(genotype["space"], **genotype.get("space_args", {}))
    arch = space.parse(genotype["arch"])
    args = {**genotype.get("model_args", {}), **overrides}
    shape = genotype.get("input_shape", DEFAULT_INPUT)
    num_classes = args.pop("num_classes", genotype.get("num_classes", DEFAULT_CLASSES))
    in_channels = args.pop("in_channels", shape[0])
    return build_model(space, arch, num_classes=num_classes, in_channels=in_channels, seed=seed, **args)


def build(
    space: str | Path, arch: str | Architecture | None = None, *, weights: str | Path | None = None,
    **model_args: Any,
) -> nn.Module:
    """Recreate a model: ``build("genotype.json")`` or ``build("darts", "<arch string>", C=16, layers=8)``.

    ``num_classes`` (10) and ``in_channels`` (3) may be given among ``model_args``; ``weights`` loads a
    state dict saved by ``nasforge train`` (``model.npz``; read without unpickling anything).
    """
    if arch is None:
        model = build_from_genotype(read_genotype(space), **model_args)
    else:
        genotype = make_genotype(str(space), arch, model_args=model_args)
        model = build_from_genotype(genotype)
    if weights is not None:
        from .final import load_weights

        model.load_state_dict(load_weights(weights))
    return model


# --------------------------------------------------------------------------- run directories
def run_genotype(run_dir: str | Path) -> dict[str, Any]:
    """The genotype of a run: a ``nasforge train`` run's architecture, a one-shot search's derived one
    (:func:`~nasforge.run.rundir.derived_pick`), a search's best one, or an interrupted search's best so far
    (:func:`~nasforge.final.run_pick`), at the size of the search's networks."""
    from .final import run_pick, search_model_args
    from .run.rundir import read_config, read_result

    run_dir = Path(run_dir)
    result = read_result(run_dir)
    if "genotype" in result:
        return result["genotype"]
    best, _ = run_pick(run_dir, result)
    if not best:
        raise RunDirError(f"{run_dir}: the search has no successful evaluation to export")
    from .evaluators.train import DEFAULT_DATASET
    from .registry import EVALUATORS, SPACES
    from .train import dataset_shape, default_cache_dir, load_dataset, make_splits

    config = read_config(run_dir)
    model_args = search_model_args(config)
    trains = config.evaluator in EVALUATORS and EVALUATORS.get(config.evaluator).capabilities.get("trains")
    # Evaluators that train default to digits; a table lookup says nothing of the data (CIFAR-10 assumed).
    dataset = config.dataset or (DEFAULT_DATASET if trains else None)
    shape, classes, normalisation = DEFAULT_INPUT, DEFAULT_CLASSES, None
    if dataset and not SPACES.get(config.space).capabilities.get("language_model"):
        # the search's own split of the data set: its training images give the normalisation
        try:
            data = load_dataset(dataset, config.data, config.cache_dir or default_cache_dir())
        except NasforgeError as exc:  # the data is elsewhere: the shape is still known for fixed data sets
            known = dataset_shape(dataset)
            if known is None:
                raise
            log.warning("%s: no input normalisation in the export (%s)", run_dir, exc)
            shape, classes = known
        else:
            splits = make_splits(data, _data_config(config.evaluator_args))
            shape, classes, normalisation = splits.shape, splits.num_classes, splits.normalise.describe()
    return make_genotype(config.space, best["arch"], space_args=config.space_args, model_args=model_args,
                         input_shape=shape, num_classes=classes, dataset=dataset, normalisation=normalisation)


def _data_config(evaluator_args: dict[str, Any]) -> Any:
    """The :class:`~nasforge.train.splits.DataConfig` fields among an evaluator's settings."""
    from .train.splits import DataConfig

    fields = DataConfig.__dataclass_fields__
    return DataConfig(**{k: v for k, v in evaluator_args.items() if k in fields})


def _load_run_model(run_dir: Path, genotype: dict[str, Any]) -> nn.Module:
    from .final import load_weights

    weights = run_dir / WEIGHTS_FILE
    model = build_from_genotype(genotype, seed=0)
    if weights.exists():
        model.load_state_dict(load_weights(weights))
    elif (run_dir / "model.pt").exists():
        raise RunDirError(f"{run_dir / 'model.pt'}: weights of an older nasforge in torch's pickle format are not read "
                          "(loading a pickle can run code); train again to get model.npz")
    else:
        log.warning("%s has no trained weights (%s): exporting an untrained network of this architecture",
                    run_dir, WEIGHTS_FILE)
    return model.eval()


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    # TorchScript is deprecated in recent torch but still what most tools load; shape checks inside a
    # model become constants when traced, which is right for the fixed input size of an export.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def export_metadata(genotype: dict[str, Any] | None) -> dict[str, str]:
    """What an exported model carries beside its weights: the architecture and how to prepare its input."""
    if not genotype:
        return {}
    meta = {"nasforge.space": str(genotype.get("space")), "nasforge.arch": str(genotype.get("arch")),
            "nasforge.input_shape": json.dumps(genotype.get("input_shape")),
            "nasforge.version": str(genotype.get("nasforge_version"))}
    if genotype.get("normalisation"):
        meta["nasforge.normalisation"] = json.dumps(genotype["normalisation"])
    return meta


def export_torchscript(model: nn.Module, input_shape: tuple[int, ...], path: Path,
                       metadata: dict[str, str] | None = None) -> Path:
    """Trace ``model`` (eval mode) on a zero input of ``input_shape``; loads with ``torch.jit.load`` alone.

    The traced module takes any batch size; channels and image size are fixed to ``input_shape``.
    ``metadata`` is saved as the extra file ``nasforge.json`` (``torch.jit.load(path, _extra_files=...)``).
    """
    example = torch.zeros(1, *input_shape)
    with torch.no_grad(), _quiet_tracing():
        traced = torch.jit.trace(model.eval(), example)
    traced.save(str(path), _extra_files={"nasforge.json": json.dumps(metadata or {})})
    return path


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path,
                metadata: dict[str, str] | None = None) -> Path:
    """ONNX export with a variable batch size; needs the ``onnx`` package. ``metadata`` goes into the model's
    ``metadata_props`` (onnxruntime: ``session.get_modelmeta().custom_metadata_map``)."""
    if importlib.util.find_spec("onnx") is None:
        raise ConfigError("ONNX export needs the onnx package: pip install nasforge[onnx]")
    import onnx

    example = torch.zeros(1, *input_shape)
    with _quiet_tracing(), warnings.catch_warnings():  # the TorchScript-based exporter: no onnxscript needed
        # constant folding warns about every training-only branch it drops; nothing a user can act on
        warnings.filterwarnings("ignore", message=".*[Cc]onstant[- ][Ff]olding.*")
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            model.eval(), (example,), str(path), input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
        )
    if metadata:
        proto = onnx.load(str(path))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(path))
    return path


def export_run(run_dir: str | Path, fmt: str = "json", out: str | Path | None = None) -> Path:
    """Write a run's architecture in ``fmt`` (json, torchscript, onnx) to ``out`` (default: in the run)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory")
    genotype = run_genotype(run_dir)
    path = Path(out) if out is not None else run_dir / EXPORT_FILES[fmt]
    if fmt == "json":
        return write_genotype(genotype, path)
    model = _load_run_model(run_dir, genotype)
    shape = tuple(genotype.get("input_shape", DEFAULT_INPUT))
    exporter = export_torchscript if fmt == "torchscript" else export_onnx
    return exporter(model, shape, path, export_metadata(genotype))
