"""CLIP as the plain dense baseline ("CLIP" rows of the published tables) that also trains with CLIP's
own contrastive loss, so a (tiny) CLIP can be pretrained with textseg's training loop and then used
by every CLIP-based method. See README.md."""

from __future__ import annotations

from textseg.api import MethodSpec
from textseg.clip.backbone import OPENAI_VIT_B16

from .config import PRESETS, CLIPBaselineConfig
from .model import CLIPBaseline

SPEC = MethodSpec(
    name="clip",
    summary="plain CLIP: patch tokens of the unmodified last block against class text; trains with CLIP's loss",
    paper="Radford et al. Learning Transferable Visual Models From Natural Language Supervision. ICML 2021. "
    "arXiv:2103.00020",
    config_cls=CLIPBaselineConfig,
    build=CLIPBaseline,
    presets=PRESETS,
    checkpoints={"openai": OPENAI_VIT_B16},
    weights_setting="clip",
    trainable=True,
    license="CLIP weights: MIT (OpenAI)",
)

__all__ = ["SPEC", "CLIPBaseline", "CLIPBaselineConfig"]
