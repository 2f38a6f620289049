"""Model size and cost: parameters and FLOPs of a built network."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (auxiliary heads included when they exist)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: Sequence[int], device: str | torch.device = "cpu") -> int:
    """Floating-point operations of one forward pass on an input of ``input_shape`` (batch included).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` in eval mode (no auxiliary head), as
    2 x multiply-accumulates of matrix products and convolutions.
    """
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(*input_shape, device=device)
        with FlopCounterMode(display=False) as counter:
            model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


@torch.no_grad()
def measure_latency(model: nn.Module, input_shape: Sequence[int], *, warmup: int = 3, repeats: int = 10,
                    device: str | torch.device = "cpu") -> float:
    """Median wall time in milliseconds of one forward pass on an input of ``input_shape`` (batch included).

    Measured in eval mode on ``device`` (the model is moved there and back): ``warmup`` untimed passes first
    (allocations, kernel selection), then the median of ``repeats`` timed ones, which a busy machine's
    stray slow passes do not move much. CUDA work is synchronised before each clock reading.
    """
    import statistics
    import time

    dev = torch.device(device)
    was_training = model.training
    try:
        first = next(model.parameters())
        home: torch.device | None = first.device
    except StopIteration:
        home = None
    model.eval()
    model.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    try:
        x = torch.zeros(*input_shape, device=dev)
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - start)
        return 1000.0 * statistics.median(times)
    finally:
        if home is not None:
            model.to(home)
        model.train(was_training)
