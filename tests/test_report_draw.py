"""Architecture diagrams: every registered space describes its architectures as graphs, and they are drawn."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

import nasforge as nf
import nasforge.testing
from nasforge.arch import Architecture
from nasforge.cli import main
from nasforge.graph import ArchGraph, GraphEdge, GraphNode, GraphPart
from nasforge.registry import SPACES
from nasforge.report.draw import draw, graphviz_available, render_svg, to_dot
from nasforge.testing import conformance
from nasforge.testing.toy import ToySpace

PNG = b"\x89PNG\r\n\x1a\n"
NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.mark.parametrize("name", SPACES.names())
def test_every_registered_space_is_drawn(name: str, tmp_path: Path) -> None:
    # the plain-install renderer for every space; Graphviz too where it is installed
    space = nf.create_space(name)
    graph = conformance.check_space_graph(space, space.sample(np.random.default_rng(1)))
    backends = ["matplotlib", *(["graphviz"] if graphviz_available() else [])]
    for backend in backends:
        svg, png = draw(graph, tmp_path / f"{name}-{backend}", backend)
        assert svg.read_text().count("<svg") >= 1 and png.read_bytes().startswith(PNG), backend
        assert png.stat().st_size > 2000, f"{backend}: an empty drawing"
    labels = {n.label for p in graph.parts for n in p.nodes}
    if graphviz_available():  # Graphviz writes the labels as text (matplotlib draws glyph paths)
        text = html.unescape((tmp_path / f"{name}-graphviz.svg").read_text())
        assert all(label in text for label in labels)


class _NoGraph(ToySpace):
    name = "toy"

    def graph(self, arch: Architecture) -> ArchGraph:
        return super(ToySpace, self).graph(arch)  # the base class': not implemented


def test_a_space_without_graph_fails_conformance_with_a_clear_message() -> None:
    space = _NoGraph()
    with pytest.raises(AssertionError, match="does not implement graph"):
        conformance.check_space(space, n=2)


def test_graph_problems_are_named() -> None:
    nodes = (GraphNode("a", "a", "input"), GraphNode("b", "b"), GraphNode("c", "c", "output"))
    ok = ArchGraph("x", "cell", (GraphPart("p", nodes, (GraphEdge("a", "b"), GraphEdge("b", "c"))),))
    assert ok.problem() is None
    cycle = ArchGraph("x", "cell", (GraphPart("p", nodes, (GraphEdge("a", "b"), GraphEdge("b", "a"))),))
    assert "cycle" in (cycle.problem() or "")
    unknown = ArchGraph("x", "cell", (GraphPart("p", nodes, (GraphEdge("a", "z"),)),))
    assert "unknown node" in (unknown.problem() or "")
    no_output = ArchGraph("x", "cell", (GraphPart("p", nodes[:2], ()),))
    assert "output" in (no_output.problem() or "")


def _edges(part: GraphPart, kind: str) -> Sequence[tuple[str, str, str]]:
    return sorted((e.src, e.dst, e.label) for e in part.edges if e.kind == kind)


def test_darts_cells_in_paper_style() -> None:
    space = nf.create_space("darts")
    arch = space.sample(np.random.default_rng(3))
    graph = space.graph(arch)
    genotype = space.genotype(arch)
    assert [p.name for p in graph.parts] == ["normal", "reduce"]
    for part, cell in zip(graph.parts, (genotype.normal, genotype.reduce)):
        names = {0: "c_{k-2}", 1: "c_{k-1}"}
        expected = sorted((names.get(src, str(src - 2)), str(k // 2), op) for k, (op, src) in enumerate(cell))
        assert _edges(part, "op") == expected
        assert _edges(part, "concat") == [(str(k), "c_{k}", "") for k in range(4)]
    dot = to_dot(graph.parts[0], graph.kind)
    assert "rankdir=LR" in dot and dot.count("->") == 12


def test_nb201_cell_has_no_none_edges() -> None:
    space = nf.create_space("nb201")
    part = space.graph(space.parse(NB201)).parts[0]
    assert _edges(part, "op") == sorted([("0", "1", "nor_conv_3x3"), ("0", "2", "nor_conv_3x3"),
                                         ("0", "3", "skip_connect"), ("1", "3", "nor_conv_3x3"),
                                         ("2", "3", "nor_conv_1x1")])


def test_macro_network_is_a_chain_with_its_skips() -> None:
    space = nf.create_space("enas-macro", layers=3)
    graph = space.graph(space.parse("0: conv3x3 | 1: sep5x5 <- stem | 2: maxpool <- 0"))
    part = graph.parts[0]
    assert graph.kind == "chain" and [n.label for n in part.nodes] == ["stem", "0: conv3x3", "1: sep5x5",
                                                                        "2: maxpool", "pool + fc"]
    assert _edges(part, "skip") == [("n0", "n2", ""), ("n1", "n3", "")]


def test_recurrent_cell_averages_its_loose_ends() -> None:
    space = nf.create_space("enas-rnn", nodes=3)
    part = space.graph(space.parse("0:tanh 1:relu<-0 2:sigmoid<-0")).parts[0]
    assert _edges(part, "concat") == [("1", "h_t", ""), ("2", "h_t", "")]
    assert ("0", "2", "sigmoid") in _edges(part, "op")


def test_draw_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["draw", "--space", "nb201", "--arch", NB201, "--out", str(tmp_path / "cell.svg"),
                 "--backend", "matplotlib"]) == 0
    assert (tmp_path / "cell.svg").read_text().startswith("<?xml")
    assert (tmp_path / "cell.png").read_bytes().startswith(PNG)
    assert main(["draw", "--space", "darts", "--set", "ops=enas", "--arch", "nonsense", "--out",
                 str(tmp_path / "x")]) == 2
    assert "darts" in capsys.readouterr().err
    assert main(["draw", "--space", "nb201", "--out", str(tmp_path / "y")]) == 2


def test_draw_from_a_run_takes_its_best(tmp_path: Path) -> None:
    from nasforge.testing.tables import write_nb201_table

    run = tmp_path / "run"
    config = nf.RunConfig(space="nb201", strategy="rs", evaluator="tabular", budget=5,
                          benchmark=str(write_nb201_table(tmp_path / "t.csv")))
    _, result = nf.search(config, run)
    assert main(["draw", "--from", str(run), "--out", str(tmp_path / "best"), "--backend", "matplotlib"]) == 0
    space = nf.create_space("nb201")
    assert (tmp_path / "best.png").exists()
    best = space.parse(result["best"]["arch"])
    assert render_svg(space.graph(best), "matplotlib").startswith("<svg")
