"""ViL-Seg (Liu et al., ECCV 2022), reconstructed: no official code exists (see README.md)."""

from textseg.api import MethodSpec
from textseg.methods.vilseg.config import PRESETS, VilSegConfig
from textseg.methods.vilseg.model import VilSeg

SPEC = MethodSpec(
    name="vilseg",
    summary="ViL-Seg: cross-modal + vision contrast, online clustering head classified by text (reconstructed)",
    paper="Liu et al., Open-world Semantic Segmentation via Contrasting and Clustering Vision-Language "
    "Embedding, ECCV 2022 (arXiv 2207.08455)",
    config_cls=VilSegConfig,
    build=VilSeg,
    presets=PRESETS,
    trainable=True,
    license="Apache-2.0 (this reimplementation; the paper released no code)",
)

__all__ = ["SPEC", "VilSeg", "VilSegConfig"]
