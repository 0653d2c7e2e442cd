"""Loading CLIP through transformers.

``source`` is a hub id (``openai/clip-vit-base-patch16``, the weights every method here uses), a
local folder written by ``save_pretrained``, or ``tiny`` (the offline test model of
:mod:`textseg.testing.tiny_clip`, built into the cache on first use).
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPModel, CLIPTokenizer

from textseg.errors import WeightsError

DEFAULT_CLIP = "openai/clip-vit-base-patch16"


def resolve_clip_source(source: str) -> str:
    """A path or hub id that ``from_pretrained`` understands."""
    if source == "tiny":
        from textseg.testing.tiny_clip import ensure_tiny_clip

        return str(ensure_tiny_clip())
    return source


def load_clip(source: str = DEFAULT_CLIP) -> tuple[CLIPModel, CLIPTokenizer]:
    """The CLIP model (eval mode, fp32) and its tokenizer."""
    resolved = resolve_clip_source(source)
    try:
        model = CLIPModel.from_pretrained(resolved).eval()
        tokenizer = CLIPTokenizer.from_pretrained(resolved)
    except OSError as exc:
        where = "folder" if Path(resolved).exists() else "hub id (or folder)"
        raise WeightsError(f"cannot load CLIP from {where} {source!r}: {exc}") from exc
    return model, tokenizer
