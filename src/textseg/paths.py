"""Where textseg keeps downloads and where it looks for datasets (both overridable by environment)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "TEXTSEG_CACHE"
DATA_ENV = "TEXTSEG_DATA"


def cache_dir() -> Path:
    """Downloaded weights and generated assets: ``$TEXTSEG_CACHE`` or ``~/.cache/textseg``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "textseg")


def data_root(given: str | os.PathLike[str] | None = None) -> Path:
    """The benchmark data root: ``--data-root``, else ``$TEXTSEG_DATA``, else ``./data``."""
    return Path(given or os.environ.get(DATA_ENV) or "data")
