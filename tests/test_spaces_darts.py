"""The DARTS cell space: decisions, genotype strings, and the networks it builds."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import shared_file
from nasforge import SPACES, create_space
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.ops import OPS
from nasforge.ops.measure import count_flops, count_params
from nasforge.spaces.base import OPERATION, STRUCTURE
from nasforge.spaces.darts import OP_SETS
from nasforge.testing.conformance import check_space

# DARTS (second order), as published in DARTS' genotypes.py
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)


@pytest.fixture(scope="module")
def space():
    return create_space("darts")


def test_registered_and_typed_config() -> None:
    assert "darts" in SPACES.names(trainable=True, finite=False, has_structure=True)
    enas = create_space("darts", ops="enas", nodes=5)
    assert enas.config.nodes == 5 and enas.ops == OP_SETS["enas"]
    with pytest.raises(ConfigError, match="ops must be one of"):
        create_space("darts", ops="bogus")
    with pytest.raises(ConfigError, match="nodes"):
        create_space("darts", nodes=0)
    with pytest.raises(ConfigError, match="unknown field 'cells'"):
        create_space("darts", cells=3)


@pytest.mark.parametrize("ops, size", [("darts", 7), ("enas", 5), ("lanas", 8), ("nasnet", 13)])
def test_operation_sets_exist_as_operations(ops: str, size: int) -> None:
    assert len(OP_SETS[ops]) == len(set(OP_SETS[ops])) == size
    assert all(op in OPS for op in OP_SETS[ops])
    check_space(create_space("darts", ops=ops), n=15)


@pytest.mark.parametrize("nodes", [4, 5])
def test_decisions_per_node_and_nb301_edge_numbering(nodes: int) -> None:
    space = create_space("darts", nodes=nodes)
    edges = sum(range(2, nodes + 2))  # node n has n possible inputs: 14 edges for B=4
    assert len(space.decisions) == 2 * (nodes + edges)
    groups = space.groups()
    assert len(groups[STRUCTURE]) == 2 * nodes and len(groups[OPERATION]) == 2 * edges
    names = [d.name for d in space.decisions]
    assert [n for n in names if n.startswith("edge_normal_")] == [f"edge_normal_{e}" for e in range(edges)]
    by_name = {d.name: d for d in space.decisions}
    for n in range(2, nodes + 2):
        pairs = by_name[f"inputs_node_reduce_{n}"]
        assert pairs.n_choices == math.comb(n, 2)
        assert pairs.labels == tuple(f"{a}_{b}" for a, b in itertools.combinations(range(n), 2))
    # node 3's edges are 2, 3, 4 (from nodes 0, 1, 2), as in NAS-Bench-301
    node3 = space.layout["normal"][1]
    assert [names[node3.edges[src]] for src in range(3)] == [f"edge_normal_{e}" for e in (2, 3, 4)]


def test_only_the_chosen_edges_are_active(space) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = space.sample(rng)
        mask = space.active(arch.choices)
        for nodes in space.layout.values():
            for n in nodes:
                chosen = n.pairs[arch.choices[n.structure]]
                assert [src for src, i in n.edges.items() if mask[i]] == list(chosen)
                assert all(arch.choices[i] == 0 for src, i in n.edges.items() if not mask[i])
        # one-hot encoding: one option per structure decision and per active edge
        assert space.encode(arch).sum() == 2 * (4 + 8)


def test_sampling_covers_pairs_uniformly(space) -> None:
    rng = np.random.default_rng(1)
    node5 = space.layout["normal"][3]
    counts = Counter(space.sample(rng).choices[node5.structure] for _ in range(2000))
    assert set(counts) == set(range(10))
    assert max(counts.values()) / min(counts.values()) < 1.6


def test_size_is_exact_and_not_enumerable(space) -> None:
    per_cell = math.prod(math.comb(n, 2) * 7**2 for n in range(2, 6))
    assert space.log10_size == pytest.approx(2 * math.log10(per_cell))
    assert 10 ** (space.log10_size / 2) == pytest.approx(1.04e9, rel=0.01)  # EDNAS: 1.04 x 10^9 cells
    assert space.size is None
    with pytest.raises(TypeError, match="not enumerable"):
        next(space.enumerate())


def test_darts_genotype_string_round_trip(space) -> None:
    arch = space.parse(DARTS_V2)
    text = str(arch)
    assert text.startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1),")
    assert "normal_concat=range(2, 6)" in text and text.endswith("reduce_concat=range(2, 6))")
    assert space.parse(text) == arch
    # the node of ('skip_connect', 2), ('max_pool_3x3', 1) is written in input order
    assert "('max_pool_3x3', 1), ('skip_connect', 2)" in text
    genotype = space.genotype(arch)
    assert genotype.normal[-2:] == [("skip_connect", 0), ("dil_conv_3x3", 2)]
    assert list(genotype.reduce_concat) == [2, 3, 4, 5]


def test_multiline_and_compact_forms(space) -> None:
    pretty = DARTS_V2.replace("normal=", "\n  normal = ").replace("), (", "),\n    (")
    pretty = pretty.replace("reduce=", "reduce =")
    arch = space.parse(pretty)
    assert arch == space.parse(DARTS_V2)
    compact = space.compact(arch)
    assert compact.startswith("|sep_conv_3x3~0|sep_conv_3x3~1|+") and compact.count("//") == 1
    assert space.parse(compact) == arch
    assert space.parse("identity" .join(compact.rsplit("skip_connect", 1))) == arch  # ENAS' name


@pytest.mark.parametrize("edit, message", [
    (("('dil_conv_3x3', 2)", "('dil_conv_3x3', 0)"), "node 5 takes both inputs from node 0"),
    (("('dil_conv_3x3', 2)", "('conv_3x3', 2)"), "'conv_3x3' is not in the 'darts' operation set"),
    (("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "input 5 is not an earlier node"),
    (("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), "normal_concat \\[4, 5\\] is not supported"),
    (("('skip_connect', 0), ('dil_conv_3x3', 2)]", "]"), "6 \\(operation, input\\) pairs; 4 nodes need 8"),
    (("normal=[", "normal=__import__('os').system('true') or ["), "not a list of"),
    (("reduce_concat=", "extra=1, reduce_concat="), "unknown Genotype field 'extra'"),
    (("('sep_conv_3x3', 0), ('sep_conv_3x3', 1)", "0, 1"), "0 is not an \\(operation, input node\\) pair"),
])
def test_bad_genotypes_say_what_is_wrong(space, edit: tuple[str, str], message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=message):
        space.parse(DARTS_V2.replace(*edit))


@pytest.mark.parametrize("text, message", [
    ("|sep_conv_3x3~0|+|skip_connect~0|//|x~0|", "must have two edges"),
    ("|sep_conv_3x3~0|sep_conv_3x3~a|", "neither 'Genotype"),
    ("|sep_conv_3x3~0|sep_conv_3x3~a|//|", "must be 'op~<input node>'"),
])
def test_bad_compact_strings(space, text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=message):
        space.parse(text)


def test_enas_space_takes_five_nodes() -> None:
    space = create_space("darts", ops="enas", nodes=5)
    arch = space.sample(np.random.default_rng(0))
    genotype = space.genotype(arch)
    assert len(genotype.normal) == 10 and list(genotype.normal_concat) == [2, 3, 4, 5, 6]
    with pytest.raises(InvalidArchitecture, match="'enas' operation set"):
        create_space("darts", ops="enas").parse(DARTS_V2)


# ---------------------------------------------------------------------- networks
@pytest.mark.parametrize("ops", sorted(OP_SETS))
def test_sampled_networks_run_forward_and_backward(ops: str) -> None:
    space = create_space("darts", ops=ops)
    rng = np.random.default_rng(0)
    for shape in [(2, 1, 8, 8), (2, 3, 11, 11)]:
        model = space.build(space.sample(rng), num_classes=3, in_channels=shape[1], C=4, layers=3)
        logits = model(torch.randn(*shape))
        assert logits.shape == (2, 3)
        logits.sum().backward()
        assert all(p.grad is not None for p in model.classifier.parameters())
        assert count_params(model) > 0 and count_flops(model, (1, *shape[1:])) > 0


def test_layout_reductions_and_auxiliary_head(space) -> None:
    arch = space.parse(DARTS_V2)
    model = space.build(arch, num_classes=10, C=4, layers=6, auxiliary=True, dropout=0.2)
    assert [c.reduction for c in model.cells] == [False, False, True, False, True, False]
    # EDNAS' search network: 8 cells, a reduction cell after every 2 normal cells
    search_net = space.build(arch, num_classes=10, C=2, layers=8)
    assert [i for i, c in enumerate(search_net.cells) if c.reduction] == [2, 5]
    assert model.stem[0].out_channels == 12  # stem_multiplier * C
    assert model.classifier.in_features == 4 * 16  # 4 nodes concatenated, C doubled twice
    x = torch.randn(2, 3, 8, 8)
    logits, aux = model.train()(x)
    assert logits.shape == aux.shape == (2, 10)
    assert model.eval()(x).shape == (2, 10)  # no auxiliary output in eval mode
    plain = space.build(arch, num_classes=10, C=4, layers=6)
    assert count_params(plain) < count_params(model)
    assert count_flops(plain, (1, 3, 8, 8)) == count_flops(model, (1, 3, 8, 8))


def test_drop_path_probability_is_applied_in_training_only(space) -> None:
    model = space.build(space.parse(DARTS_V2), num_classes=10, C=4, layers=3)
    assert model.drop_path_prob == 0.0
    x = torch.randn(4, 3, 8, 8)
    model.train()
    torch.manual_seed(0)
    clean = model(x)
    model.drop_path_prob = 0.5
    torch.manual_seed(0)
    dropped = model(x)
    assert not torch.allclose(clean, dropped)
    model.eval()
    assert torch.equal(model(x), model(x))


def test_parameters_grow_with_channels_and_layers(space) -> None:
    arch = space.parse(DARTS_V2)
    shapes = [(4, 3), (8, 3), (8, 6)]
    sizes = [count_params(space.build(arch, num_classes=10, C=c, layers=n)) for c, n in shapes]
    assert sizes[0] < sizes[1] < sizes[2]


def test_bad_model_arguments_name_the_key(space) -> None:
    arch = space.parse(DARTS_V2)
    with pytest.raises(ConfigError, match="'N'"):
        space.build(arch, num_classes=10, N=5)
    with pytest.raises(ConfigError, match="dropout"):
        space.build(arch, num_classes=10, dropout=1.5)
    with pytest.raises(ConfigError, match="auxiliary"):
        space.build(arch, num_classes=10, auxiliary="maybe")


def test_real_nb301_cells_parse_and_match_their_parameter_counts(space) -> None:
    """NAS-Bench-301's trained cells: every one is a valid genotype, and networks of its training
    setting (C=32, 8 cells, no affine batch norm in the operations) have exactly its parameter count."""
    lines = shared_file("nb301-surrogate/nb301-real-500.jsonl").read_text().splitlines()
    cells = [json.loads(line) for line in lines]
    archs = [space.from_genotype(c["normal"], c["reduce"]) for c in cells]
    assert len(set(archs)) == len(cells) == 500
    for arch in archs[:20]:
        assert space.parse(str(arch)) == arch
    for cell, arch in list(zip(cells, archs))[:4]:
        model = space.build(arch, num_classes=10, C=32, layers=8, affine=False)
        assert count_params(model) == round(cell["params_m"] * 1e6)
