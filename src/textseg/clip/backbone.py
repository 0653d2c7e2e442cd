"""A frozen CLIP as methods hold it: an image tower, a text tower and CLIP's logit scale.

A method keeps one :class:`CLIPBackbone` as a submodule (say ``self.clip``) and lists its prefix in
``pretrained_prefixes``, so saved checkpoints leave CLIP out. Its state-dict keys are
``vision.transformer.*``, ``vision.projection.weight``, ``text.transformer.*``,
``text.projection.weight`` and ``logit_scale``; :func:`backbone_state` maps a transformers or
OpenAI CLIP state dict onto them. A training-free method built from its CLIP sets
``weights_setting="clip"`` and lists :data:`OPENAI_VIT_B16` as a released checkpoint, so
``--weights`` accepts CLIP weights (a folder, an OpenAI file, or ``openai``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from textseg.api import Checkpoint
from textseg.clip.loading import DEFAULT_CLIP, load_clip
from textseg.clip.openai_format import is_openai_state_dict, openai_to_hf
from textseg.clip.text import TextTower
from textseg.clip.text_cache import TextEmbeddingCache
from textseg.clip.vision import VisionTower
from textseg.errors import WeightsError
from textseg.paths import cache_dir

#: transformers ``CLIPModel`` prefix -> backbone prefix.
_PREFIXES = (
    ("vision_model.", "vision.transformer."),
    ("visual_projection.", "vision.projection."),
    ("text_model.", "text.transformer."),
    ("text_projection.", "text.projection."),
)


def backbone_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A transformers or OpenAI CLIP state dict, renamed to :class:`CLIPBackbone` keys."""
    if is_openai_state_dict(state):
        state = openai_to_hf(state)
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.endswith(".position_ids"):  # saved by older transformers; rebuilt by the model
            continue
        if key == "logit_scale":
            out[key] = value
            continue
        for hf, ours in _PREFIXES:
            if key.startswith(hf):
                out[ours + key[len(hf) :]] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(f"not a CLIP state dict: {len(unknown)} keys such as {unknown[:5]} fit nowhere")
    return out


def transformers_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A :class:`CLIPBackbone` state dict renamed to transformers ``CLIPModel`` keys (the inverse of
    :func:`backbone_state`)."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        for hf, ours in _PREFIXES:
            if key.startswith(ours):
                key = hf + key[len(ours) :]
                break
        out[key] = value
    return out


#: OpenAI's own ViT-B/16 release (TorchScript, fp16); its sha256 is the folder name in the URL.
OPENAI_VIT_B16 = Checkpoint(
    "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
    summary="OpenAI's original CLIP ViT-B/16 file (the hub weights hold the same values)",
)


class CLIPBackbone(nn.Module):
    """``vision`` (:class:`VisionTower`), ``text`` (:class:`TextTower`) and ``logit_scale``."""

    def __init__(self, model: nn.Module, tokenizer, text_cache: TextEmbeddingCache | None = None) -> None:
        super().__init__()
        self.vision = VisionTower(model.vision_model, model.visual_projection)
        self.text = TextTower(model.text_model, model.text_projection, tokenizer, text_cache)
        self.logit_scale = model.logit_scale
        self.hf_config = model.config  # what save_pretrained writes back

    @classmethod
    def load(
        cls, source: str = DEFAULT_CLIP, tokenizer: str | None = None, text_cache: bool = True
    ) -> CLIPBackbone:
        """Load from a hub id, folder, OpenAI file, ``open_clip:ARCH[/TAG]`` or ``tiny`` (see
        :func:`textseg.clip.load_clip`).

        ``text_cache`` keeps class embeddings under ``$TEXTSEG_CACHE/text-embeddings``.
        """
        model, tok = load_clip(source, tokenizer)
        cache = TextEmbeddingCache(cache_dir() / "text-embeddings") if text_cache else None
        return cls(model, tok, cache).eval().requires_grad_(False)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write this CLIP (its current weights) and its tokenizer as a transformers CLIP folder, which
        :meth:`load` and every method's ``clip`` setting read (e.g. a CLIP trained by the ``clip`` method)."""
        from transformers import CLIPModel

        with torch.device("meta"):  # the weights come from this backbone; nothing to initialise
            model = CLIPModel(self.hf_config)
        model.load_state_dict(transformers_state(self.state_dict()), assign=True)
        folder = Path(folder)
        model.save_pretrained(folder)
        self.text.tokenizer.save_pretrained(folder)
        return folder
