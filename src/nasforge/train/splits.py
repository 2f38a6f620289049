"""Training, validation and test sets carved from an :class:`~nasforge.train.readers.ImageData`.

Images stay raw pixel values (``uint8`` for photographs) and are turned into normalised float
tensors one batch at a time by :class:`Normalise`, so that CIFAR-10 takes 180 MB, not 740 MB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .readers import ImageData


@dataclass
class DataConfig:
    """How the training images are split for a search or a final training.

    ``val_size`` below 1 is a fraction of the training images, from 1 on a count; 0 trains on all of
    them (final training). ``fraction`` keeps only part of the remaining training images (a cheaper
    proxy); the validation and test images are always used in full so that rewards stay comparable.
    ``resolution`` (pixels, 0 = the data set's own) shrinks every image by area averaging: another
    proxy, about ``(H / resolution)^2`` times cheaper for convolutional networks.
    """

    val_size: float = 0.1  # validation split: a fraction of the training images below 1, a count from 1, 0 for none
    split_seed: int = 0  # seed of the train/validation split (the same split for every architecture)
    fraction: float = 1.0  # part of the remaining training images used (a cheaper proxy)
    resolution: int = 0  # shrink images to this side in pixels by area averaging (0: the data set's own)

    def __post_init__(self) -> None:
        if self.val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {self.val_size}")
        if not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.resolution < 0:
            raise ValueError(f"resolution must be >= 0 (0 keeps the images' size), got {self.resolution}")

    def data_config(self) -> DataConfig:
        """Just the data fields (of a config class that extends this one)."""
        return DataConfig(**{f: getattr(self, f) for f in DataConfig.__dataclass_fields__})


@dataclass
class TensorSet:
    """Raw images and labels as tensors (normalised per batch by :class:`Normalise`)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])


class Normalise:
    """Raw pixels to float tensors with zero mean and unit variance per channel."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, max_value: float) -> None:
        self.mean = mean.view(1, -1, 1, 1).float()
        self.std = std.view(1, -1, 1, 1).float()
        self.max_value = float(max_value)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / self.max_value
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def describe(self) -> dict[str, Any]:
        """What a deployed model's input must go through, as plain data (saved with exported models)."""
        return {"mean": [round(float(v), 6) for v in self.mean.flatten()],
                "std": [round(float(v), 6) for v in self.std.flatten()],
                "pixel_scale": self.max_value,
                "formula": "(pixels / pixel_scale - mean) / std, per channel, NCHW"}


@dataclass
class Splits:
    """Training, validation (possibly empty) and test sets with the normalisation of the training set."""

    train: TensorSet
    val: TensorSet
    test: TensorSet
    normalise: Normalise
    classes: tuple[str, ...]
    flip: bool

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.train.x.shape[1:])  # type: ignore[return-value]


#: images per block of :func:`channel_stats`' histograms
STATS_BLOCK = 2048


def channel_stats(x: np.ndarray, max_value: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``(N, C, H, W)`` pixels scaled to [0, 1]."""
    mean, std = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i in range(x.shape[1]):
        channel = x[:, i]
        if channel.dtype == np.uint8:
            # A histogram of the 256 values is exact and avoids a float copy of CIFAR-10 (400 MB a channel); counted
            # in blocks, since bincount makes a 64-bit copy of what it counts (7x slower on all of CIFAR-10 at once).
            counts = sum((np.bincount(channel[start:start + STATS_BLOCK].ravel(), minlength=256)
                          for start in range(0, len(channel), STATS_BLOCK)), np.zeros(256, dtype=np.int64))
            values = np.arange(256) / max_value
            mean[i] = (counts * values).sum() / counts.sum()
            std[i] = np.sqrt((counts * (values - mean[i]) ** 2).sum() / counts.sum())
        else:
            scaled = channel.astype(np.float64) / max_value
            mean[i], std[i] = scaled.mean(), scaled.std()
    return mean, np.maximum(std, 1e-6)


def make_splits(data: ImageData, config: DataConfig | None = None) -> Splits:
    """Carve a stratified validation split (seeded by ``config.split_seed``) from the training images."""
    from sklearn.model_selection import train_test_split  # where used: see nasforge.predictors.gp

    config = config or DataConfig()
    n = len(data.train_y)
    idx = np.arange(n)
    n_val = round(config.val_size * n) if config.val_size < 1 else int(config.val_size)
    if n_val >= n:
        raise ConfigError(f"data.val_size: {config.val_size} leaves no training images out of {n}")
    if n_val > 0:
        stratify = data.train_y if n_val >= data.num_classes and n - n_val >= data.num_classes else None
        train_idx, val_idx = train_test_split(
            idx, test_size=n_val, random_state=config.split_seed, stratify=stratify
        )
    else:
        train_idx, val_idx = idx, idx[:0]
    if config.fraction < 1:
        keep = max(round(config.fraction * len(train_idx)), data.num_classes)
        rng = np.random.default_rng(config.split_seed)
        train_idx = np.sort(rng.choice(train_idx, size=min(keep, len(train_idx)), replace=False))
    train_x = data.train_x[train_idx]  # one copy for the statistics and the tensors
    mean, std = channel_stats(train_x, data.max_value)
    size = config.resolution

    def tensors(x: np.ndarray, y: np.ndarray) -> TensorSet:
        images = torch.from_numpy(np.ascontiguousarray(x))
        if size and tuple(images.shape[-2:]) != (size, size):
            images = resize(images, size)
        return TensorSet(images, torch.from_numpy(y.astype(np.int64)))

    return Splits(
        train=tensors(train_x, data.train_y[train_idx]),
        val=tensors(data.train_x[val_idx], data.train_y[val_idx]),
        test=tensors(data.test_x, data.test_y),
        normalise=Normalise(torch.from_numpy(mean), torch.from_numpy(std), data.max_value),
        classes=data.classes,
        flip=data.flip,
    )


def resize(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """``(N, C, H, W)`` images to ``size`` x ``size`` by area averaging, keeping their dtype (in chunks:
    a float copy of all of CIFAR-10 would need 600 MB)."""
    parts = []
    for start in range(0, len(images), chunk):
        block = torch.nn.functional.interpolate(images[start:start + chunk].float(), size=(size, size), mode="area")
        parts.append(block.round().to(images.dtype) if not images.dtype.is_floating_point else block)
    return torch.cat(parts) if parts else images.reshape(0, images.shape[1], size, size)
