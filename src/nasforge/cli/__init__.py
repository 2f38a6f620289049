"""The ``nasforge`` command line.

Each module of this package that defines ``register(subparsers)`` adds one or more subcommands;
a subcommand's handler is set with ``parser.set_defaults(func=handler)`` and receives the parsed
arguments. Errors of bad input (:class:`~nasforge.errors.NasforgeError`) end with one line on
stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
from typing import Any, Sequence

from ..errors import NasforgeError


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time, so that log lines go above a live progress bar
    (which redirects stderr while it is shown) instead of through it."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="nasforge", description="Neural architecture search.")
    parser.add_argument("--version", action="version", version=f"nasforge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:  # the subcommands' modules import for a moment: Ctrl-C then ends the command as later on
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        _report("nasforge: interrupted")
        return 130
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO, handlers=[handler]
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if int(os.environ.get("RANK", "0")) > 0:  # a data-parallel replica other than the first: rank 0 reports
        logging.getLogger().setLevel(logging.WARNING)
    previous = _stop_on_sigterm()
    try:
        nproc = getattr(args, "nproc", 1) or 1
        if nproc != 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            from ._launch import launch

            return launch(list(argv) if argv is not None else sys.argv[1:], nproc, getattr(args, "threads", None))
        if getattr(args, "choose_threads", False):  # commands that train: before torch does any work
            from ._common import apply_threads

            apply_threads(args)
        return int(args.func(args) or 0)
    except NasforgeError as exc:
        if args.debug:
            raise
        _report(f"nasforge: error: {exc}")
        return 2
    except KeyboardInterrupt:
        _report(f"nasforge: interrupted{_resume_hint(args)}")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _report(line: str) -> None:
    """Tell the user why the command ended: on stderr, or, in a replica that ``--nproc`` started, to the launcher,
    which says it once for all replicas (:data:`~nasforge.cli._launch.REPORT_FILE`)."""
    from ._launch import REPORT_FILE

    path = os.environ.get(REPORT_FILE)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    else:
        print(line, file=sys.stderr)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """Handle SIGTERM as Ctrl-C (a search stops cleanly and says how to resume); returns the previous handler."""
    try:
        return signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        return None


def _resume_hint(args: argparse.Namespace) -> str:
    """How to continue what was interrupted."""
    where = getattr(args, "resume", None) or getattr(args, "out", None)
    if args.command in ("search", "bench") and where:
        return f"; {where} keeps everything recorded: continue with `nasforge {args.command} --resume {where}`"
    return ""
