"""The package's one cache directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from nasforge import paths, train
from nasforge.strategies import nases


def test_default_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NASFORGE_CACHE", str(tmp_path))
    assert paths.default_cache_dir() == tmp_path
    monkeypatch.delenv("NASFORGE_CACHE")
    assert paths.default_cache_dir() == Path.home() / ".cache" / "nasforge"


def test_data_and_nases_use_the_one_helper() -> None:
    assert train.default_cache_dir is paths.default_cache_dir
    assert nases.default_cache_dir is paths.default_cache_dir
