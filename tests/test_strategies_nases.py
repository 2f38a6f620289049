"""NASES: the pre-trained autoencoder reconstructs architectures, pre-training is cached, and the
Gaussian policy in the embedding space proposes new architectures and learns from rewards."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nasforge.run.loop import run_search
from nasforge.strategies import nases
from nasforge.strategies.nases import NASES, NASESConfig, load_or_pretrain, reconstruction_rate
from nasforge.testing.conformance import TOY_BUDGET
from nasforge.testing.toy import ToyEvaluator, ToySpace, toy_optimum, toy_reward

# small enough to pre-train in seconds on one core, large enough to reconstruct the toy space
SMALL = dict(hidden=32, pretrain_steps=300, pretrain_lr=0.01, pretrain_archs=1024)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nases-cache")


@pytest.fixture(scope="module")
def config(cache: Path) -> NASESConfig:
    return NASESConfig(cache_dir=str(cache), **SMALL)


@pytest.fixture(scope="module")
def pretrained(config: NASESConfig):
    return load_or_pretrain(ToySpace(), config)


def test_decoder_reconstructs_most_sampled_architectures(pretrained) -> None:
    simulator, decoder, info = pretrained
    assert info["reconstruction"] >= 0.8, "held-out reconstruction measured after pre-training"
    space = ToySpace()
    rng = np.random.default_rng(2024)
    fresh = [space.sample(rng) for _ in range(300)]
    assert reconstruction_rate(space, simulator, decoder, fresh) >= 0.8
    with torch.no_grad():
        z = simulator(nases.tokens(space, fresh[:5]))
    assert z.shape == (5, 16) and float(z.abs().max()) <= 1.0


def test_pretraining_is_cached_per_space_and_pretraining_config(pretrained, config: NASESConfig, cache: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    files = list((cache / "nases").glob("toy-*"))
    assert [f.suffix for f in files] == [".npz"]
    with np.load(files[0], allow_pickle=False) as saved:  # plain arrays and JSON text: nothing to unpickle
        assert json.loads(str(saved["info.json"]))["reconstruction"] == pretrained[2]["reconstruction"]
        assert all(saved[k].dtype != object for k in saved.files)

    def fail(*args, **kwargs):
        raise AssertionError("pre-training ran again")

    monkeypatch.setattr(nases, "pretrain", fail)
    again = NASES(ToySpace(), NASESConfig(cache_dir=str(cache), sigma=0.7, lr=0.05, **SMALL), seed=3)
    for a, b in zip(again.decoder.state_dict().values(), pretrained[1].state_dict().values()):
        assert torch.equal(a, b)
    space = ToySpace()
    assert nases.cache_key(space, config) == nases.cache_key(space, NASESConfig(sigma=0.9, **SMALL))
    assert nases.cache_key(space, config) != nases.cache_key(space, NASESConfig(**{**SMALL, "hidden": 48}))


class _Payload:
    """Pickled, it would create ``marker`` when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_cache_file_is_never_unpickled(tmp_path: Path, pretrained, config: NASESConfig,
                                         caplog: pytest.LogCaptureFixture) -> None:
    tiny = NASESConfig(cache_dir=str(tmp_path), **{**SMALL, "pretrain_steps": 1})
    path = tmp_path / "nases" / f"toy-{nases.cache_key(ToySpace(), tiny)}.npz"
    path.parent.mkdir()
    marker = tmp_path / "executed"
    path.write_bytes(pickle.dumps({"simulator": _Payload(marker)}))
    _, _, info = load_or_pretrain(ToySpace(), tiny)
    assert not marker.exists() and "unreadable cached autoencoder" in caplog.text
    assert load_or_pretrain(ToySpace(), tiny)[2] == info, "the damaged file was replaced by the new pre-training"


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NASFORGE_CACHE", str(tmp_path))
    assert nases.default_cache_dir() == tmp_path
    monkeypatch.delenv("NASFORGE_CACHE")
    assert nases.default_cache_dir() == Path.home() / ".cache" / "nasforge"


def test_creating_the_strategy_leaves_the_global_torch_generator_alone(pretrained, config: NASESConfig) -> None:
    before = torch.random.get_rng_state()
    NASES(ToySpace(), config, seed=0)
    assert torch.equal(before, torch.random.get_rng_state())


def test_controller_starts_as_the_simulator(pretrained, config: NASESConfig) -> None:
    strategy = NASES(ToySpace(), config, seed=0)
    for a, b in zip(strategy.controller.mean.state_dict().values(), pretrained[0].state_dict().values()):
        assert torch.equal(a, b)
    assert torch.allclose(strategy.controller.log_sigma.exp(), torch.full((16,), config.sigma))


def test_search_proposes_new_architectures_and_learns(pretrained, config: NASESConfig) -> None:
    space = ToySpace()
    strategy = NASES(space, config, seed=1)
    start = [p.detach().clone() for p in strategy.controller.parameters()]
    record = run_search(space, strategy, ToyEvaluator(space), 120, seed=1)
    archs = [t.arch for t in record.trials]
    assert len(set(archs)) == len(archs), "no architecture is proposed twice"
    assert any(not torch.equal(a, b) for a, b in zip(start, strategy.controller.parameters()))
    rng = np.random.default_rng(0)
    uniform = np.mean([toy_reward(space, space.sample(rng).choices) for _ in range(300)])
    guided = np.mean([t.reward for t in record.trials[config.initial_samples:60]])
    assert guided > uniform + 5.0, "the policy proposes better architectures than uniform sampling"
    assert toy_optimum(space) in archs or max(t.reward for t in record.trials) > 95.0


def test_advantages_are_centred_quantile_ranks(config: NASESConfig) -> None:
    strategy = NASES(ToySpace(), config, seed=0)
    strategy.rewards = [1.0, 5.0, 3.0, 3.0, 1000.0]
    adv = strategy._advantages([1.0, 3.0, 1000.0])
    assert np.allclose(adv, [-0.5, -0.5 + 1.5 / 4, 0.5])


def test_state_round_trip_keeps_the_policy(pretrained, config: NASESConfig) -> None:
    space = ToySpace()
    evaluator = ToyEvaluator(space)
    original = NASES(space, config, seed=5)
    run_search(space, original, evaluator, 40, seed=5)
    copy = NASES(space, config, seed=99)
    copy.load_state_dict(original.state_dict())
    for _ in range(15):
        a, b = original.ask(2), copy.ask(2)
        assert a == b
        results = [evaluator.evaluate(x) for x in a]
        original.tell(a, results)
        copy.tell(b, results)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_an_evaluated_neighbourhood_is_left_through_the_decoder(pretrained, config: NASESConfig, seed: int) -> None:
    """When every sampled embedding decodes to an architecture seen before, the proposal is the decoder's next
    most likely one, next to the incumbent, not a uniform sample from anywhere in the space."""
    space = ToySpace()
    strategy = NASES(space, config, seed=seed)
    run_search(space, strategy, ToyEvaluator(space), 20, seed=seed)
    incumbent = strategy.best[0]
    near = next(a for a in space.neighbours(incumbent) if strategy.sampler.is_new(a))  # one decision away
    far = space.make([(c + 1) % d.n_choices for c, d in zip(incumbent.choices, space.decisions)])
    assert strategy.sampler.is_new(far)
    everything = [space.make(c) for c in np.ndindex(*[d.n_choices for d in space.decisions])]
    strategy.sampler.mark([a for a in everything if a not in (near, far)])
    assert strategy.ask(1) == [near]


def test_finds_the_toy_optimum_with_another_autoencoder(pretrained, config: NASESConfig) -> None:
    """The conformance suite's bound with a differently pre-trained autoencoder (as another machine's floating-point
    kernels give one): the search must not depend on one lucky pre-training."""
    space = ToySpace()
    for seed in (0, 1, 2):
        record = run_search(space, NASES(space, config, seed=seed), ToyEvaluator(space), TOY_BUDGET, seed=seed)
        assert toy_optimum(space) in [t.arch for t in record.trials], f"seed {seed}"
