"""Where nasforge keeps files of its own: the one cache directory of the package."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$NASFORGE_CACHE`` or ``~/.cache/nasforge``: decoded data sets and pre-trained models are kept there.

    Library functions take the directory as an argument; only entry points and defaults of a
    configuration (a missing ``cache_dir``) fall back to this.
    """
    return Path(os.environ.get("NASFORGE_CACHE") or Path.home() / ".cache" / "nasforge")
