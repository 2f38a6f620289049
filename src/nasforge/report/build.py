"""``nasforge report``: one self-contained HTML page per search or bench directory, or several side by side."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

from ..errors import RunDirError
from .bench import bench_sections, is_bench_dir
from .html import esc, page
from .search import is_search_dir, search_report, search_sections

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"


def _kind(path: Path) -> str:
    if not path.is_dir():
        raise RunDirError(f"{path}: no such directory (give a run directory of `nasforge search` or `nasforge bench`)")
    if is_bench_dir(path):
        return "bench"
    if is_search_dir(path):
        return "search"
    raise RunDirError(f"{path}: neither a search run directory (config.yaml, run.db) nor a bench directory (bench.json)")


def report_html(path: str | Path, live_seconds: int | None = None, cache: dict[Any, Any] | None = None) -> str:
    """The page of one search or bench directory (``cache``: see :func:`~nasforge.report.search.load_search`)."""
    path = Path(path)
    if _kind(path) == "search":
        return search_report(path, live_seconds, cache)
    subtitle, body = bench_sections(path)
    return page(f"nasforge bench: {path.name}", f"{subtitle}; report written {time.strftime('%Y-%m-%d %H:%M:%S')}",
                body)


def combined_html(paths: Sequence[str | Path]) -> str:
    """Several search or bench directories on one page, side by side."""
    columns = []
    for p in map(Path, paths):
        if _kind(p) == "search":
            subtitle, body = search_sections(p)
        else:
            subtitle, body = bench_sections(p)
        columns.append(f"<div class='column'><h2>{esc(p.name)}</h2><p class='note'>{esc(subtitle)}</p>{body}</div>")
    names = ", ".join(Path(p).name for p in paths)
    return page(f"nasforge report: {names}", f"{len(columns)} directories side by side; written "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}", "<div class='row'>" + "".join(columns) + "</div>")


def write_atomic(path: Path, text: str) -> None:
    """Write so that a browser reloading the page never reads half of it."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(paths: Sequence[str | Path], out: str | Path | None = None,
                  live_seconds: int | None = None, cache: dict[Any, Any] | None = None) -> list[Path]:
    """Write the report(s): one directory to ``out`` (default ``DIR/report.html``); several to one page side by side
    with ``out``, else each to its own ``DIR/report.html``."""
    if not paths:
        raise RunDirError("name at least one run or bench directory")
    for p in paths:
        _kind(Path(p))  # every directory checked before anything is written
    targets: list[tuple[Path, Any]] = []
    if len(paths) > 1 and out is not None:
        targets.append((Path(out), lambda: combined_html(paths)))
    else:
        for p in paths:
            target = Path(out) if out is not None else Path(p) / REPORT_FILE
            targets.append((target, lambda p=p: report_html(p, live_seconds, cache)))
    written = []
    for target, make in targets:
        if not target.parent.exists():
            raise RunDirError(f"--out {target}: directory {target.parent} does not exist")
        try:
            write_atomic(target, make())
        except PermissionError:
            raise RunDirError(f"{target}: cannot write (read-only?); choose a file with --out") from None
        written.append(target)
    return written
