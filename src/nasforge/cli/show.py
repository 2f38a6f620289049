"""``nasforge show strategy re``: one registered component: what it is, its capabilities and every setting with
its default and one line of help, as ``--set`` takes it."""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from rich.console import Console
from rich.table import Table

KINDS = ("space", "strategy", "evaluator", "executor")

EPILOG = """examples:
  nasforge show strategy re            settings of regularized evolution (--set strategy.KEY=VALUE)
  nasforge show space darts            the DARTS cell space: settings and the model arguments of its networks
  nasforge show evaluator train        the training evaluator (--set evaluator.KEY=VALUE)
  nasforge list strategies --settings  every strategy with its settings
"""


def registry(kind: str) -> Any:
    """The registry of a component kind."""
    import nasforge  # noqa: F401  (registers built-ins)

    from ..registry import EVALUATORS, SPACES, STRATEGIES
    from ..run.executors import EXECUTORS

    return {"space": SPACES, "strategy": STRATEGIES, "evaluator": EVALUATORS, "executor": EXECUTORS}[kind]


def config_classes(factory: Any) -> list[tuple[str, type]]:
    """The dataclasses that configure a component: its ``Config`` and, for spaces, the model arguments of the
    networks it builds (``SearchSpace.model_args``), each with the prefix ``--set`` uses."""
    from ..spaces.base import SearchSpace

    out: list[tuple[str, type]] = []
    config = getattr(factory, "Config", None)
    if isinstance(config, type):
        out.append(("", config))
    if isinstance(factory, type) and issubclass(factory, SearchSpace) and factory.model_args is not None:
        out.append(("model_args", factory.model_args))
    return out


def settings_table(kind: str, factory: Any, title: str | None = None) -> Table | None:
    """A table of a component's settings (``--set kind.name=value``), or None if it has none."""
    from ..config import field_docs

    rows = []
    for prefix, cls in config_classes(factory):
        for doc in field_docs(cls):
            key = f"{kind}.{doc.name}" if not prefix else f"evaluator.model_args.{doc.name}"
            rows.append((key, doc.type, repr(doc.default), doc.help))
    if not rows:
        return None
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("setting", "type", "default", "what it does"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def describe(kind: str, name: str, console: Console) -> None:
    """Print one component: name, aliases, docstring, capabilities, one-shot defaults and settings."""
    reg = registry(kind)
    entry = reg.get(reg.canonical(name))
    aliases = sorted(a for a, target in getattr(reg, "_aliases", {}).items() if target == entry.name)
    console.print(f"[bold]{kind} {entry.name}[/bold]" + (f" (aliases: {', '.join(aliases)})" if aliases else ""))
    doc = inspect.getdoc(entry.factory) or ""
    if doc:
        console.print(doc, highlight=False)
    caps = {k: v for k, v in entry.capabilities.items() if k != "oneshot"}
    if caps:
        console.print("capabilities: " + ", ".join(f"{k}={v}" for k, v in sorted(caps.items())), highlight=False)
    oneshot = entry.capabilities.get("oneshot")
    if isinstance(oneshot, dict) and oneshot:
        console.print("with weight sharing (--evaluator supernet) the defaults become: "
                      + ", ".join(f"{k}={v}" for k, v in oneshot.items()), highlight=False)
    table = settings_table(kind, entry.factory)
    if table is None:
        console.print("no settings")
    else:
        console.print(table)


def run(args: argparse.Namespace) -> int:
    console = Console(width=max(Console().width, 120))
    describe(args.kind, args.name, console)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="one space, strategy, evaluator or executor: what it does and its settings",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", choices=KINDS, help="kind of component")
    p.add_argument("name", help="its registered name or alias (nasforge list ...)")
    p.set_defaults(func=run)
