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

from rich.console import Console


def run(args: argparse.Namespace) -> int:
    from . import build_parser

    console = Console(stderr=True)
    out = Path(args.out)
    if out.exists() and not args.keep:
        shutil.rmtree(out)  # the demo starts afresh each time; real runs resume instead
    search_dir, final_dir = out / "search", out / "final"
    console.print(f"[bold]1/2[/bold] searching NAS-Bench-201 cells on digits with {args.strategy}: "
                  f"{args.budget} networks, each trained {args.epochs} epochs")
    parser = build_parser()
    search = parser.parse_args([
        "search", "--space", "nb201", "--evaluator", "train", "--dataset", "digits", "--strategy", args.strategy,
        "--budget", str(args.budget), "--seed", str(args.seed), "--out", str(search_dir),
        "--set", f"evaluator.epochs={args.epochs}", "--set", "evaluator.model_args={C: 8, N: 1}",
    ])
    code = search.func(search)
    if code:
        return code
    console.print(f"[bold]2/2[/bold] training the best cell from scratch (C=16, N=3, {args.final_epochs} epochs)")
    if (final_dir / "result.json").exists():
        shutil.rmtree(final_dir)
    from ..final import prepare_final
    from .train import train_with_progress

    job = prepare_final(from_run=search_dir, dataset="digits", seed=args.seed,
                        overrides=[f"train.epochs={args.final_epochs}", "model.C=16", "model.N=3"])
    code = train_with_progress(job, final_dir, console, quiet=getattr(args, "quiet", False))
    if code:
        return code
    found = json.loads((search_dir / "result.json").read_text())["best"]
    trained = json.loads((final_dir / "result.json").read_text())
    console.print(f"\n[bold]best architecture[/bold]: {found['arch']}", soft_wrap=True, highlight=False)
    console.print(f"  search: validation accuracy {found['reward']:.2f}% after {args.epochs} proxy epochs")
    console.print(f"  retrained: test accuracy {trained['test_accuracy']:.2f}% "
                  f"({trained['params']:,} parameters, {trained['epochs']} epochs)", highlight=False)
    console.print(f"  files: {search_dir} (search record), {final_dir} (result.json, model.npz, genotype.json); "
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
    p.set_defaults(func=run)
