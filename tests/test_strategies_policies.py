"""Policies shared by the RL strategies: sampling, scoring, masking, anchor attention, the learner."""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.arch import Architecture
from nasforge.spaces.base import OPERATION, STRUCTURE, Decision, SearchSpace
from nasforge.strategies.policies import LSTMController, PolicyGradient, PolicyVectors

DECISIONS = (Decision("a", 3, STRUCTURE), Decision("b", 5), Decision("c", 2), Decision("d", 4))


class SkipSpace(SearchSpace):
    """A macro-like space: an operation per layer, binary skip links between layers (option 1 = linked)."""

    name = "fake-skip"
    decisions = (
        Decision("op0", 3, OPERATION),
        Decision("op1", 3, OPERATION),
        Decision("skip1<-0", 2, STRUCTURE),
        Decision("op2", 3, OPERATION),
        Decision("skip2<-0", 2, STRUCTURE),
        Decision("skip2<-1", 2, STRUCTURE),
    )

    def skip_links(self) -> dict[int, tuple[int, int]]:
        return {2: (1, 0), 4: (2, 0), 5: (2, 1)}

    def to_string(self, choices: Sequence[int]) -> str:
        return ",".join(map(str, choices))

    def parse(self, text: str) -> Architecture:
        return self.make([int(x) for x in text.split(",")])


def _lstm(decisions=DECISIONS, skip_links=None, seed: int = 0) -> LSTMController:
    return LSTMController(decisions, skip_links, hidden=16, generator=torch.Generator().manual_seed(seed))


def _vectors(seed: int = 0) -> PolicyVectors:
    policy = PolicyVectors(DECISIONS)
    with torch.no_grad():
        policy.logits.normal_(generator=torch.Generator().manual_seed(seed))
    return policy


@pytest.mark.parametrize("make", [_vectors, _lstm], ids=["vectors", "lstm"])
def test_probabilities_are_distributions(make) -> None:
    probs = make().probabilities()
    assert [len(p) for p in probs] == [d.n_choices for d in DECISIONS]
    for p in probs:
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-6)


def test_policy_vectors_start_uniform() -> None:
    for d, p in zip(DECISIONS, PolicyVectors(DECISIONS).probabilities()):
        np.testing.assert_allclose(p, np.full(d.n_choices, 1.0 / d.n_choices), atol=1e-6)


@pytest.mark.parametrize("make", [_vectors, _lstm, lambda: _lstm(SkipSpace.decisions, SkipSpace().skip_links())],
                         ids=["vectors", "lstm", "lstm-skip"])
def test_log_prob_of_samples_matches_scoring(make) -> None:
    policy = make()
    choices, log_p, entropy = policy.sample(32, torch.Generator().manual_seed(1))
    n_choices = torch.tensor([d.n_choices for d in policy.decisions])
    assert choices.shape == (32, len(policy.decisions)) and bool(((choices >= 0) & (choices < n_choices)).all())
    again, ent_again = policy.score(choices)
    torch.testing.assert_close(log_p, again)
    torch.testing.assert_close(entropy, ent_again)


def test_vector_log_prob_is_sum_of_chosen_log_probabilities() -> None:
    policy = _vectors()
    probs = policy.probabilities()
    choices = torch.tensor([[2, 4, 1, 0], [0, 0, 0, 3]])
    expected = [sum(np.log(probs[i][c]) for i, c in enumerate(row)) for row in choices.tolist()]
    np.testing.assert_allclose(policy.log_prob(choices).detach().numpy(), expected, rtol=1e-5)


def test_vector_sampling_frequencies_follow_the_probabilities() -> None:
    policy = _vectors(3)
    choices, _, _ = policy.sample(20_000, torch.Generator().manual_seed(0))
    for i, p in enumerate(policy.probabilities()):
        freq = np.bincount(choices[:, i].numpy(), minlength=len(p)) / len(choices)
        np.testing.assert_allclose(freq, p, atol=0.015)


@pytest.mark.parametrize("make", [_vectors, _lstm], ids=["vectors", "lstm"])
def test_sampling_is_reproducible_from_the_generator(make) -> None:
    policy = make()
    a = policy.sample(10, torch.Generator().manual_seed(5))[0]
    b = policy.sample(10, torch.Generator().manual_seed(5))[0]
    c = policy.sample(10, torch.Generator().manual_seed(6))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_inactive_decisions_do_not_count() -> None:
    policy = _vectors()
    choices = torch.tensor([[1, 2, 0, 3], [1, 2, 1, 0]])  # differ only in decisions 2 and 3
    active = torch.tensor([[True, True, False, False]] * 2)
    log_p, entropy = policy.score(choices, active)
    assert log_p[0].item() == pytest.approx(log_p[1].item())
    full_entropy = policy.score(choices)[1]
    assert entropy[0].item() < full_entropy[0].item()
    probs = policy.probabilities()
    assert log_p[0].item() == pytest.approx(np.log(probs[0][1]) + np.log(probs[1][2]), rel=1e-5)


def test_inactive_decisions_get_no_gradient() -> None:
    policy = _vectors()
    learner = PolicyGradient(policy, lr=0.1)
    before = policy.logits.detach().clone()
    choices = torch.tensor([[0, 1, 1, 2], [1, 3, 0, 1], [2, 0, 1, 3]])
    active = torch.tensor([[True, True, False, True]] * 3)
    learner.update(choices, [1.0, 5.0, 3.0], active)
    learner.update(choices, [4.0, 2.0, 0.0], active)
    assert torch.equal(policy.logits[2], before[2]), "an inactive decision's vector moved"
    assert not torch.equal(policy.logits[1], before[1])


def test_skip_links_use_anchor_attention() -> None:
    space = SkipSpace()
    policy = _lstm(space.decisions, space.skip_links())
    kinds = [step[0] for step in policy.plan]
    assert kinds == ["decide", "decide", "anchor", "skip", "decide", "skip"]
    assert set(policy.heads) == {"0", "1", "3"}, "skip decisions must not have softmax heads"
    # Replay the LSTM outputs and check p(link j -> i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i)).
    outputs: list[torch.Tensor] = []
    policy.cell.register_forward_hook(lambda mod, inp, out: outputs.append(out[0]))
    trace = policy.trace(1)
    h = {"anchor0": outputs[2], "layer1": outputs[3], "layer2": outputs[5]}
    h["anchor1"] = h["layer1"]

    def link(src: torch.Tensor, dst: torch.Tensor) -> float:
        return torch.sigmoid(policy.v(torch.tanh(policy.w_prev(src) + policy.w_curr(dst)))).item()

    assert trace.probs[2][0, 1].item() == pytest.approx(link(h["anchor0"], h["layer1"]), rel=1e-5)
    assert trace.probs[4][0, 1].item() == pytest.approx(link(h["anchor0"], h["layer2"]), rel=1e-5)
    assert trace.probs[5][0, 1].item() == pytest.approx(link(h["anchor1"], h["layer2"]), rel=1e-5)


def test_attention_weights_learn_the_skip_links() -> None:
    space = SkipSpace()
    policy = _lstm(space.decisions, space.skip_links())
    learner = PolicyGradient(policy, lr=0.05)
    gen = torch.Generator().manual_seed(0)
    v_before = policy.v.weight.detach().clone()
    for _ in range(60):
        choices, _, _ = policy.sample(8, gen)
        learner.update(choices, choices[:, 4].tolist())  # reward: link 0 -> 2 present
    assert not torch.equal(policy.v.weight, v_before)
    assert policy.probabilities()[4][1] > 0.9


def test_bad_skip_links_are_rejected() -> None:
    with pytest.raises(ValueError, match="from_layer < to_layer"):
        _lstm(SkipSpace.decisions, {2: (0, 1)})
    with pytest.raises(ValueError, match="2 options"):
        _lstm(SkipSpace.decisions, {0: (1, 0)})


@pytest.mark.parametrize("make", [_vectors, _lstm], ids=["vectors", "lstm"])
def test_learner_moves_probability_to_the_rewarded_option(make) -> None:
    policy = make()
    learner = PolicyGradient(policy, lr=0.05)
    gen = torch.Generator().manual_seed(0)
    start = policy.probabilities()[1][3]
    for _ in range(80):
        choices, _, _ = policy.sample(6, gen)
        learner.update(choices, (choices[:, 1] == 3).float().tolist())
    assert policy.probabilities()[1][3] > max(0.8, start)


@pytest.mark.parametrize("norm", ["rank", "zscore"])
def test_normalised_updates_ignore_the_reward_scale(norm: str) -> None:
    rng = np.random.default_rng(0)
    batches = [(torch.as_tensor(rng.integers(0, [3, 5, 2, 4], size=(4, 4))), rng.normal(size=4)) for _ in range(10)]
    a, b = PolicyVectors(DECISIONS), PolicyVectors(DECISIONS)
    la, lb = PolicyGradient(a, lr=0.1, reward_norm=norm), PolicyGradient(b, lr=0.1, reward_norm=norm)
    for choices, rewards in batches:
        la.update(choices, rewards)
        lb.update(choices, 1000.0 * rewards + 37.0)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-5)


def test_rank_normalisation_is_mid_rank_in_unit_interval() -> None:
    learner = PolicyGradient(PolicyVectors(DECISIONS), lr=0.1)
    np.testing.assert_allclose(learner.normalise([3.0, 1.0, 2.0, 2.0]), [7 / 8, 1 / 8, 4 / 8, 4 / 8])


def test_learner_copy_continues_exactly() -> None:
    policy = _lstm()
    learner = PolicyGradient(policy, lr=0.05, entropy_weight=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        choices, _, _ = policy.sample(4, gen)
        learner.update(choices, choices[:, 0].float().tolist())
    twin = copy.deepcopy(learner)
    assert twin.optimizer.param_groups[0]["params"][0] is next(twin.policy.parameters())
    for lrn in (learner, twin):
        choices, _, _ = lrn.policy.sample(4, copy.deepcopy(gen))
        lrn.update(choices, choices[:, 1].float().tolist())
    for p, q in zip(learner.policy.parameters(), twin.policy.parameters()):
        assert torch.equal(p, q)


def test_strategies_sample_from_a_nonuniform_policy_without_global_rng() -> None:
    space = nf.create_space("toy")
    torch.manual_seed(0)
    a = nf.create_strategy("reinforce", space, 4).ask(5)
    torch.manual_seed(123)
    b = nf.create_strategy("reinforce", space, 4).ask(5)
    assert a == b, "the controller must not depend on torch's global RNG"


@pytest.mark.parametrize("name", ["ednas", "reinforce"])
def test_warmup_results_leave_the_policy_untouched(name: str) -> None:
    space = nf.create_space("toy")
    strategy = nf.create_strategy(name, space, 0, warmup=6, batch_size=2)
    before = copy.deepcopy(strategy.policy.state_dict())

    def step(n: int) -> None:
        archs = strategy.ask(n)
        strategy.tell(archs, [nf.Result(float(i)) for i in range(n)])

    step(6)
    for key, value in strategy.policy.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} moved during the warm-up"
    step(2)
    assert any(not torch.equal(v, before[k]) for k, v in strategy.policy.state_dict().items())
    with pytest.raises(nf.NasforgeError, match="warmup"):
        nf.create_strategy(name, space, 0, warmup=-1)
