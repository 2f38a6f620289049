"""The ENAS recurrent-cell space: decisions, strings (readable and ENAS fixed_arc), the cell and its language model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nasforge import create_space
from nasforge.errors import ConfigError, InvalidArchitecture
from nasforge.models.rnn_lm import CellPlan, EnasRNNCell
from nasforge.registry import SPACES
from nasforge.spaces.base import OPERATION, STRUCTURE
from nasforge.testing.conformance import check_space

# ENAS' published PTB cell, as its README gives it for ``--child_fixed_arc``.
ENAS_PTB_ARC = "0 0 0 1 1 2 1 2 0 2 0 5 1 1 0 6 1 8 1 8 1 8 1"
TINY = {"emb_size": 8, "hidden_size": 8}


@pytest.mark.parametrize("args", [{"nodes": 1}, {"nodes": 4}, {}, {"nodes": 9, "output": "all"}])
def test_conformance(args: dict) -> None:
    check_space(create_space("enas-rnn", **args), n=15)


def test_registered_as_language_model_not_image_model() -> None:
    entry = SPACES.get("enas-rnn")
    assert entry.capabilities["has_structure"] is True
    assert "enas-rnn" in SPACES.names(language_model=True)
    # The image-model contract (num_classes logits from images) does not apply to it.
    assert "enas-rnn" not in SPACES.names(trainable=True)


def test_config_is_typed_and_checked() -> None:
    assert create_space("enas-rnn", nodes="5").nodes == 5
    assert create_space("enas-rnn").nodes == 12
    with pytest.raises(ConfigError, match="nodes"):
        create_space("enas-rnn", nodes=0)
    with pytest.raises(ConfigError, match="output"):
        create_space("enas-rnn", output="max")


def test_decisions_follow_enas_controller_order() -> None:
    space = create_space("enas-rnn", nodes=4)
    names = [d.name for d in space.decisions]
    assert names == ["node0_act", "node1_input", "node1_act", "node2_input", "node2_act", "node3_input", "node3_act"]
    groups = space.groups()
    assert [names[i] for i in groups[STRUCTURE]] == ["node1_input", "node2_input", "node3_input"]
    assert [space.decisions[i].n_choices for i in groups[STRUCTURE]] == [1, 2, 3]
    assert all(space.decisions[i].n_choices == 4 for i in groups[OPERATION])


@pytest.mark.parametrize("nodes", [1, 2, 3])
def test_size_counts_the_enumeration(nodes: int) -> None:
    space = create_space("enas-rnn", nodes=nodes)
    archs = list(space.enumerate())
    assert len(archs) == len(set(archs)) == space.size == 4**nodes * math.factorial(nodes - 1)
    for a in archs[:: max(1, len(archs) // 10)]:
        space.validate(a)


def test_enas_size_and_log_size() -> None:
    space = create_space("enas-rnn")
    assert space.size == 4**12 * math.factorial(11)
    assert space.log10_size == pytest.approx(math.log10(space.size))


def test_readable_string_and_enas_fixed_arc_agree() -> None:
    space = create_space("enas-rnn")
    arch = space.parse(ENAS_PTB_ARC)
    assert str(arch).startswith("0:tanh 1:tanh<-0 2:relu<-1 3:relu<-2 4:tanh<-2 5:tanh<-2 6:relu<-5 ")
    assert space.parse(str(arch)) == arch
    assert space.parse(str(arch).replace(":", " : ").replace("<-", " <- ")) == arch
    plan = space.plan(arch)
    assert plan.inputs == (0, 1, 2, 2, 2, 5, 1, 6, 8, 8, 8)
    assert plan.loose_ends() == (3, 4, 7, 9, 10, 11)


def test_small_example_string() -> None:
    space = create_space("enas-rnn", nodes=3)
    arch = space.parse("0:tanh 1:relu<-0 2:sigmoid<-1")
    assert arch.choices == (0, 0, 1, 1, 3)
    assert space.parse("0 0 1 1 3") == arch


@pytest.mark.parametrize("text, message", [
    ("0:tanh 1:relu<-0", "expected 3 nodes"),
    ("0:tanh 1:gelu<-0 2:relu<-1", "unknown activation 'gelu'"),
    ("0:tanh 1:relu<-0 2:relu<-2", "node 2 must read one earlier node"),
    ("0:tanh 1:relu 2:relu<-0", "node 1 must read one earlier node"),
    ("0:tanh<-0 1:relu<-0 2:relu<-0", "node 0 reads the input"),
    ("0:tanh 2:relu<-0 1:relu<-0", "node 1 is numbered 2"),
    ("0:tanh 1:relu<=0 2:relu<-0", "must be 'j:activation<-i'"),
    ("0 0 1", "need 5 integers"),
    ("0 1 1 0 3", "choice 1 not in 0..0"),
])
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=message):
        create_space("enas-rnn", nodes=3).parse(text)


def test_output_rule_changes_the_plan_not_the_decisions() -> None:
    loose = create_space("enas-rnn", nodes=4)
    every = create_space("enas-rnn", nodes=4, output="all")
    arch = loose.parse("0:tanh 1:relu<-0 2:relu<-0 3:tanh<-1")
    assert loose.plan(arch).output_nodes() == (2, 3)
    assert every.plan(every.parse(str(arch))).output_nodes() == (0, 1, 2, 3)


# --------------------------------------------------------------------------- the language model
def _model(space, arch, vocab=30, **args):
    torch.manual_seed(0)
    return space.build(arch, vocab_size=vocab, **{**TINY, **args})


def test_language_model_shapes_backward_and_tied_weights() -> None:
    space = create_space("enas-rnn", nodes=5)
    arch = space.sample(np.random.default_rng(1))
    model = _model(space, arch)
    assert model.decoder.weight is model.encoder.weight
    tokens = torch.randint(0, 30, (6, 4))
    logits, hidden = model.train()(tokens, model.init_hidden(4))
    assert logits.shape == (6, 4, 30) and hidden.shape == (4, 8)
    logits.logsumexp(-1).mean().backward()
    assert model.encoder.weight.grad is not None and model.encoder.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.cell.parameters())
    # One shared matrix: the embedding and the decoder are counted once.
    assert sum(p.numel() for p in model.parameters()) == 30 * 8 + 30 + 8 * 16 + 8 * 16 + 4 * 8 * 16


def test_hidden_size_other_than_embedding_size_projects_before_the_decoder() -> None:
    space = create_space("enas-rnn", nodes=3)
    model = _model(space, space.sample(np.random.default_rng(0)), hidden_size=12)
    logits, hidden = model(torch.randint(0, 30, (3, 2)), model.init_hidden(2))
    assert logits.shape == (3, 2, 30) and hidden.shape == (2, 12)
    assert model.projection is not None and model.decoder.weight is model.encoder.weight


def test_child_holds_only_its_edges_named_as_in_the_supernet() -> None:
    space = create_space("enas-rnn", nodes=6)
    arch = space.sample(np.random.default_rng(2))
    child = _model(space, arch)
    supernet = space.supernet(30, **TINY)
    assert len(supernet.cell.w_edge) == 6 * 5 // 2
    assert sorted(child.cell.w_edge) == sorted(f"n{j}_from{i}" for j, i in space.plan(arch).edges())
    assert set(child.state_dict()) <= set(supernet.state_dict())


@pytest.mark.parametrize("output", ["loose_ends", "all"])
def test_supernet_with_arch_at_call_time_equals_the_fixed_child(output: str) -> None:
    space = create_space("enas-rnn", nodes=6, output=output)
    supernet = space.supernet(30, **TINY).eval()
    tokens = torch.randint(0, 30, (5, 3), generator=torch.Generator().manual_seed(0))
    h0 = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    rng = np.random.default_rng(3)
    outs = []
    for _ in range(3):
        arch = space.sample(rng)
        child = _model(space, arch)
        shared = supernet.state_dict()
        child.load_state_dict({k: shared[k] for k in child.state_dict()})
        expected, expected_h = child.eval()(tokens, h0)
        got, got_h = supernet(tokens, h0, space.plan(arch))
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        torch.testing.assert_close(got_h, expected_h, rtol=0, atol=0)
        outs.append(got)
    assert not torch.equal(outs[0], outs[1]), "different architectures on shared weights gave the same output"


def test_cell_computes_the_enas_highway_recurrence() -> None:
    """Node 0 from x and h; node j from its input through a gated highway; output = mean of loose ends."""
    plan = CellPlan(("tanh", "relu", "sigmoid"), (0, 0))  # nodes 1 and 2 both read node 0: loose ends 1, 2
    torch.manual_seed(0)
    cell = EnasRNNCell(3, 4, 3, plan=plan).eval()
    x, h0 = torch.randn(2, 5, 3), torch.randn(5, 4)

    def highway(pre, carry, f):
        c = torch.sigmoid(pre[:, :4])
        return c * f(pre[:, 4:]) + (1 - c) * carry

    expected, h = [], h0
    for t in range(2):
        n0 = highway(x[t] @ cell.w_x + h @ cell.w_h, h, torch.tanh)
        n1 = highway(n0 @ cell.w_edge["n1_from0"], n0, torch.relu)
        n2 = highway(n0 @ cell.w_edge["n2_from0"], n0, torch.sigmoid)
        h = (n1 + n2) / 2
        expected.append(h)
    out, last = cell(x, h0)
    torch.testing.assert_close(out, torch.stack(expected))
    torch.testing.assert_close(last, expected[-1])


def test_hidden_norm_is_capped_at_every_step() -> None:
    """An identity cell fed large inputs would grow its state without bound; the cap keeps each row's norm."""
    plan = CellPlan(("identity", "identity"), (0,))
    torch.manual_seed(0)
    capped = EnasRNNCell(3, 4, 2, plan=plan, max_hidden_norm=2.0).eval()
    free = EnasRNNCell(3, 4, 2, plan=plan).eval()
    free.load_state_dict(capped.state_dict())
    x, h0 = 100 * torch.randn(6, 5, 3), torch.zeros(5, 4)
    with torch.no_grad():
        out, _ = capped(x, h0)
    assert float(out.norm(dim=-1).max()) <= 2.0 + 1e-5
    assert float(free(x, h0)[0].detach().norm(dim=-1).max()) > 2.0
    # Below the cap nothing changes.
    small = 1e-3 * torch.randn(2, 5, 3)
    torch.testing.assert_close(capped(small, h0)[0], free(small, h0)[0])
    with pytest.raises(ValueError, match="max_hidden_norm"):
        EnasRNNCell(3, 4, 2, max_hidden_norm=-1)


def test_cell_refuses_plans_it_cannot_run() -> None:
    space = create_space("enas-rnn", nodes=4)
    supernet = space.supernet(30, **TINY)
    tokens = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="pass a CellPlan"):
        supernet(tokens, supernet.init_hidden(1))
    child = _model(space, space.parse("0:tanh 1:relu<-0 2:relu<-1 3:relu<-2"))
    with pytest.raises(ValueError, match=r"no weight for edge\(s\) 3<-0"):
        child(tokens, child.init_hidden(1), space.plan(space.parse("0:tanh 1:relu<-0 2:relu<-1 3:relu<-0")))


def test_dropout_only_in_training_mode() -> None:
    space = create_space("enas-rnn", nodes=4)
    model = _model(space, space.sample(np.random.default_rng(0)), dropout_embedding=0.3, dropout_input=0.3,
                   dropout_hidden=0.3, dropout_output=0.3)
    tokens = torch.randint(0, 30, (4, 2))
    h = model.init_hidden(2)
    model.eval()
    torch.testing.assert_close(model(tokens, h)[0], model(tokens, h)[0], rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(tokens, h)[0], model(tokens, h)[0])


def test_build_needs_a_vocabulary_and_checks_model_args() -> None:
    space = create_space("enas-rnn", nodes=3)
    arch = space.sample(np.random.default_rng(0))
    with pytest.raises(ConfigError, match="vocab_size"):
        space.build(arch, num_classes=10, in_channels=3)
    with pytest.raises(ConfigError, match="hiden_size"):
        space.build(arch, vocab_size=10, hiden_size=4)
    with pytest.raises(ConfigError, match="dropout_output"):
        space.build(arch, vocab_size=10, dropout_output=1.0)
    model = space.build(arch, vocab_size="10", hidden_size="6", emb_size=6)
    assert model.vocab_size == 10 and model.hidden_size == 6
