"""``nasforge demo``: the main job on the embedded default, as ``make demo`` runs it.

A real architecture search with real training on scikit-learn's handwritten digits (shipped with the
package, no download): NAS-Bench-201 cells trained for a few epochs each, proposed by a seed-paper
strategy, then the best cell trained again from scratch at full size and scored on the held-out test set.
It fits in about five minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..errors import RunDirError
from ._common import add_threads_flag, console_for

#: written into the output directory the demo creates: only such a directory is ever cleared
MARKER = ".nasforge-demo"
PARTS = ("search", "final")


def _made_by_demo(out: Path) -> bool:
    """Whether ``out`` holds only what a demo wrote: its marker, or (demos from before the marker) nothing but its
    two runs, the search's ``meta.json`` naming the ``demo`` command."""
    if (out / MARKER).exists():
        return True
    if not {p.name for p in out.iterdir()} <= set(PARTS):
        return False
    try:
        command = json.loads((out / "search" / "meta.json").read_text())["command"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return "demo" in str(command).split()[1:4]


def _prepare(out: Path, keep: bool) -> None:
    """Create ``out``, or clear the runs of an earlier demo in it (never anything the demo did not write)."""
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a directory; choose another --out")
    if out.exists() and any(out.iterdir()):
        if not _made_by_demo(out):
            raise RunDirError(f"{out}: exists and was not made by `nasforge demo`; choose another --out "
                              "(nothing was deleted)")
        if not keep:  # the demo starts afresh each time; real runs resume instead
            for name in PARTS:
                shutil.rmtree(out / name, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("made by `nasforge demo`, which clears its search/ and final/ when run again\n")
    except OSError as exc:
        raise RunDirError(f"{out}: cannot create the output directory ({exc.strerror})") from None


def run(args: argparse.Namespace) -> int:
    from . import build_parser

    console = console_for(args)
    out = Path(args.out)
    _prepare(out, args.keep)
    search_dir, final_dir = out / "search", out / "final"
    # the top-level flags and the thread count reach the two commands the demo runs
    top = ["-q"] * bool(getattr(args, "quiet", False)) + ["--debug"] * bool(getattr(args, "debug", False))
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    console.print(f"[bold]1/2[/bold] searching NAS-Bench-201 cells on digits with {args.strategy}: "
                  f"{args.budget} networks, each trained {args.epochs} epochs")
    parser = build_parser()
    search = parser.parse_args([
        *top, "search", *threads, "--space", "nb201", "--evaluator", "train", "--dataset", "digits",
        "--strategy", args.strategy, "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(search_dir),
        "--set", f"evaluator.epochs={args.epochs}", "--set", "evaluator.model_args={C: 8, N: 1}",
    ])
    search.thread_choice = getattr(args, "thread_choice", None)  # chosen at the start
    code = search.func(search)
    if code:
        return code
    console.print(f"[bold]2/2[/bold] training the best cell from scratch (C=16, N=3, {args.final_epochs} epochs)")
    if (final_dir / "result.json").exists():
        shutil.rmtree(final_dir)
    final = parser.parse_args([
        *top, "train", "--from", str(search_dir), "--dataset", "digits", "--epochs", str(args.final_epochs),
        "--seed", str(args.seed), "--out", str(final_dir), "--set", "model.C=16", "--set", "model.N=3",
    ])
    final.thread_choice = search.thread_choice
    code = final.func(final)
    if code:
        return code
    found = json.loads((search_dir / "result.json").read_text())["best"]
    trained = json.loads((final_dir / "result.json").read_text())
    console.print(f"\n[bold]best architecture[/bold]: {found['arch']}", soft_wrap=True, highlight=False)
    console.print(f"  search: validation accuracy {found['reward']:.2f}% after {args.epochs} proxy epochs")
    console.print(f"  retrained: test accuracy {trained['test_accuracy']:.2f}% "
                  f"({trained['params']:,} parameters, {trained['epochs']} epochs)", highlight=False)
    console.print(f"  files: {search_dir} (search record), {final_dir} (result.json, model.pt, genotype.json); "
                  f"export with: nasforge export {final_dir} --format onnx", soft_wrap=True, highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the embedded default (what `make demo` runs)")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--strategy", default="lanas", help="search strategy")
    p.add_argument("--budget", type=int, default=100, help="networks trained during the search")
    p.add_argument("--epochs", type=int, default=4, help="proxy training epochs per network")
    p.add_argument("--final-epochs", type=int, default=30, help="epochs of the final training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="continue an existing demo run instead of starting afresh")
    add_threads_flag(p)
    p.set_defaults(func=run)
