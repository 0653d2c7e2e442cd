"""MaskCLIP, the training-free dense-CLIP baseline, as re-evaluated under TCL's unified protocol."""

from __future__ import annotations

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16
from textseg.clip.loading import OPENAI_VIT_L14

from .config import MaskCLIPConfig
from .model import MaskCLIP

SPEC = MethodSpec(
    name="maskclip",
    summary="MaskCLIP: CLIP whose last block attends each token to itself; training-free, no key smoothing",
    paper="Zhou, Loy, Dai. Extract Free Dense Labels from CLIP. ECCV 2022. arXiv:2112.01071",
    config_cls=MaskCLIPConfig,
    build=MaskCLIP,
    presets={
        "paper": Preset(
            "MaskCLIP as re-evaluated by TCL (CVPR 2023) under the unified protocol, CLIP ViT-B/16",
            model={},
            protocol="tcl",
        ),
        "tiny": Preset("a tiny random CLIP, for tests", model={"clip": "tiny"}, protocol="tcl"),
        "vit-l14": Preset(
            "the same on OpenAI CLIP ViT-L/14 (MaskCLIP publishes no per-backbone settings)",
            model={"clip": OPENAI_VIT_L14},
            protocol="tcl",
        ),
    },
    checkpoints={"openai": OPENAI_VIT_B16},
    weights_setting="clip",
    license="Apache-2.0 (official MaskCLIP code); CLIP weights: MIT (OpenAI)",
)

__all__ = ["SPEC", "MaskCLIP", "MaskCLIPConfig"]
