"""The ENAS macro network's structure (its behaviour through the space: test_spaces_enas_macro.py)."""

from __future__ import annotations

from nasforge.models.enas_macro_net import reduction_layers


def test_reduction_layers_at_thirds_of_depth() -> None:
    assert reduction_layers(12) == (3, 7)
    assert reduction_layers(24) == (7, 15)
    assert reduction_layers(6) == (1, 3)
    assert reduction_layers(2) == ()
