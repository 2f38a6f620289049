"""Checks for super-networks, shared by their tests: an extracted child computes what the super-network computes."""

from __future__ import annotations

from typing import Any

import torch


def assert_child_matches(net: Any, child: Any, arch: Any, x: torch.Tensor, atol: float = 1e-5) -> None:
    """``child`` (extracted from ``net`` for ``arch``) gives the super-network's outputs on ``x`` in training mode
    (logits and the auxiliary head's), and with drop-path the same masks from the same seed."""
    net.train(), child.train()
    for a, b in zip(net(x, arch), child(x)):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    net.drop_path_prob = child.drop_path_prob = 0.3
    try:
        torch.manual_seed(5)
        a = net(x, arch)[0]
        torch.manual_seed(5)
        torch.testing.assert_close(a, child(x)[0], atol=atol, rtol=0)
    finally:
        net.drop_path_prob = 0.0
