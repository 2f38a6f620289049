"""``nasforge report``: a self-contained HTML page of search and bench directories."""

from __future__ import annotations

import argparse

from ._common import check_output_file


def run(args: argparse.Namespace) -> int:
    from ..report.build import write_reports

    if args.out:
        check_output_file(args.out)
    for path in write_reports(args.run_dirs, args.out):
        print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write an HTML report (plots, diagrams, tables) of search or bench directories",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One self-contained HTML file per directory (no server, no network: open it from disk). "
                    "A search: what was found with its diagram, the incumbent over evaluations and cost, every "
                    "evaluation, the top 10 with diagrams, parameters and FLOPs, failures, the strategy's own views "
                    "and the configuration. A bench: curves with quartile bands, the table at each budget, samples "
                    "to the optimum, overhead.",
        epilog="examples:\n"
               "  nasforge report runs/x                     # writes runs/x/report.html\n"
               "  nasforge report runs/x --out x.html\n"
               "  nasforge report bench/a bench/b --out ab.html   # side by side on one page\n"
               "  nasforge search ... --report               # a page that refreshes while the search runs")
    p.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories of `nasforge search` or `nasforge bench`")
    p.add_argument("--out", metavar="FILE",
                   help="the HTML file (default DIR/report.html; with several DIRs: one page with them side by side)")
    p.set_defaults(func=run)
