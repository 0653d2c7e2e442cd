"""NACLIP (neighbourhood attention in CLIP's last block, PAMR), training-free, with its own protocol."""

from __future__ import annotations

from textseg.clip.loading import OPENAI_VIT_L14
from textseg.clip.segmentor import dense_clip_protocol, dense_clip_spec

from .config import NACLIPConfig

#: NACLIP's evaluation settings (sinahmr/NACLIP ``configs/cfg_*.py`` at 0cac3a6): keep-ratio resize
#: to short side 336 (Cityscapes 560), 224 windows at stride 112 except the whole image at once on
#: VOC21 and VOC20 (``slide_crop=0``), CLIP mean/std, the 80 ImageNet templates, SCLIP's name files
#: (NACLIP ships the same) with background words scored as text.
PROTOCOL = dense_clip_protocol(
    name="naclip",
    summary="NACLIP's settings: short side 336 (City 560), 224 windows / 112 stride (VOC: whole image), "
    "CLIP norm, 80 templates, SCLIP name files, background as text",
    short_side=336,
    crop=224,
    stride=112,
    synonyms="sclip",
    benchmarks={"voc21": {"crop": None}, "voc20": {"crop": None}, "cityscapes": {"short_side": 560}},
)

#: The model settings NACLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"bg_thresh": 0.1},
    "context60": {"bg_thresh": 0.1},
    "coco_object": {"bg_thresh": 0.1},
}

SPEC = dense_clip_spec(
    name="naclip",
    summary="NACLIP: CLIP's last block with neighbourhood-aware k-k attention, no residual/MLP, PAMR",
    paper="Hajimiri, Ben Ayed, Dolz. Pay Attention to Your Neighbours: Training-Free Open-Vocabulary "
    "Semantic Segmentation. WACV 2025. arXiv:2404.08181",
    license="official NACLIP code: MIT; CLIP weights: MIT (OpenAI)",
    config_cls=NACLIPConfig,
    protocol="naclip",
    recipe="NACLIP's repository setup per benchmark, PAMR on (test_all.sh reduced naclip 5 on), "
    "CLIP ViT-B/16",
    per_benchmark=PER_BENCHMARK,
    variants={
        "no-pamr": (
            "NACLIP without post-processing (PAMR off: test_all.sh reduced naclip 5 off)",
            {"pamr": False},
        ),
        "vit-l14": (
            "NACLIP's settings on OpenAI CLIP ViT-L/14 (eval.py --backbone; no per-backbone settings exist)",
            {"clip": OPENAI_VIT_L14},
        ),
        "vit-l14-no-pamr": (
            "NACLIP on OpenAI CLIP ViT-L/14 without post-processing",
            {"clip": OPENAI_VIT_L14, "pamr": False},
        ),
    },
)

__all__ = ["PROTOCOL", "SPEC", "NACLIPConfig"]
