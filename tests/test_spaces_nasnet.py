"""The `nasnet` cell space: published genotypes, the reference network's parameter counts, growing, strategies."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.export import build as export_build
from nasforge.export import export_run
from nasforge.ops.measure import count_params
from nasforge.registry import SPACES, STRATEGIES
from nasforge.run.loop import run_search
from nasforge.spaces.nasnet import OP_SETS, PUBLISHED
from nasforge.testing import conformance
from nasforge.testing.toy import ToyEvaluator

# Published cells in DARTS' genotypes.py format. NASNet, AmoebaNet, DARTS_V1, DARTS_V2: quark0/darts
# cnn/genotypes.py; PNASNet: chenxi116/PNASNet.pytorch genotypes.py; ENAS: D-X-Y/AutoDL-Projects
# lib/nas_infer_model/DXYs/genotypes.py. Written here as those files write them (NASNet multi-line).
NASNET = """Genotype(
  normal = [
    ('sep_conv_5x5', 1),
    ('sep_conv_3x3', 0),
    ('sep_conv_5x5', 0),
    ('sep_conv_3x3', 0),
    ('avg_pool_3x3', 1),
    ('skip_connect', 0),
    ('avg_pool_3x3', 0),
    ('avg_pool_3x3', 0),
    ('sep_conv_3x3', 1),
    ('skip_connect', 1),
  ],
  normal_concat = [2, 3, 4, 5, 6],
  reduce = [
    ('sep_conv_5x5', 1),
    ('sep_conv_7x7', 0),
    ('max_pool_3x3', 1),
    ('sep_conv_7x7', 0),
    ('avg_pool_3x3', 1),
    ('sep_conv_5x5', 0),
    ('skip_connect', 3),
    ('avg_pool_3x3', 2),
    ('sep_conv_3x3', 2),
    ('max_pool_3x3', 1),
  ],
  reduce_concat = [4, 5, 6],
)"""
AMOEBANET = ("Genotype(normal=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 2), "
             "('sep_conv_3x3', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3', 1), ('skip_connect', 1), "
             "('skip_connect', 0), ('avg_pool_3x3', 1)], normal_concat=[4, 5, 6], reduce=[('avg_pool_3x3', 0), "
             "('sep_conv_3x3', 1), ('max_pool_3x3', 0), ('sep_conv_7x7', 2), ('sep_conv_7x7', 0), "
             "('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1), ('conv_7x1_1x7', 0), "
             "('sep_conv_3x3', 5)], reduce_concat=[3, 4, 6])")
DARTS_V1 = ("Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
            "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])")
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
_PNAS_CELL = ("[('sep_conv_5x5', 0), ('max_pool_3x3', 0), ('sep_conv_7x7', 1), ('max_pool_3x3', 1), "
              "('sep_conv_5x5', 1), ('sep_conv_3x3', 1), ('sep_conv_3x3', 4), ('max_pool_3x3', 1), "
              "('sep_conv_3x3', 0), ('skip_connect', 1)]")
PNASNET = (f"Genotype(normal={_PNAS_CELL}, normal_concat=[2, 3, 4, 5, 6], reduce={_PNAS_CELL}, "
           "reduce_concat=[2, 3, 4, 5, 6])")
ENAS = ("Genotype(normal=[('sep_conv_3x3', 1), ('skip_connect', 1), ('sep_conv_5x5', 1), ('skip_connect', 0), "
        "('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('sep_conv_5x5', 1), "
        "('avg_pool_3x3', 0)], normal_concat=[2, 3, 4, 5, 6], reduce=[('sep_conv_5x5', 0), ('avg_pool_3x3', 1), "
        "('sep_conv_3x3', 1), ('avg_pool_3x3', 1), ('avg_pool_3x3', 1), ('sep_conv_3x3', 1), ('sep_conv_5x5', 4), "
        "('avg_pool_3x3', 1), ('sep_conv_3x3', 5), ('sep_conv_5x5', 0)], reduce_concat=[2, 3, 6])")

#: name -> (genotype, space config that reads it)
GENOTYPES = {
    "NASNet": (NASNET, {}),
    "AmoebaNet": (AMOEBANET, {}),
    "DARTS_V1": (DARTS_V1, {"blocks": 4, "ops": "darts", "concat": "all"}),
    "DARTS_V2": (DARTS_V2, {"blocks": 4, "ops": "darts", "concat": "all"}),
    "PNASNet": (PNASNET, {"ops": "pnas", "concat": "all", "shared_cell": True}),
    "ENAS": (ENAS, {"ops": "enas"}),
}

# Parameters of the reference model.NetworkCIFAR(C, 10, layers, auxiliary, genotype) of quark0/darts (cnn/model.py
# at its GitHub head), summed over net.parameters(), with the auxiliary head off / on. Obtained by running that
# model.py in a scratch copy with this repository's torch (shim: an empty `torchvision` module for utils.py's
# import) on the genotypes above, written as namedtuples; a forward pass of each ran too.
REFERENCE = {
    (36, 20): {
        "NASNet": (3_830_950, 4_288_944),
        "AmoebaNet": (3_145_078, 3_603_072),
        "DARTS_V1": (3_169_414, 3_645_840),
        "DARTS_V2": (3_349_342, 3_825_768),
        "PNASNet": (4_481_110, 4_975_968),
        "ENAS": (3_859_894, 4_317_888),
    },
    (16, 8): {
        "NASNet": (333_946, 761_220),
        "AmoebaNet": (326_330, 753_604),
        "DARTS_V1": (232_890, 668_356),
        "DARTS_V2": (246_106, 681_572),
        "PNASNet": (408_762, 852_420),
        "ENAS": (334_010, 761_284),
    },
}


def _canonical_repr(text: str) -> str:
    """What DARTS' namedtuple prints for a genotype source text (lists, keyword order of the fields)."""
    call = ast.parse(text, mode="eval").body
    assert isinstance(call, ast.Call)
    values = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    return ("Genotype(" + ", ".join(f"{k}={list(values[k])!r}" for k in
                                    ("normal", "normal_concat", "reduce", "reduce_concat")) + ")")


def test_registered_growable_with_typed_config() -> None:
    entry = SPACES.get("nasnet")
    assert entry.capabilities["growable"] and entry.capabilities["trainable"]
    space = nf.create_space("nasnet", blocks="4", shared_cell="true", combine="add,concat")
    assert space.max_blocks == 4 and space.config.shared_cell and space.combines == ("add", "concat")
    for bad, message in [({"ops": "vgg"}, "ops must be one of"), ({"combine": "concat"}, "combine must be"),
                         ({"concat": "some"}, "concat must be"), ({"min_blocks": 6}, "min_blocks must be in")]:
        with pytest.raises(ConfigError, match=message):
            nf.create_space("nasnet", **bad)


@pytest.mark.parametrize("ops,size", [("nasnet", 13), ("enas", 5), ("pnas", 8), ("darts", 7), ("lanas", 8)])
def test_operation_sets_are_operations(ops: str, size: int) -> None:
    assert len(OP_SETS[ops]) == size
    space = nf.create_space("nasnet", ops=ops)
    assert all(d.labels == OP_SETS[ops] for d in space.decisions if d.name.startswith("op"))


def test_decisions_follow_the_five_steps() -> None:
    space = nf.create_space("nasnet", blocks=2, combine="add,concat")
    names = [d.name for d in space.decisions]
    assert names[:5] == ["in1_normal_2", "in2_normal_2", "op1_normal_2", "op2_normal_2", "comb_normal_2"]
    assert [d.n_choices for d in space.decisions[5:9]] == [3, 3, 13, 13]  # block 3 reads nodes 0..2
    assert len(space.decisions) == 20
    shared = nf.create_space("nasnet", shared_cell=True)
    assert len(shared.decisions) == 20 and shared.decisions[0].name == "in1_cell_2"
    conformance.check_space(shared)


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_published_genotypes_parse_and_print_back(name: str) -> None:
    text, config = GENOTYPES[name]
    space = nf.create_space("nasnet", **config)
    arch = space.parse(text)
    assert str(arch) == _canonical_repr(text)  # what DARTS' namedtuple prints
    assert space.parse(str(arch)) == arch and space.from_dict(arch.to_dict()) == arch
    published, published_config = PUBLISHED[name]  # the library's copy, for users and benchmarks
    assert published_config == config and published == str(arch)


def test_repeated_inputs_and_loose_ends() -> None:
    space = nf.create_space("nasnet")
    arch = space.parse(NASNET)
    normal, reduce = space.cell_spec(arch, "normal"), space.cell_spec(arch, "reduce")
    assert normal.blocks[3].first == normal.blocks[3].second == ("avg_pool_3x3", 0)  # the same input twice
    assert normal.concat == (2, 3, 4, 5, 6) and reduce.concat == (4, 5, 6)  # blocks 2, 3 feed others
    assert space.cell_spec(space.parse(AMOEBANET), "reduce").concat == (3, 4, 6)
    # the same cells in a space that concatenates every block
    every = nf.create_space("nasnet", concat="all")
    assert every.cell_spec(every.parse(NASNET.replace("[4, 5, 6]", "range(2, 7)")), "reduce").concat == (2, 3, 4, 5, 6)


@pytest.mark.parametrize("text,config,message", [
    (DARTS_V2, {"blocks": 4, "ops": "darts"}, r"normal_concat \[2, 3, 4, 5\] is not this cell's loose ends \[3, 4, 5\].*space.concat=all"),
    (DARTS_V2, {}, "normal cell has 8 .* pairs; this space's cells have 5 blocks"),
    (AMOEBANET, {"ops": "enas"}, r"operation 'max_pool_3x3'|operation 'sep_conv_7x7' is not in the 'enas' operation set"),
    (NASNET, {"ops": "darts"}, "block 2: operation 'sep_conv_7x7' is not in the 'darts' operation set"),
    (NASNET, {"shared_cell": True}, "normal and reduction cells differ"),
    (NASNET.replace("('skip_connect', 3)", "('skip_connect', 5)"), {}, "block 5: input 5 is not an earlier node"),
    (NASNET.replace("normal =", "normals ="), {}, "unknown Genotype field 'normals'"),
    (NASNET.replace("reduce =", "reduce_combine = ['add'], reduce ="), {}, "reduce_combine lists 1 combinations"),
    ("Genotype(normal=[('sep_conv_3x3', 0)] * 10, reduce=[])", {}, "is not a list of"),
    ("Genotype(normal=[('sep_conv_3x3', 'x')], reduce=[])", {}, "is not an \\(operation, input node\\) pair"),
    ("normal=[]", {}, "must be 'Genotype"),
])
def test_bad_genotypes_say_what_is_wrong(text: str, config: dict, message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=message):
        nf.create_space("nasnet", **config).parse(text)


def test_an_op_of_another_set_names_the_sets_that_have_it() -> None:
    with pytest.raises(InvalidArchitecture, match=r"it is in space.ops=lanas\|nasnet\|pnas"):
        nf.create_space("nasnet", ops="enas").parse(NASNET.replace("'sep_conv_5x5', 1", "'sep_conv_7x7', 1", 1))


def test_parameter_counts_equal_the_reference_network() -> None:
    size = C, layers = (36, 20)  # the (16, 8) numbers agree as well (docs/benchmarks.md)
    for name, (text, config) in GENOTYPES.items():
        space = nf.create_space("nasnet", **config)
        arch = space.parse(text)
        for aux, expected in zip((False, True), REFERENCE[size][name]):
            with torch.device("meta"):  # shapes only: counting 3.8M parameters needs no memory
                model = space.build(arch, num_classes=10, C=C, layers=layers, auxiliary=aux)
            assert count_params(model) == expected, f"{name} C={C} layers={layers} auxiliary={aux}"


@pytest.mark.parametrize("name", sorted(GENOTYPES))
def test_published_networks_train_with_drop_path_and_auxiliary_head(name: str) -> None:
    text, config = GENOTYPES[name]
    space = nf.create_space("nasnet", **config)
    model = space.build(space.parse(text), num_classes=4, in_channels=1, C=4, layers=4, auxiliary=True)
    model.drop_path_prob = 0.3
    torch.manual_seed(0)
    logits, aux = model.train()(torch.randn(3, 1, 8, 8))
    assert logits.shape == aux.shape == (3, 4)
    (logits.sum() + aux.sum()).backward()
    assert model.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_concatenation_combination_widens_its_block() -> None:
    space = nf.create_space("nasnet", blocks=2, combine="add,concat", concat="all")
    text = ("Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('skip_connect', 2), ('max_pool_3x3', 0)], "
            "normal_concat=[2, 3], reduce=[('skip_connect', 0), ('skip_connect', 0), ('avg_pool_3x3', 2), "
            "('sep_conv_3x3', 1)], reduce_concat=[2, 3], normal_combine=['concat', 'add'], "
            "reduce_combine=['add', 'concat'])")
    arch = space.parse(text)
    assert str(arch) == text
    model = space.build(arch, num_classes=3, in_channels=1, C=4, layers=3)
    # normal: block 2 has 2C, block 3 C -> 3C; reduction: C + 2C -> 3C
    assert [c.multiplier for c in model.cells] == [3, 3, 3]
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with pytest.raises(InvalidArchitecture, match="combination 'concat' is not allowed"):
        nf.create_space("nasnet", blocks=2, concat="all").parse(text)
    for _ in range(3):  # sampled cells with either combination run
        a = space.sample(np.random.default_rng(_))
        assert space.build(a, num_classes=3, in_channels=1, C=2, layers=3)(torch.randn(1, 1, 8, 8)).shape == (1, 3)


def test_key_ignores_the_order_of_a_blocks_inputs() -> None:
    space = nf.create_space("nasnet")
    arch = space.parse(NASNET)
    swapped = space.parse(NASNET.replace("('sep_conv_5x5', 1),\n    ('sep_conv_3x3', 0),",
                                         "('sep_conv_3x3', 0),\n    ('sep_conv_5x5', 1),", 1))
    assert swapped != arch and space.key(swapped) == space.key(arch)


# ---------------------------------------------------------------------- growing (the contract PNAS uses)
def test_full_cells_only_unless_min_blocks() -> None:
    space = nf.create_space("nasnet", ops="pnas")
    assert "blocks" not in [d.name for d in space.decisions]
    with pytest.raises(InvalidArchitecture, match="min_blocks=1"):
        next(space.initial_cells())


def test_initial_cells_and_expansion() -> None:
    space = nf.create_space("nasnet", ops="pnas", shared_cell=True, min_blocks=1, concat="all")
    assert space.decisions[0].name == "blocks" and space.decisions[0].labels == ("1", "2", "3", "4", "5")
    first = list(space.initial_cells())
    # one block on nodes 0/1: 2 x 2 inputs, 8 x 8 operations, one of each input order: (4 * 64 + 2 * 8) / 2
    assert len(first) == len(set(first)) == (4 * 64 + 2 * 8) // 2 == 136
    assert {space.blocks(a) for a in first} == {1}
    cell = first[17]
    assert str(cell).count("(") == 1 + 2 * 2  # Genotype( + two pairs in each cell's listing
    grown = list(space.expand(cell))
    assert len(grown) == (9 * 64 + 3 * 8) // 2  # block 3 reads nodes 0..2
    for g in grown[:20]:
        space.validate(g)
        assert space.blocks(g) == 2
        assert space.cell_spec(g, "normal").blocks[0] == space.cell_spec(cell, "normal").blocks[0]
        assert space.parse(str(g)) == g
    assert space.parse(PNASNET) in set(_grow_to(space, space.parse(PNASNET)))
    conformance.check_space(space)


def _grow_to(space, target):
    """The expansions of ``target``'s prefix of one block fewer (the cell is among them)."""
    spec = space.cell_spec(target, "normal")
    pairs = [p for b in spec.blocks[:-1] for p in (b.first, b.second)]
    prefix = space.from_genotype(pairs, pairs)
    return space.expand(prefix)


def test_separate_cells_grow_together() -> None:
    space = nf.create_space("nasnet", ops="enas", min_blocks=1, blocks=2)
    first = list(space.initial_cells())
    per_cell = (4 * 25 + 2 * 5) // 2
    assert len(first) == per_cell ** 2
    assert all(len(space.cell_spec(a, c).blocks) == 1 for a in first[:50] for c in ("normal", "reduce"))
    grown = next(space.expand(first[0]))
    assert space.blocks(grown) == 2 and list(space.expand(grown)) == []
    # a full-size space reads the grown cell too; smaller ones only where min_blocks allows them
    assert nf.create_space("nasnet", ops="enas", blocks=2).parse(str(grown)).choices == grown.choices[1:]
    with pytest.raises(InvalidArchitecture, match="this space's cells have 2 blocks"):
        nf.create_space("nasnet", ops="enas", blocks=2).parse(str(first[0]))
    model = space.build(first[0], num_classes=2, in_channels=1, C=2, layers=3)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 2)


def test_sampling_and_mutation_change_the_cell_size() -> None:
    space = nf.create_space("nasnet", min_blocks=1)
    rng = np.random.default_rng(0)
    sizes = {space.blocks(space.sample(rng)) for _ in range(60)}
    assert sizes == {1, 2, 3, 4, 5}
    arch = space.make([0] * len(space.decisions))
    assert space.blocks(arch) == 1
    assert sum(a != arch for a in space.neighbours(arch)) == len(space.neighbours(arch)) > 0
    assert space.encode(arch).sum() == 1 + 2 * 4  # the count, and block 2's four decisions in each cell


# ---------------------------------------------------------------------- strategies, training, export
@pytest.mark.parametrize("name", STRATEGIES.names())
def test_every_strategy_searches_the_space(name: str, tmp_path: Path) -> None:
    # pnas grows cells from one block (its registry entry's space_defaults); a relaxation holds full cells only
    relaxed = STRATEGIES.get(name).capabilities.get("differentiable")
    space = nf.create_space("nasnet", ops="enas", min_blocks=1 if name == "pnas" else 3 if relaxed else 2, blocks=3)
    args = {"pretrain_archs": 64, "pretrain_steps": 5, "cache_dir": str(tmp_path)} if name == "nases" else {}
    strategy = nf.create_strategy(name, space, 0, **args)
    record = run_search(space, strategy, ToyEvaluator(space), 12, seed=0)
    assert record.n_evaluations == 12
    for t in record.trials:
        space.validate(t.arch)


def test_train_evaluator_and_export(tmp_path: Path) -> None:
    config = nf.RunConfig(space="nasnet", strategy="rs", evaluator="train", dataset="digits", budget=1,
                          space_args={"ops": "enas", "min_blocks": 1},
                          evaluator_args={"epochs": 1, "model_args": {"C": 2, "layers": 3}, "resolution": 4})
    record, _ = nf.search(config, tmp_path / "run")
    assert record.n_evaluations == 1 and not record.trials[0].outcome.failed
    genotype = export_run(tmp_path / "run", "json", tmp_path / "export")
    model = export_build(genotype)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 10)
