"""The tiny CLIP builds offline, loads through transformers, and its tokenizer behaves like CLIP's."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import CLIPModel, CLIPTokenizer

from textseg.testing.tiny_clip import ensure_tiny_clip


def test_tiny_clip_is_built_offline_and_loads() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    path = ensure_tiny_clip()
    assert ensure_tiny_clip() == path  # cached
    model = CLIPModel.from_pretrained(path)
    tokenizer = CLIPTokenizer.from_pretrained(path)
    ids = tokenizer(
        ["a photo of a dog.", "xylophone"], padding="max_length", max_length=77, return_tensors="pt"
    )
    first = ids["input_ids"][0].tolist()
    assert first[0] == tokenizer.bos_token_id and tokenizer.eos_token_id in first
    # start/end-of-text are the last two ids, as in CLIP (argmax finds the end token)
    assert tokenizer.eos_token_id == len(tokenizer) - 1
    assert len(tokenizer.tokenize("xylophone")) > 1 and len(tokenizer.tokenize("photo")) == 1
    with torch.no_grad():
        out = model(input_ids=ids["input_ids"], pixel_values=torch.randn(2, 3, 224, 224))
    assert out.logits_per_image.shape == (2, 2) and torch.isfinite(out.logits_per_image).all()


def test_tiny_clip_is_deterministic(tmp_path: Path) -> None:
    from textseg.testing.tiny_clip import build_tiny_clip

    a = CLIPModel.from_pretrained(build_tiny_clip(tmp_path / "a", seed=3))
    b = CLIPModel.from_pretrained(build_tiny_clip(tmp_path / "b", seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
