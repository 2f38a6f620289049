"""``nasforge train``: train one architecture to the end and keep its result, genotype and weights.

The training, the result and the files are :mod:`nasforge.final`'s; this module parses the
arguments and shows progress.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from ._common import ProgressDisplay, add_threads_flag, check_output_dir, console_for, thread_tuner
from ._examples import with_examples
from ._launch import add_nproc_flag


def run(args: argparse.Namespace) -> int:
    from ..factory import check_seed
    from ..final import prepare_final
    from ..train.distributed import init_from_env, shutdown
    from ..train.loop import resolve_device

    check_output_dir(args.out)  # before the training, whose result would have nowhere to go
    overrides = list(args.overrides)
    if args.epochs is not None:
        overrides.append(f"train.epochs={args.epochs}")
    job = prepare_final(args.space, args.arch, from_run=args.from_run, overrides=overrides, dataset=args.dataset,
                        data=args.data, seed=args.seed, device=args.device, cache_dir=args.cache_dir)
    check_seed(job.config.seed)  # --seed or --set seed=
    replicas = init_from_env(resolve_device(job.config.device))
    tb = None
    if getattr(args, "tensorboard", False) and (replicas is None or replicas.main):
        from ..report.live import tensorboard_scalars

        tb = tensorboard_scalars(args.out)  # per-epoch loss, accuracy and learning rate
    try:
        if replicas is not None and not replicas.main:  # trains alike; rank 0 writes the files and reports
            job.train(None)
            return 0
        return train_with_progress(job, Path(args.out), console_for(args), quiet=getattr(args, "quiet", False),
                                   tick=thread_tuner(args))
    finally:
        shutdown()
        if tb is not None:
            tb.close()


def train_with_progress(job: Any, out: Path, console: Console, quiet: bool = False,
                        tick: Callable[[], object] | None = None) -> int:
    """Train a :class:`~nasforge.final.FinalJob` into ``out`` with a progress bar and a summary line;
    returns the exit code (1 when the training diverged). Used by ``nasforge train`` and ``nasforge demo``."""
    from ..final import describe_model_args, is_language_model, train_config

    lm = is_language_model(job.space)
    epochs = train_config(job.space, job.config).epochs
    # the status shows the epoch already: the loop's epoch records only stay out of the log
    with ProgressDisplay(console, "training on ptb" if lm else "training", epochs if lm else None, quiet=quiet,
                         trials=False, epochs=False, tick=tick) as bar:

        def show(p: Any) -> None:
            if isinstance(p, dict):  # a language model's epoch record
                bar.update(completed=int(p["epoch"]), status=f"loss {p['train_loss']:.3f} "
                           f"valid ppl {p['valid_perplexity']:.1f} lr {p['lr']:g}")
            else:
                bar.update(total=p.epochs * p.steps, completed=(p.epoch - 1) * p.steps + p.step,
                           status=f"epoch {p.epoch}/{p.epochs} loss {p.loss:.3f} acc {p.accuracy:.3f} "
                                  f"lr {p.lr:.4f}")

        done = job.train(out, callback=show)
    result = done.result
    if result["failed"]:
        console.print(f"[red]training failed:[/red] {result['error']}; details in {out / 'result.json'}")
        return 1
    if lm:
        score = f"valid perplexity {result['valid_perplexity']:.2f}  test perplexity {result['test_perplexity']:.2f}"
    else:
        score = f"test accuracy {result['test_accuracy']:.2f}%  flops {result['flops']:,}"
    size = f"{describe_model_args(job.config.model_args)}: {job.origin.get('model_args', 'set here')}"
    console.print(f"{score}  params {result['params']:,} (model {size})  "
                  f"{result['epochs']} epochs in {result['train_time_s']:.1f} s; results in {out}", highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one architecture to the end (final training)", **with_examples("train"))
    p.add_argument("--space", help="search space of the architecture")
    p.add_argument("--arch", help="architecture string in that space")
    p.add_argument("--from", dest="from_run", metavar="RUN_DIR",
                   help="take the architecture from a run (a search's best so far, a one-shot search's derived "
                        "one), with its data and model size unless set here")
    p.add_argument("--dataset", help="digits (built in, the default for image cells), cifar10 (needs --data); "
                   "ptb for recurrent cells (needs --data)")
    p.add_argument("--data", metavar="PATH", help="data files: cifar-10-batches-py/, an image folder or a .tar.gz")
    p.add_argument("--epochs", type=int, help="training epochs (same as --set train.epochs=E)")
    p.add_argument("--seed", type=int, default=0, help="seeds weight initialisation, batch order, augmentation")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1...")
    p.add_argument("--cache-dir", metavar="DIR", help="decoded-data cache (default $NASFORGE_CACHE or ~/.cache/nasforge)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory: result.json, model.npz, genotype.json")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="train.lr=0.05, train.cutout=16, data.val_size=0.1, model.C=16, "
                        "model_args={C: 16, N: 3} (replaces a run's model size) ... (repeatable)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard scalars to DIR/tensorboard (pip install 'nasforge[tensorboard]')")
    add_threads_flag(p)
    add_nproc_flag(p)
    p.set_defaults(func=run)
