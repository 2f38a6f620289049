"""``nasforge policy RUN_DIR``: plot a run's policy snapshots and sampling histograms (EDNAS Figs. 4-5)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import check_output_dir


def run(args: argparse.Namespace) -> int:
    from ..report.policy import policy_report

    if args.out:
        check_output_dir(args.out)
    elif Path(args.run_dir).is_dir():  # the default folder in the run: a read-only copy needs --out
        check_output_dir(Path(args.run_dir) / "policy")
    for path in policy_report(args.run_dir, args.out):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policy", help="plot the policy of a run (heatmaps) and how often options were sampled")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a finished or running search")
    p.add_argument("--out", metavar="DIR", help="where to write the PNG files (default: RUN_DIR/policy)")
    p.set_defaults(func=run)
