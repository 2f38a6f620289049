"""``nasforge export-history RUN --csv``: every evaluation of a search as one CSV row, for spreadsheets."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

#: columns first in the file, in this order; every other metric an evaluator recorded follows, sorted
LEADING = ("n", "arch", "reward", "test_accuracy", "incumbent_test_accuracy", "cost", "time_s", "failed", "error")


def history_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """One dict per finished evaluation: result.json's history fields and every metric in the run store."""
    from .. import api

    _, record, store = api.load_record(run_dir)
    try:
        rows = []
        for n, (trial, row) in enumerate(zip(record.trials, record.history()), start=1):
            metrics = {k: v for k, v in trial.outcome.metrics.items() if isinstance(v, (int, float, str, bool))}
            rows.append({"n": n, **metrics, **row})
        return rows
    finally:
        store.close()


def write_csv(rows: list[dict[str, Any]], out: Any) -> None:
    keys = {k for row in rows for k in row}
    columns = [k for k in LEADING if k in keys or k in ("n", "arch")] + sorted(keys - set(LEADING))
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def run(args: argparse.Namespace) -> int:
    from ._common import check_output_file

    path = Path(args.out) if args.out and args.out != "-" else Path(args.run_dir) / "history.csv"
    if args.out != "-" and (args.out or Path(args.run_dir).is_dir()):  # before the run is read
        check_output_file(path)
    rows = history_rows(args.run_dir)
    if args.out == "-":
        write_csv(rows, sys.stdout)
        return 0
    with path.open("w", newline="") as f:
        write_csv(rows, f)
    Console(stderr=True).print(f"wrote {len(rows)} evaluations to {path}", highlight=False)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-history", help="a search's evaluations as CSV (arch, reward, metrics, cost, time)",
                       epilog="examples:\n  nasforge export-history runs/x --csv            writes runs/x/history.csv\n"
                              "  nasforge export-history runs/x --csv --out -     to stdout",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search's run directory (running or finished)")
    p.add_argument("--csv", action="store_true", help="comma-separated values (the only format; the default)")
    p.add_argument("--out", metavar="FILE", help="output file, - for stdout (default: RUN_DIR/history.csv)")
    p.set_defaults(func=run)
