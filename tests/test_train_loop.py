"""The one training loop: learning, seeding, schedules, clipping, auxiliary heads, drop-path, failures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nasforge import train as D
from nasforge.api import create_space
from nasforge.errors import ConfigError
from nasforge.train.loop import (
    Progress,
    TrainConfig,
    accuracy,
    build_model,
    fit,
    resolve_device,
    train_and_evaluate,
    train_architecture,
)


class TinyNet(nn.Module):
    """A stand-in model of the build contract: logits, optional auxiliary head, drop-path attribute."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, auxiliary: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(256, num_classes)
        self.aux = nn.Linear(256, num_classes) if auxiliary else None
        self.drop_path_prob = 0.0

    def forward(self, x: torch.Tensor):
        h = self.pool(self.features(x)).flatten(1)
        if self.aux is not None and self.training:
            return self.head(h), self.aux(h)
        return self.head(h)


class NanNet(TinyNet):
    def forward(self, x: torch.Tensor):
        return super().forward(x) * float("nan")


@pytest.fixture(scope="module")
def splits() -> D.Splits:
    return D.make_splits(D.load_dataset("digits"), D.DataConfig(val_size=0.1))


def _model(seed: int = 0, **kwargs) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(**kwargs)


def _fit(model, splits, seed=0, callback=None, **config):
    return fit(model, splits.train, splits.normalise, TrainConfig(**config),
               generator=torch.Generator().manual_seed(seed), flip=splits.flip, callback=callback)


def test_training_learns_digits(splits):
    model = _model()
    before = accuracy(model, splits.test, splits.normalise)
    out = train_and_evaluate(model, splits, TrainConfig(epochs=8, lr=0.1), seed=0)
    assert not out.train.failed and out.train.epochs == 8 and len(out.train.history) == 8
    assert out.test_accuracy > 0.85 > before + 0.3
    assert out.val_accuracy > 0.85
    assert out.train.history[-1]["loss"] < out.train.history[0]["loss"]
    assert out.train.time_s > 0


def test_same_seed_same_weights_other_seed_other_weights(splits):
    def trained(seed: int) -> list[torch.Tensor]:
        model = _model()
        _fit(model, splits, seed=seed, epochs=1)
        return [p.detach().clone() for p in model.parameters()]

    a, b, c = trained(3), trained(3), trained(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


class DropNet(TinyNet):
    """Dropout draws from torch's global generator (no generator argument)."""

    def forward(self, x: torch.Tensor):
        return nn.functional.dropout(super().forward(x), 0.5, self.training)


def test_same_seed_same_losses_whatever_ran_before(splits):
    def losses(global_seed: int) -> list[float]:
        model = DropNet()
        model.load_state_dict(_model().state_dict())
        torch.manual_seed(global_seed)  # what ran before fit
        return [h["loss"] for h in _fit(model, splits, seed=3, epochs=2).history]

    assert losses(1) == losses(2)
    model = DropNet()
    before = torch.random.get_rng_state()
    _fit(model, splits, seed=3, epochs=1)
    assert torch.equal(before, torch.random.get_rng_state()), "fit leaves the caller's global generator alone"


def test_progress_callback_and_cosine_schedule(splits):
    events: list[Progress] = []
    _fit(_model(), splits, callback=events.append, epochs=2, lr=0.1, lr_min=0.002)
    steps = events[0].steps
    assert len(events) == 2 * steps and steps == math.ceil(len(splits.train) / 64)
    assert [e.epoch for e in events] == [1] * steps + [2] * steps
    assert sum(e.end_of_epoch for e in events) == 2
    lrs = [e.lr for e in events]
    assert lrs[0] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(0.002, abs=1e-3)
    assert all(0 <= e.accuracy <= 1 and e.loss > 0 for e in events)


def test_warm_restarts_return_to_the_initial_rate(splits):
    events: list[Progress] = []
    _fit(_model(), splits, callback=events.append, epochs=3, lr=0.05, lr_min=0.001, restart_period=1)
    steps = events[0].steps
    firsts = [events[k * steps].lr for k in range(3)]
    lasts = [events[k * steps + steps - 1].lr for k in range(3)]
    assert firsts == pytest.approx([0.05] * 3)
    assert all(x < 0.005 for x in lasts)


def test_gradient_clipping_bounds_the_step(splits):
    small = D.Splits(D.TensorSet(splits.train.x[:64], splits.train.y[:64]), splits.val, splits.test,
                     splits.normalise, splits.classes, splits.flip)
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    _fit(model, small, epochs=1, batch_size=64, lr=0.5, momentum=0.0, weight_decay=0.0, grad_clip=1e-4)
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert 0 < float(moved) <= 0.5 * 1e-4 * 1.001


def test_auxiliary_head_is_trained_only_with_a_weight(splits):
    def aux_change(weight: float) -> float:
        model = _model(auxiliary=True)
        before = model.aux.weight.detach().clone()
        _fit(model, splits, epochs=1, auxiliary_weight=weight, weight_decay=0.0)
        return float((model.aux.weight.detach() - before).abs().sum())

    assert aux_change(0.0) == 0.0
    assert aux_change(0.4) > 0.0


def test_drop_path_probability_is_scheduled_per_epoch(splits):
    model = _model()
    seen: dict[int, float] = {}
    _fit(model, splits, callback=lambda p: seen.setdefault(p.epoch, model.drop_path_prob),
         epochs=3, drop_path_prob=0.3)
    assert seen == pytest.approx({1: 0.0, 2: 0.1, 3: 0.2})


def test_label_smoothing_raises_the_loss_floor(splits):
    plain = _fit(_model(), splits, epochs=2, lr=0.1)
    smooth = _fit(_model(), splits, epochs=2, lr=0.1, label_smoothing=0.3)
    assert smooth.train_loss > plain.train_loss


def test_nan_loss_is_a_failure_record_not_an_exception(splits):
    out = train_and_evaluate(NanNet(), splits, TrainConfig(epochs=2), seed=0)
    assert out.train.failed and "nan" in out.train.error and "epoch 1, step 1" in out.train.error
    assert out.train.epochs == 0 and math.isnan(out.val_accuracy) and math.isnan(out.test_accuracy)


def test_config_checks_and_device():
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ConfigError, match="device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    empty = D.TensorSet(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    norm = D.Normalise(torch.zeros(1), torch.ones(1), 16.0)
    assert math.isnan(accuracy(TinyNet(), empty, norm))


def test_seeded_build_leaves_the_global_generator_alone():
    space = create_space("nb201")
    arch = space.sample(np.random.default_rng(0))
    state = torch.get_rng_state()
    a = build_model(space, arch, num_classes=10, in_channels=1, seed=7, C=4, N=1)
    b = build_model(space, arch, num_classes=10, in_channels=1, seed=7, C=4, N=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_real_space_trains_end_to_end(splits):
    space = create_space("nb201")
    arch = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    done = train_architecture(space, arch, splits, TrainConfig(epochs=2, lr=0.1), model_args={"C": 4, "N": 1})
    assert done.params > 0 and done.flops > 0
    assert done.outcome.test_accuracy > 0.3  # ten classes: chance is 0.1
