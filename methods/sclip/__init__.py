"""SCLIP (correlative self-attention in CLIP's last block), training-free, with its own protocol."""

from __future__ import annotations

from textseg.clip.loading import OPENAI_VIT_L14
from textseg.clip.segmentor import dense_clip_protocol, dense_clip_spec

from .config import SCLIPConfig

#: SCLIP's evaluation settings (wangf3014/SCLIP ``configs/cfg_*.py`` at b56bd30): keep-ratio resize
#: to short side 336 (COCO-Stuff 448, Cityscapes 560), 224 windows at stride 112, CLIP mean/std,
#: the 80 ImageNet templates, SCLIP's name files with background words scored as text.
PROTOCOL = dense_clip_protocol(
    name="sclip",
    summary="SCLIP's settings: short side 336 (Stuff 448, City 560), 224 windows / 112 stride, CLIP norm, "
    "80 templates, SCLIP name files, background as text",
    short_side=336,
    crop=224,
    stride=112,
    synonyms="sclip",
    benchmarks={"coco_stuff": {"short_side": 448}, "cityscapes": {"short_side": 560}},
)

#: The model settings SCLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"logit_scale": 65.0, "bg_thresh": 0.1, "area_thd": 0.1},
    "context60": {"logit_scale": 50.0, "bg_thresh": 0.1},
    "coco_object": {"logit_scale": 50.0, "bg_thresh": 0.1},
}

SPEC = dense_clip_spec(
    name="sclip",
    summary="SCLIP: CLIP whose last block uses correlative (q-q + k-k) self-attention; training-free",
    paper="Wang, Mei, Yuille. SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference. "
    "ECCV 2024. arXiv:2312.01597",
    license="official SCLIP code: no license file (textseg's code is written anew); CLIP weights: MIT (OpenAI)",
    config_cls=SCLIPConfig,
    protocol="sclip",
    recipe="SCLIP's repository setup (configs/cfg_*.py) per benchmark, CLIP ViT-B/16",
    per_benchmark=PER_BENCHMARK,
    variants={
        "vit-l14": (
            "SCLIP's settings unchanged on OpenAI CLIP ViT-L/14 (the official code has no per-backbone "
            "settings; its issue 9 reports this loses much to ViT-B/16)",
            {"clip": OPENAI_VIT_L14},
        )
    },
)

__all__ = ["PROTOCOL", "SPEC", "SCLIPConfig"]
