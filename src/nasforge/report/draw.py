"""Draw architectures: the :class:`~nasforge.graph.ArchGraph` of any space as SVG and PNG.

Two renderers read the same plain data:

- Graphviz (the ``graphviz`` Python package, ``pip install 'nasforge[graphviz]'``, and the ``dot`` program
  of the OS packages): cells laid out left to right as in the NASNet and DARTS papers, macro networks top
  to bottom with their skip connections;
- matplotlib, always there: the same drawing from a layered layout of the DAG, so that a plain install draws.

A graph of several parts (a DARTS genotype's normal and reduction cell) is drawn with the parts side by side.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..graph import ArchGraph, GraphPart, layers

log = logging.getLogger(__name__)

BACKENDS = ("auto", "graphviz", "matplotlib")

#: node fill per role, the DARTS figures' colours (inputs green, intermediate nodes blue, output yellow)
FILL = {"input": "#a6dba0", "node": "#9ecae1", "output": "#fee391"}
EDGE_COLOUR = {"op": "#333333", "skip": "#d6604d", "concat": "#999999", "data": "#333333"}


def graphviz_available() -> bool:
    """Whether the Graphviz renderer can run: the Python package and the ``dot`` program."""
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def resolve_backend(backend: str = "auto") -> str:
    """The renderer to use; asking for Graphviz where it is missing is a clear error."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "graphviz" if graphviz_available() else "matplotlib"
    if backend == "graphviz" and not graphviz_available():
        raise ConfigError("--backend graphviz: needs the graphviz Python package (pip install 'nasforge[graphviz]') "
                          "and the dot program (apt-get install graphviz); --backend matplotlib draws without them")
    return backend


# ---------------------------------------------------------------------- Graphviz
def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(part: GraphPart, kind: str, title: str = "") -> str:
    """DOT source of one part (cells left to right, chains top to bottom)."""
    rankdir = "TB" if kind == "chain" else "LR"
    lines = [f"digraph {_quote(part.name)} {{",
             f"  rankdir={rankdir}; bgcolor=white; nodesep=0.25; ranksep=0.45;",
             f"  label={_quote(title or part.name)}; labelloc=t; fontname=Helvetica; fontsize=14;",
             '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=12, penwidth=1.2];',
             "  edge [fontname=Helvetica, fontsize=10, arrowsize=0.7];"]
    for n in part.nodes:
        shape = "box" if n.role != "node" or kind == "chain" else "circle"
        lines.append(f"  {_quote(n.id)} [label={_quote(n.label)}, fillcolor={_quote(FILL[n.role])}, shape={shape}];")
    for e in part.edges:
        attrs = [f"color={_quote(EDGE_COLOUR[e.kind])}"]
        if e.label:
            attrs.append(f"label={_quote(e.label)}")
        if e.kind == "skip":
            attrs += ["style=dashed", "constraint=false"]
        elif e.kind == "concat":
            attrs.append("style=dashed")
        lines.append(f"  {_quote(e.src)} -> {_quote(e.dst)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines)


def _part_title(graph: ArchGraph, part: GraphPart) -> str:
    return f"{part.name} cell" if len(graph.parts) > 1 else (graph.title or part.name)


def _graphviz_pipe(graph: ArchGraph, fmt: str) -> list[bytes]:
    import graphviz

    return [graphviz.Source(to_dot(p, graph.kind, _part_title(graph, p))).pipe(format=fmt) for p in graph.parts]


_SIZE = re.compile(r'<svg[^>]*?width="([\d.]+)pt"[^>]*?height="([\d.]+)pt"', re.S)


def _strip_prolog(svg: str) -> str:
    return svg[svg.index("<svg"):]


def _side_by_side_svg(svgs: list[str], gap: float = 16.0) -> str:
    """One SVG holding the given SVGs next to each other (nested ``<svg>`` elements)."""
    if len(svgs) == 1:
        return _strip_prolog(svgs[0])
    sizes = []
    for s in svgs:
        m = _SIZE.search(s)
        sizes.append((float(m.group(1)), float(m.group(2))) if m else (300.0, 300.0))
    width = sum(w for w, _ in sizes) + gap * (len(svgs) - 1)
    height = max(h for _, h in sizes)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           f'width="{width:.0f}pt" height="{height:.0f}pt" viewBox="0 0 {width:.2f} {height:.2f}">']
    x = 0.0
    for s, (w, h) in zip(svgs, sizes):
        inner = _strip_prolog(s)
        inner = re.sub(r"^<svg", f'<svg x="{x:.2f}" y="0"', inner, count=1)
        inner = re.sub(r'width="[\d.]+pt"', f'width="{w:.2f}"', inner, count=1)
        inner = re.sub(r'height="[\d.]+pt"', f'height="{h:.2f}"', inner, count=1)
        out.append(inner)
        x += w + gap
    out.append("</svg>")
    return "\n".join(out)


def _side_by_side_png(pngs: list[bytes]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    images = [plt.imread(io.BytesIO(p))[..., :3] for p in pngs]
    height = max(im.shape[0] for im in images)
    gap = np.ones((height, 20, 3), dtype=images[0].dtype)
    padded = []
    for im in images:
        pad = np.ones((height - im.shape[0], im.shape[1], 3), dtype=im.dtype)
        padded += [np.vstack([im, pad]), gap]
    buf = io.BytesIO()
    plt.imsave(buf, np.hstack(padded[:-1]), format="png")
    return buf.getvalue()


# ---------------------------------------------------------------------- matplotlib
def _positions(part: GraphPart, kind: str) -> dict[str, tuple[float, float]]:
    """Node centres: columns by depth (cells, recurrent cells), or one column top to bottom (chains)."""
    if kind == "chain":
        return {n.id: (0.0, -float(i)) for i, n in enumerate(part.nodes)}
    depth = layers(part)
    # inputs in the first column and the output in the last, whatever their depth
    last = max(depth.values(), default=0)
    for n in part.nodes:
        if n.role == "input":
            depth[n.id] = 0
        elif n.role == "output":
            depth[n.id] = last + 1 if any(depth[m.id] == last and m.role != "output" for m in part.nodes) else last
    columns: dict[int, list[str]] = {}
    for n in part.nodes:
        columns.setdefault(depth[n.id], []).append(n.id)
    pos = {}
    for col, ids in columns.items():
        for k, node in enumerate(ids):
            pos[node] = (2.2 * col, 1.3 * ((len(ids) - 1) / 2.0 - k) + 0.35 * (col % 2))  # stagger columns: labels apart
    return pos


def _draw_part(ax: Any, part: GraphPart, kind: str, title: str) -> None:
    pos = _positions(part, kind)
    roles = {n.id: n.role for n in part.nodes}
    skips_seen = 0
    for e in part.edges:
        (x0, y0), (x1, y1) = pos[e.src], pos[e.dst]
        rad = 0.0
        if kind == "chain" and e.kind == "skip":
            skips_seen += 1
            rad = -(0.25 + 0.08 * (skips_seen % 4))  # skips bulge to one side, apart from each other
        elif kind != "chain" and abs(x1 - x0) > 2.5 and abs(y1 - y0) < 0.01:
            rad = 0.25  # an edge over a column would run through its nodes
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-|>", "color": EDGE_COLOUR[e.kind], "lw": 1.1,
                                "linestyle": "--" if e.kind in ("skip", "concat") else "-",
                                "shrinkA": 14, "shrinkB": 14, "connectionstyle": f"arc3,rad={rad}"}, zorder=1)
        if e.label:
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            if rad:
                mx, my = mx - rad * (y1 - y0) / 2, my + rad * (x1 - x0) / 2
            ax.text(mx, my, e.label, ha="center", va="center", fontsize=7, zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.85})
    for n in part.nodes:
        x, y = pos[n.id]
        ax.text(x, y, n.label, ha="center", va="center", fontsize=9, zorder=4,
                bbox={"boxstyle": "round,pad=0.35", "facecolor": FILL[roles[n.id]], "edgecolor": "#333333"})
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 1.2, max(xs) + 1.2)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.set_title(title, fontsize=11)
    ax.axis("off")


def _matplotlib_figure(graph: ArchGraph) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = []
    for p in graph.parts:
        pos = _positions(p, graph.kind)
        w = max(x for x, _ in pos.values()) - min(x for x, _ in pos.values())
        h = max(y for _, y in pos.values()) - min(y for _, y in pos.values())
        sizes.append((1.6 + 0.75 * w, 1.6 + 0.9 * h) if graph.kind != "chain" else (3.6, 1.0 + 0.55 * h))
    fig, axes = plt.subplots(1, len(graph.parts), squeeze=False,
                             figsize=(sum(w for w, _ in sizes), max(h for _, h in sizes)),
                             gridspec_kw={"width_ratios": [w for w, _ in sizes]})
    for ax, part in zip(axes[0], graph.parts):
        _draw_part(ax, part, graph.kind, _part_title(graph, part))
    fig.tight_layout()
    return fig


def _matplotlib_bytes(graph: ArchGraph, fmt: str) -> bytes:
    import matplotlib.pyplot as plt

    fig = _matplotlib_figure(graph)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=110)
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------- entry points
def render_svg(graph: ArchGraph, backend: str = "auto") -> str:
    """The drawing as SVG text (no XML prolog, ready to inline in HTML)."""
    return _render_svg(graph, resolve_backend(backend))


@functools.lru_cache(maxsize=256)
def _render_svg(graph: ArchGraph, backend: str) -> str:
    # memoised: a pure function of frozen data, and reports (a live one above all) draw the same cells again
    if backend == "graphviz":
        return _side_by_side_svg([s.decode() for s in _graphviz_pipe(graph, "svg")])
    return _strip_prolog(_matplotlib_bytes(graph, "svg").decode())


def render_png(graph: ArchGraph, backend: str = "auto") -> bytes:
    """The drawing as PNG bytes."""
    if resolve_backend(backend) == "graphviz":
        pngs = _graphviz_pipe(graph, "png")
        return pngs[0] if len(pngs) == 1 else _side_by_side_png(pngs)
    return _matplotlib_bytes(graph, "png")


def draw(graph: ArchGraph, out: str | Path, backend: str = "auto") -> list[Path]:
    """Write ``out`` as SVG and PNG (``x.svg`` and ``x.png`` for ``out`` = ``x``, ``x.svg`` or ``x.png``)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix.lower() in (".svg", ".png") else out
    if stem.parent and not stem.parent.exists():
        raise ConfigError(f"--out {out}: directory {stem.parent} does not exist")
    svg, png = stem.with_name(stem.name + ".svg"), stem.with_name(stem.name + ".png")
    svg.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + render_svg(graph, backend))
    png.write_bytes(render_png(graph, backend))
    return [svg, png]
