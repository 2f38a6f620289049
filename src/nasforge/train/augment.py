"""Batch augmentation on tensors, seeded by an explicit :class:`torch.Generator`.

The standard CIFAR recipe (random crop with zero padding, horizontal flip, cutout of DeVries &
Taylor 2017) applied to a whole normalised batch at once, so no per-image Python loop and no
global random state.
"""

from __future__ import annotations

import torch

#: ``(n, part)``: the rows ``part`` of a batch of ``n`` images, or None for the whole batch
Rows = tuple[int, slice] | None


def _drawn(b: int, rows: Rows) -> tuple[int, slice | None]:
    """How many random draws (the whole batch's) and which of them apply to these ``b`` images."""
    if rows is None:
        return b, None
    n, part = rows
    if part.stop - part.start != b:
        raise ValueError(f"rows {part.start}:{part.stop} of {n} do not match a batch of {b} images")
    return n, part


def _uniform_ints(high: int, n: int, generator: torch.Generator, device: torch.device,
                  rows: slice | None = None) -> torch.Tensor:
    drawn = torch.randint(0, high, (n,), generator=generator)
    return (drawn if rows is None else drawn[rows]).to(device)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator, rows: Rows = None) -> torch.Tensor:
    """Pad each image of ``(B, C, H, W)`` with zeros and cut a random ``H x W`` window from it."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    n, part = _drawn(b, rows)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = _uniform_ints(2 * padding + 1, n, generator, x.device, part)
    dx = _uniform_ints(2 * padding + 1, n, generator, x.device, part)
    row_idx = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, row_idx, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5, rows: Rows = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    n, part = _drawn(x.shape[0], rows)
    flip = torch.rand(n, generator=generator) < p
    flip = (flip if part is None else flip[part]).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, rows: Rows = None) -> torch.Tensor:
    """Zero a ``size x size`` square per image, centred anywhere in the image (clipped at the border)."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    n, part = _drawn(b, rows)
    cy = _uniform_ints(h, n, generator, x.device, part)[:, None, None]
    cx = _uniform_ints(w, n, generator, x.device, part)[:, None, None]
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    half = size // 2
    hole = (ys >= cy - half) & (ys < cy - half + size) & (xs >= cx - half) & (xs < cx - half + size)
    return x.masked_fill(hole[:, None], 0.0)


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, *, padding: int = 0, flip: bool = False, cutout_size: int = 0,
    rows: Rows = None,
) -> torch.Tensor:
    """Crop, flip and cutout, in the usual order (cutout last, on the normalised image).

    ``rows = (n, part)``: ``x`` holds the rows ``part`` of a batch of ``n`` images (a data-parallel replica's
    share); the random numbers are drawn for all ``n``, as for the whole batch, so that every replica's generator
    stays alike and each row gets what it would get in the whole batch."""
    x = random_crop(x, padding, generator, rows)
    if flip:
        x = random_flip(x, generator, rows=rows)
    return cutout(x, cutout_size, generator, rows)
