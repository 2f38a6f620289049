"""``nasforge export``: a run's architecture as a genotype file, a TorchScript module or an ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ._common import check_output_file
from ._examples import with_examples


def run(args: argparse.Namespace) -> int:
    from ..export import EXPORT_FILES, export_run

    if args.out:
        check_output_file(args.out)
    elif Path(args.run_dir).is_dir():  # the default file in the run: a read-only copy needs --out
        check_output_file(Path(args.run_dir) / EXPORT_FILES[args.format])
    path = export_run(args.run_dir, args.format, args.out)
    Console(stderr=True).print(f"wrote {path}", highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..export import FORMATS

    p = sub.add_parser("export", help="export a run's architecture (genotype json, torchscript, onnx)", **with_examples("export"))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search run (its best architecture) or a `nasforge train` run")
    p.add_argument("--format", choices=FORMATS, default="json",
                   help="json: genotype for nasforge.build; torchscript/onnx: a model loadable without nasforge")
    p.add_argument("--out", metavar="PATH", help="output file (default: genotype.json / model.torchscript.pt / "
                   "model.onnx in RUN_DIR)")
    p.set_defaults(func=run)
