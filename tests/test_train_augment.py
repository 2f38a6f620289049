"""Augmentation: random crop, flip and cutout, seeded by a generator."""

from __future__ import annotations

import pytest
import torch

from nasforge.train import augment as aug


def _batch(n: int = 6, c: int = 2, h: int = 8, w: int = 8) -> torch.Tensor:
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) + 1  # no zeros


def test_random_crop_is_a_window_of_the_padded_image():
    x = _batch()
    out = aug.random_crop(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], wnd) for wnd in windows)
    assert torch.equal(aug.random_crop(x, 0, torch.Generator()), x)
    shifted = [not torch.equal(out[i], x[i]) for i in range(len(x))]
    assert any(shifted)


def test_flip_and_cutout():
    x = _batch()
    assert torch.equal(aug.random_flip(x, torch.Generator(), p=1.0), x.flip(3))
    assert torch.equal(aug.random_flip(x, torch.Generator(), p=0.0), x)
    mixed = aug.random_flip(x, torch.Generator().manual_seed(3))
    assert all(torch.equal(m, a) or torch.equal(m, a.flip(2)) for m, a in zip(mixed, x))
    out = aug.cutout(x, 4, torch.Generator().manual_seed(0))
    holes = (out == 0).all(dim=1)  # the same pixels of every channel
    per_image = holes.flatten(1).sum(1)
    assert bool(((per_image >= 4) & (per_image <= 16)).all())  # a 4x4 square, clipped at the border
    assert torch.equal(out[~(out == 0)], x[~(out == 0)])


def test_augmentation_is_seeded_by_its_generator():
    x = _batch(32)

    def run(seed: int) -> torch.Tensor:
        return aug.augment_batch(x, torch.Generator().manual_seed(seed), padding=2, flip=True, cutout_size=3)

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_a_replicas_rows_get_what_they_get_in_the_whole_batch() -> None:
    """Data-parallel: augmenting rows 3:7 of a batch of 10 (drawing the whole batch's numbers) gives those rows of
    the whole batch's augmentation, and leaves the generator where the whole batch leaves it."""
    x = torch.randn(10, 3, 8, 8)
    whole_gen, part_gen = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    whole = aug.augment_batch(x, whole_gen, padding=2, flip=True, cutout_size=3)
    part = aug.augment_batch(x[3:7], part_gen, padding=2, flip=True, cutout_size=3, rows=(10, slice(3, 7)))
    assert torch.equal(part, whole[3:7])
    assert torch.equal(whole_gen.get_state(), part_gen.get_state())
    with pytest.raises(ValueError, match="rows 3:7 of 10"):
        aug.augment_batch(x[3:6], part_gen, padding=2, rows=(10, slice(3, 7)))
