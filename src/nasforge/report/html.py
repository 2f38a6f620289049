"""Pieces of the self-contained HTML report: figures as inline SVG, tables, sections, the page.

Nothing on the page is fetched: styles are inline, plots and diagrams are inline ``<svg>`` elements and the
few raster figures (the policy heatmaps) are ``data:`` URIs, so the file opens from disk in any browser,
offline. A page of a search still running refreshes itself (``live``).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#24425e;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px} header p{margin:4px 0 0;opacity:.85;font-size:14px}
main{padding:8px 24px 40px}
section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:16px 0;padding:8px 16px 14px}
section h2{font-size:17px;margin:8px 0 10px;color:#24425e}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6} td.num{text-align:right;font-variant-numeric:tabular-nums}
code,pre{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f5f5f5;padding:8px;overflow-x:auto;max-height:320px}
.figure{display:inline-block;margin:4px 8px 4px 0;vertical-align:top;max-width:100%}
.figure svg,.figure img{max-width:100%;height:auto}
.diagram svg{max-width:100%;height:auto}
.small svg{max-width:400px;max-height:220px;height:auto}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.row > .plot{flex:1 1 420px;max-width:620px} .row > .plot svg{width:100%;height:auto}
.column{flex:1 1 420px;min-width:360px}
.note{color:#555;font-size:13px;max-width:920px}
.arch{font-family:SFMono-Regular,Menlo,Consolas,monospace;font-size:11px;word-break:break-all;max-width:420px}
.bad{color:#b2182b} .good{color:#1a7f37}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``-`` for missing and nan, thousands separators for large integers."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1e5 and value == int(value):
            return f"{int(value):,}"
        if abs(value) >= 1e5:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def strip_prolog(svg: str) -> str:
    return svg[svg.index("<svg"):]


def figure_svg(fig: Any, caption: str = "", css: str = "plot") -> str:
    """Close ``fig`` and return it as an inline SVG block."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "nasforge", "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    cap = f"<figcaption class='note'>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure class='figure {css}'>{strip_prolog(buf.getvalue())}{cap}</figure>"


def image_data_uri(path: Path, caption: str = "", css: str = "plot") -> str:
    """A PNG file inlined as a ``data:`` URI image."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cap = f"<figcaption class='note'>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure class='figure {css}'><img alt='{esc(caption or Path(path).stem)}' " \
           f"src='data:image/png;base64,{data}'>{cap}</figure>"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] | None = None,
          raw: Sequence[bool] | None = None) -> str:
    """An HTML table; cells are escaped unless their column is ``raw`` (already HTML)."""
    numeric = numeric or [False] * len(header)
    raw = raw or [False] * len(header)
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if any(header) else ""
    body = []
    for row in rows:
        cells = []
        for value, num, is_raw in zip(row, numeric, raw):
            text = value if is_raw else esc(fmt(value))
            cells.append(f"<td class='num'>{text}</td>" if num else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def section(title: str, body: str, anchor: str = "") -> str:
    ident = f" id='{esc(anchor)}'" if anchor else ""
    return f"<section{ident}><h2>{esc(title)}</h2>{body}</section>"


def note(text: str) -> str:
    return f"<p class='note'>{esc(text)}</p>"


def page(title: str, subtitle: str, body: str, live_seconds: int | None = None) -> str:
    """The whole document. ``live_seconds``: the page reloads itself that often (a search still running)."""
    refresh = f"<meta http-equiv='refresh' content='{int(live_seconds)}'>" if live_seconds else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"{refresh}<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>{body}</main></body></html>\n"
    )
