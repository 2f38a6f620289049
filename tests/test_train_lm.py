"""Final training of a recurrent cell as a language model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nasforge as nf
from nasforge.train.lm import LMTrainConfig, train_language_model
from nasforge.train.text import Corpus

SMALL = {"emb_size": 16, "hidden_size": 16, "dropout_embedding": 0.0}


def _corpus() -> Corpus:
    rng = np.random.default_rng(0)
    patterns = ["the cat sat on the mat", "a dog ran to the park", "the bird sang in a tree"]
    lines = {split: [patterns[i] for i in rng.integers(len(patterns), size=n)]
             for split, n in (("train", 200), ("valid", 40), ("test", 40))}
    return Corpus.from_lines(lines["train"], lines["valid"], lines["test"])


def test_training_learns_the_text_and_keeps_the_best_weights() -> None:
    corpus, space = _corpus(), nf.create_space("enas-rnn", nodes=4)
    arch = space.sample(np.random.default_rng(0))
    config = LMTrainConfig(epochs=4, batch_size=8, eval_batch_size=4, bptt=10, lr=5.0)
    state = torch.get_rng_state()
    done = train_language_model(space, arch, corpus, config, model_args=SMALL, seed=0)
    assert torch.equal(torch.get_rng_state(), state), "training must not move torch's global generator"
    assert not done.failed and done.epochs == 4 and len(done.history) == 4
    valid = [r["valid_perplexity"] for r in done.history]
    assert done.valid_perplexity == min(valid) < corpus.vocab_size / 2
    assert math.isfinite(done.test_perplexity) and done.test_perplexity < corpus.vocab_size / 2
    # An epoch that did not improve divides the learning rate by lr_decay for the next.
    again = train_language_model(space, arch, corpus, config, model_args=SMALL, seed=0)
    assert [r["valid_perplexity"] for r in again.history] == valid  # same seed, same run


def test_an_epoch_without_improvement_divides_the_lr_and_the_best_weights_are_kept(monkeypatch) -> None:
    import nasforge.train.lm as lm

    corpus, space = _corpus(), nf.create_space("enas-rnn", nodes=3)
    arch = space.sample(np.random.default_rng(0))
    valid = iter([10.0, 12.0, 9.0, 9.0])
    kept: list[float] = []

    def fake_perplexity(model, data, *args):
        if data is corpus.test:  # scored once, with the weights kept
            return float(sum(float(p.detach().sum()) for p in model.parameters()))
        kept.append(sum(float(p.detach().sum()) for p in model.parameters()))
        return next(valid)

    monkeypatch.setattr(lm, "evaluate_perplexity", fake_perplexity)
    config = LMTrainConfig(epochs=4, batch_size=8, eval_batch_size=4, bptt=10, lr=5.0, lr_decay=4.0)
    done = train_language_model(space, arch, corpus, config, model_args=SMALL, seed=0)
    assert [r["lr"] for r in done.history] == [5.0, 5.0, 1.25, 1.25]
    assert done.valid_perplexity == 9.0
    assert done.test_perplexity == pytest.approx(kept[2])  # epoch 3's weights: the first to reach 9


def test_a_diverging_run_is_reported_not_raised() -> None:
    corpus, space = _corpus(), nf.create_space("enas-rnn", nodes=3)
    arch = space.sample(np.random.default_rng(1))
    config = LMTrainConfig(epochs=2, batch_size=8, eval_batch_size=4, bptt=10, lr=1e30, clip=0)
    done = train_language_model(space, arch, corpus, config, model_args={**SMALL, "max_hidden_norm": 0}, seed=0)
    assert done.failed and "loss became" in done.error and math.isnan(done.test_perplexity)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"lr": 0}, {"lr_decay": 0.5}, {"clip": -1}])
def test_bad_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        LMTrainConfig(**bad)
