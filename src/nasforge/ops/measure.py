"""Model size and cost: parameters and FLOPs of a built network."""

from __future__ import annotations

import statistics
import time
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
                    device: str | torch.device = "cpu", clock: str = "wall") -> float:
    """Median wall time in milliseconds of one forward pass on an input of ``input_shape`` (batch included).

    Measured in eval mode on ``device`` (the model is moved there and back): ``warmup`` untimed passes first
    (allocations, kernel selection), then the median of ``repeats`` timed ones, which a busy machine's
    stray slow passes do not move much. CUDA work is synchronised before each clock reading.

    ``clock="cpu"`` times the process's CPU time instead of the wall clock (CPU devices only): on a machine
    that other work keeps busy, a wall-clock pass includes the time the process waited for a core, while its CPU
    time is what the pass would take alone. With one torch thread the two agree on an idle machine (with
    several, CPU time adds up the threads' work).
    """
    dev = torch.device(device)
    if clock not in ("wall", "cpu") or (clock == "cpu" and dev.type != "cpu"):
        raise ValueError(f"clock must be 'wall', or 'cpu' on a CPU device; got {clock!r} on {dev}")
    now = time.perf_counter if clock == "wall" else time.process_time
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
            start = now()
            model(x)
            sync()
            times.append(now() - start)
        return 1000.0 * statistics.median(times)
    finally:
        if home is not None:
            model.to(home)
        model.train(was_training)
