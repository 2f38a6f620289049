"""``nasforge list spaces|strategies|evaluators|executors``: what is registered, with capabilities."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table


def _registries() -> dict:
    from ..registry import EVALUATORS, SPACES, STRATEGIES
    from ..run.executors import EXECUTORS

    return {"spaces": SPACES, "strategies": STRATEGIES, "evaluators": EVALUATORS, "executors": EXECUTORS}


def run(args: argparse.Namespace) -> int:
    import nasforge  # noqa: F401  (registers built-ins)

    registry = _registries()[args.what]
    console = Console(width=max(Console().width, 120))
    if args.settings:
        from .show import settings_table

        kind = {"spaces": "space", "strategies": "strategy", "evaluators": "evaluator", "executors": "executor"}
        for entry in registry:
            table = settings_table(kind[args.what], entry.factory, title=f"{entry.name}: {entry.summary}")
            if table is None:
                console.print(f"[bold]{entry.name}[/bold]: {entry.summary} (no settings)", highlight=False)
            else:
                console.print(table)
        return 0
    table = Table(title=f"nasforge {args.what}")
    table.add_column("name", style="bold")
    table.add_column("capabilities")
    table.add_column("description")
    for entry in registry:
        caps = ", ".join(f"{k}={v}" for k, v in sorted(entry.capabilities.items()))
        table.add_row(entry.name, caps, entry.summary)
    console.print(table)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered spaces, strategies, evaluators or executors",
                       epilog="examples:\n  nasforge list strategies\n  nasforge list strategies --settings\n"
                              "  nasforge show strategy re   (one component in full)",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=sorted(_registries()))
    p.add_argument("--settings", action="store_true",
                   help="every setting of each, with its default and what it does (--set KIND.KEY=VALUE)")
    p.set_defaults(func=run)
