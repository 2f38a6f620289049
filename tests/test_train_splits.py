"""Splits of a data set: stratified validation split, fraction, normalisation, resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasforge.errors import ConfigError
from nasforge.train import splits as S
from nasforge.train.readers import load_dataset


def test_split_sizes_disjointness_and_seed():
    data = load_dataset("digits")
    s = S.make_splits(data, S.DataConfig(val_size=0.2, split_seed=1))
    n = len(data.train_y)
    assert len(s.val) == round(0.2 * n) and len(s.train) + len(s.val) == n and len(s.test) == 360
    flat = data.train_x.reshape(n, -1)
    rows = {r.tobytes(): i for i, r in enumerate(flat)}  # identify images by content
    train_ids = {rows[x.numpy().tobytes()] for x in s.train.x}
    val_ids = {rows[x.numpy().tobytes()] for x in s.val.x}
    assert not train_ids & val_ids
    same = S.make_splits(data, S.DataConfig(val_size=0.2, split_seed=1))
    other = S.make_splits(data, S.DataConfig(val_size=0.2, split_seed=2))
    assert torch.equal(same.val.y, s.val.y) and torch.equal(same.val.x, s.val.x)
    assert not torch.equal(other.val.x, s.val.x)
    counts = np.bincount(s.val.y.numpy(), minlength=10)
    assert counts.min() >= 27 and counts.max() <= 31  # stratified


def test_split_counts_fraction_and_full_training():
    data = load_dataset("digits")
    s = S.make_splits(data, S.DataConfig(val_size=100, fraction=0.5))
    assert len(s.val) == 100 and len(s.train) == round(0.5 * (len(data.train_y) - 100))
    full = S.make_splits(data, S.DataConfig(val_size=0))
    assert len(full.val) == 0 and len(full.train) == len(data.train_y)
    with pytest.raises(ConfigError, match="val_size"):
        S.make_splits(data, S.DataConfig(val_size=len(data.train_y)))
    with pytest.raises(ValueError, match="fraction"):
        S.DataConfig(fraction=0)


def test_normalisation_uses_training_statistics():
    s = S.make_splits(load_dataset("digits"), S.DataConfig(val_size=0.1))
    x = s.normalise(s.train.x)
    assert x.dtype == torch.float32 and x.shape == s.train.x.shape
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3


def test_resolution_shrinks_every_split_by_area_averaging():
    data = load_dataset("digits")
    s = S.make_splits(data, S.DataConfig(val_size=0.1, resolution=4))
    assert s.train.x.shape[1:] == s.val.x.shape[1:] == s.test.x.shape[1:] == (1, 4, 4)
    # Each 2x2 block becomes its mean (rounded: the images stay integers).
    full = S.make_splits(data, S.DataConfig(val_size=0.1))
    assert s.train.x.dtype == full.train.x.dtype
    block = full.test.x[0, 0, :2, :2].float().mean()
    assert abs(float(s.test.x[0, 0, 0, 0]) - float(block)) <= 0.5
    assert S.resize(full.test.x[:0], 4).shape == (0, 1, 4, 4)
    with pytest.raises(ValueError, match="resolution"):
        S.DataConfig(resolution=-1)
