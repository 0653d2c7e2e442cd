"""Tiny OpenCLIP architectures for tests: ``open_clip:textseg-tiny-vit`` (GELU) and
``open_clip:textseg-tiny-vit-quickgelu``.

They are ordinary ``open_clip_torch`` model configs (a 3-block ViT of width 64, patch 16, image 224,
and a 2-block text tower with CLIP's 49,408-token vocabulary), written to
``$TEXTSEG_CACHE/open_clip-configs/`` and registered with ``open_clip.add_model_config`` the first
time textseg reads an ``open_clip:`` spelling, so ``open_clip:textseg-tiny-vit`` builds random
weights offline from a command line as well as in a test.
"""

from __future__ import annotations

import json
from typing import Any

from textseg.io import atomic_path
from textseg.paths import cache_dir

_BASE: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 224, "layers": 3, "width": 64, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}
TINY_ARCHS: dict[str, dict[str, Any]] = {
    "textseg-tiny-vit": _BASE,
    "textseg-tiny-vit-quickgelu": {**_BASE, "quick_gelu": True},
}

_registered: set[int] = set()


def register_tiny_archs(open_clip) -> None:
    """Make :data:`TINY_ARCHS` known to ``open_clip`` (once per process)."""
    if id(open_clip) in _registered:
        return
    folder = cache_dir() / "open_clip-configs"
    folder.mkdir(parents=True, exist_ok=True)
    for name, cfg in TINY_ARCHS.items():
        path = folder / f"{name}.json"
        text = json.dumps(cfg, indent=1)
        if not path.is_file() or path.read_text() != text:
            with atomic_path(path) as tmp:  # open_clip may be reading the folder in another process
                tmp.write_text(text)
    open_clip.add_model_config(folder)
    _registered.add(id(open_clip))
