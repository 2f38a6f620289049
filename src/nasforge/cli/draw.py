"""``nasforge draw``: an architecture's cell or network diagram as SVG and PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ._common import check_output_file


def _space_args(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set ops=enas")
        key = key.strip()
        out[key.removeprefix("space.")] = yaml.safe_load(value)  # as search writes it: space.ops=enas
    return out


def run(args: argparse.Namespace) -> int:
    from .. import api
    from ..report.draw import draw
    from ..report.search import run_best

    out = Path(args.out)
    stem = out.with_suffix("") if out.suffix.lower() in (".svg", ".png") else out
    for suffix in (".svg", ".png"):  # the two files report.draw writes
        check_output_file(stem.with_name(stem.name + suffix))
    if args.from_run:
        if args.space or args.overrides:
            raise ConfigError("--from takes the run's own space; drop --space/--set")
        config = api.read_run_config(args.from_run)
        space = api.create_space(config.space, **config.space_args)
        arch = space.parse(args.arch) if args.arch else run_best(args.from_run, space)
    else:
        if not args.space or not args.arch:
            raise ConfigError("give --space and --arch (or --from RUN_DIR for a run's best architecture)")
        space = api.create_space(args.space, **_space_args(args.overrides))
        arch = space.parse(args.arch)
    for path in draw(space.graph(arch), args.out, args.backend):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "draw", help="draw an architecture (cells as DAGs, macro networks as layer chains) to SVG and PNG",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  nasforge draw --space nb201 --arch '|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+"
               "|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|' --out cell\n"
               "  nasforge draw --from runs/x --out best        # the run's best (or derived) architecture\n"
               "  nasforge draw --space darts --set ops=enas --arch 'Genotype(...)' --out darts")
    p.add_argument("--space", help="search space (nasforge list spaces)")
    p.add_argument("--arch", help="the architecture's string form (default with --from: the run's best)")
    p.add_argument("--from", dest="from_run", metavar="RUN_DIR", help="a run directory: its space and best architecture")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting of the space, e.g. ops=enas (or space.ops=enas, as search takes it) (repeatable)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="output name: FILE.svg and FILE.png are written (a .svg/.png suffix is dropped)")
    p.add_argument("--backend", default="auto", choices=("auto", "graphviz", "matplotlib"),
                   help="renderer (default: Graphviz where installed, else matplotlib)")
    p.set_defaults(func=run)
