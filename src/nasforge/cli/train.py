"""``nasforge train``: train one architecture to the end and keep its result, genotype and weights."""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from ..config import build as build_config
from ..config import parse_scalar, to_dict
from ..errors import ConfigError, RunDirError
from ..registry import SPACES
from ._common import ProgressDisplay, add_threads_flag, console_for, thread_tuner

#: ``--set`` sections: training loop, data split, model size, search-space config
SECTIONS = ("train", "data", "model", "space")


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    """``train.lr=0.05`` -> ``{"train": {"lr": 0.05}}`` (values typed later by the config dataclasses)."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {', '.join(SECTIONS)}")
        if section not in out:
            raise ConfigError(f"--set {item!r}: {section!r} is not one of {', '.join(SECTIONS)}")
        out[section][name] = parse_scalar(raw)
    return out


def _prepare_out(out: Path) -> None:
    if (out / "result.json").exists():
        raise RunDirError(f"{out}: already holds a result.json; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"{out}: cannot create the output directory ({exc.strerror})") from None


def _arch_source(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """Space name, architecture string and space config, from the flags or a run directory (``--from``)."""
    if args.from_run:
        from ..export import run_genotype

        genotype = run_genotype(args.from_run)
        return args.space or genotype["space"], args.arch or genotype["arch"], genotype.get("space_args", {})
    if not args.space or not args.arch:
        raise ConfigError("--space and --arch are required (or --from RUN_DIR)")
    return args.space, args.arch, {}


def _percent(x: float) -> float | None:
    return None if math.isnan(x) else 100.0 * x


def _train_progress(console: Console, args: argparse.Namespace, description: str,
                    total: int | None = None) -> ProgressDisplay:
    # the status shows the epoch already: the loop's epoch records only stay out of the log
    return ProgressDisplay(console, description, total, quiet=getattr(args, "quiet", False), trials=False,
                           epochs=False, tick=thread_tuner(args))


def _result(args: argparse.Namespace, space: Any, arch: Any, done: Any, configs: dict[str, Any],
            genotype: dict[str, Any], device: Any) -> dict[str, Any]:
    """The content of ``result.json`` of a final training."""
    outcome, trained = done.outcome, done.outcome.train
    return {
        "kind": "train",
        "space": space.name,
        "arch": str(arch),
        "dataset": genotype["dataset"],
        "data": args.data,
        "seed": args.seed,
        "device": str(device),
        "test_accuracy": _percent(outcome.test_accuracy),
        "val_accuracy": _percent(outcome.val_accuracy),
        "train_accuracy": _percent(trained.train_accuracy),
        "train_loss": trained.train_loss,
        "params": done.params,
        "flops": done.flops,
        "epochs": trained.epochs,
        "train_time_s": trained.time_s,
        "failed": trained.failed,
        "error": trained.error,
        "history": trained.history,
        "config": configs,
        "genotype": genotype,
        **_provenance(),
    }


def _provenance() -> dict[str, Any]:
    import torch

    from .. import __version__

    return {"nasforge_version": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "threads": torch.get_num_threads()}


def _write_outputs(out: Path, model: Any, genotype: dict[str, Any], result: dict[str, Any]) -> None:
    """``model.pt`` (state dict), ``genotype.json`` and ``result.json`` of a final training."""
    import torch

    from ..export import WEIGHTS_FILE, write_genotype

    torch.save(model.cpu().state_dict(), out / WEIGHTS_FILE)
    write_genotype(genotype, out / "genotype.json")
    (out / "result.json").write_text(json.dumps(result, indent=2, default=float) + "\n")


def run(args: argparse.Namespace) -> int:
    from ..api import create_space
    from ..export import make_genotype
    from ..train.data import DataConfig, default_cache_dir, load_dataset, make_splits
    from ..train.loop import TrainConfig, resolve_device, train_architecture

    console = console_for(args)
    sets = parse_sets(args.overrides)
    if args.epochs is not None:
        sets["train"]["epochs"] = args.epochs
    space_name, arch_text, space_args = _arch_source(args)
    space_args = {**space_args, **sets["space"]}
    space = create_space(space_name, **space_args)
    arch = space.parse(arch_text)
    device = resolve_device(args.device)
    out = Path(args.out)
    if SPACES.get(space.name).capabilities.get("language_model"):
        return _run_language_model(args, space, arch, space_args, sets, device, out, console)
    # Final training uses every training image unless a validation split is asked for.
    sets["data"].setdefault("val_size", 0)
    train_cfg = build_config(TrainConfig, sets["train"], "train")
    data_cfg = build_config(DataConfig, sets["data"], "data")
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    data = load_dataset(args.dataset or "digits", args.data, cache)
    splits = make_splits(data, data_cfg)
    _prepare_out(out)

    with _train_progress(console, args, f"training on {data.name}") as bar:

        def show(p: Any) -> None:
            bar.update(total=p.epochs * p.steps, completed=(p.epoch - 1) * p.steps + p.step,
                       status=f"epoch {p.epoch}/{p.epochs} loss {p.loss:.3f} acc {p.accuracy:.3f} lr {p.lr:.4f}")

        done = train_architecture(space, arch, splits, train_cfg, model_args=sets["model"], seed=args.seed,
                                  device=device, callback=show)

    genotype = make_genotype(space.name, arch, space_args=space_args, model_args=sets["model"],
                             input_shape=splits.shape, num_classes=splits.num_classes, dataset=data.name)
    configs = {"train": to_dict(train_cfg), "data": to_dict(data_cfg), "model": sets["model"], "space": space_args}
    result = _result(args, space, arch, done, configs, genotype, device)
    _write_outputs(out, done.model, genotype, result)
    if result["failed"]:
        console.print(f"[red]training failed:[/red] {result['error']}; details in {out / 'result.json'}")
        return 1
    console.print(f"test accuracy {result['test_accuracy']:.2f}%  params {done.params:,}  flops {done.flops:,}  "
                  f"{result['epochs']} epochs in {result['train_time_s']:.1f} s; results in {out}", highlight=False)
    return 0


def _run_language_model(args: argparse.Namespace, space: Any, arch: Any, space_args: dict[str, Any],
                        sets: dict[str, dict[str, Any]], device: Any, out: Path, console: Console) -> int:
    """Final training of a recurrent cell as a language model (``train.*`` are :class:`LMTrainConfig` fields)."""
    from ..export import make_genotype
    from ..train.lm import LMTrainConfig, train_language_model
    from ..train.text import load_corpus

    if args.dataset not in (None, "ptb"):
        raise ConfigError(f"--dataset: {space.name} cells are language models trained on ptb, not {args.dataset!r}")
    if not args.data:
        raise ConfigError("--data: a folder or .zip holding ptb.train.txt, ptb.valid.txt and ptb.test.txt is required")
    if sets["data"]:
        raise ConfigError("--set data.*: language models read the whole corpus; there is no data section")
    config = build_config(LMTrainConfig, sets["train"], "train")
    corpus = load_corpus(args.data)
    _prepare_out(out)
    with _train_progress(console, args, "training on ptb", config.epochs) as bar:

        def show(r: dict[str, float]) -> None:
            bar.update(completed=int(r["epoch"]), status=f"loss {r['train_loss']:.3f} "
                       f"valid ppl {r['valid_perplexity']:.1f} lr {r['lr']:g}")

        done = train_language_model(space, arch, corpus, config, model_args=sets["model"], seed=args.seed,
                                    device=device, callback=show)
    model_args = {**sets["model"], "vocab_size": corpus.vocab_size}
    genotype = make_genotype(space.name, arch, space_args=space_args, model_args=model_args, dataset="ptb")
    result = {
        "kind": "train", "space": space.name, "arch": str(arch), "dataset": "ptb", "data": args.data,
        "seed": args.seed, "device": str(device), "valid_perplexity": done.valid_perplexity,
        "test_perplexity": done.test_perplexity, "params": done.params, "epochs": done.epochs,
        "train_time_s": done.time_s, "failed": done.failed, "error": done.error, "history": done.history,
        "config": {"train": to_dict(config), "model": sets["model"], "space": space_args}, "genotype": genotype,
        **_provenance(),
    }
    _write_outputs(out, done.model, genotype, result)
    if done.failed:
        console.print(f"[red]training failed:[/red] {done.error}; details in {out / 'result.json'}")
        return 1
    console.print(f"valid perplexity {done.valid_perplexity:.2f}  test perplexity {done.test_perplexity:.2f}  "
                  f"params {done.params:,}  {done.epochs} epochs in {done.time_s:.1f} s; results in {out}",
                  highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one architecture to the end (final training)")
    p.add_argument("--space", help="search space of the architecture")
    p.add_argument("--arch", help="architecture string in that space")
    p.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                   help="take the space and architecture from a run (a search's best)")
    p.add_argument("--dataset", help="digits (built in, the default for image cells), cifar10 (needs --data); "
                   "ptb for recurrent cells (needs --data)")
    p.add_argument("--data", metavar="PATH", help="data files: cifar-10-batches-py/, an image folder or a .tar.gz")
    p.add_argument("--epochs", type=int, help="training epochs (same as --set train.epochs=E)")
    p.add_argument("--seed", type=int, default=0, help="seeds weight initialisation, batch order, augmentation")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    p.add_argument("--cache-dir", metavar="DIR", help="decoded-data cache (default $NASFORGE_CACHE or ~/.cache/nasforge)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory: result.json, model.pt, genotype.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="train.lr=0.05, train.cutout=16, data.val_size=0.1, model.C=16 ... (repeatable)")
    add_threads_flag(p)
    p.set_defaults(func=run)
