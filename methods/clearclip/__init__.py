"""ClearCLIP (q-q attention, no residual, no MLP in CLIP's last block), training-free, with its protocol."""

from __future__ import annotations

from textseg.clip.loading import OPENAI_VIT_L14
from textseg.clip.segmentor import dense_clip_protocol, dense_clip_spec

from .config import ClearCLIPConfig

#: ClearCLIP's evaluation settings (mc-lan/ClearCLIP ``configs/cfg_*.py`` at ad68a40): keep-ratio
#: resize to short side 448, 448 windows at stride 224 (Cityscapes: 224 windows), CLIP mean/std, the
#: 80 ImageNet templates, ClearCLIP's name files with background scored as text.
PROTOCOL = dense_clip_protocol(
    name="clearclip",
    summary="ClearCLIP's settings: short side 448, 448 windows / 224 stride (City 224 windows), CLIP norm, "
    "80 templates, ClearCLIP name files, background as text",
    short_side=448,
    crop=448,
    stride=224,
    synonyms="clearclip",
    benchmarks={"cityscapes": {"crop": 224}},
)

#: The model settings ClearCLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"bg_thresh": 0.5},
    "context60": {"bg_thresh": 0.15},
    "coco_object": {"bg_thresh": 0.4},
}

#: The backbones of ClearCLIP's Table 2, as ``clearclip_segmentor.py`` loads them (``clip_type`` x
#: ``vit_type``); every other setting is the same for all of them in the official code.
BACKBONES = {
    "vit-l14": (
        "ClearCLIP's settings on OpenAI CLIP ViT-L/14 (clip_type='CLIP', vit_type='ViT-L-14')",
        {"clip": OPENAI_VIT_L14},
    ),
    "openclip-b16": (
        "ClearCLIP's settings on OpenCLIP ViT-B/16 LAION-2B (clip_type='OpenCLIP')",
        {"clip": "open_clip:ViT-B-16/laion2b_s34b_b88k"},
    ),
    "openclip-l14": (
        "ClearCLIP's settings on OpenCLIP ViT-L/14 LAION-2B (clip_type='OpenCLIP', vit_type='ViT-L-14')",
        {"clip": "open_clip:ViT-L-14/laion2b_s32b_b82k"},
    ),
    "metaclip-b16": (
        "ClearCLIP's settings on MetaCLIP ViT-B/16 full CC (clip_type='MetaCLIP'), QuickGELU",
        {"clip": "open_clip:ViT-B-16-quickgelu/metaclip_fullcc"},
    ),
    "metaclip-l14": (
        "ClearCLIP's settings on MetaCLIP ViT-L/14 full CC (clip_type='MetaCLIP', vit_type='ViT-L-14'), QuickGELU",
        {"clip": "open_clip:ViT-L-14-quickgelu/metaclip_fullcc"},
    ),
}

SPEC = dense_clip_spec(
    name="clearclip",
    summary="ClearCLIP: CLIP's last block without residual and MLP, with q-q attention; training-free",
    paper="Lan, Chen, Ke, Wang, Feng, Zhang. ClearCLIP: Decomposing CLIP Representations for Dense "
    "Vision-Language Inference. ECCV 2024. arXiv:2407.12442",
    license="official ClearCLIP code: NTU S-Lab License 1.0 (textseg's code is written anew); "
    "CLIP weights: MIT (OpenAI)",
    config_cls=ClearCLIPConfig,
    protocol="clearclip",
    recipe="ClearCLIP's repository setup (configs/cfg_*.py, model_type='ClearCLIP') per benchmark, "
    "CLIP ViT-B/16",
    per_benchmark=PER_BENCHMARK,
    variants=BACKBONES,
)

__all__ = ["PROTOCOL", "SPEC", "ClearCLIPConfig"]
