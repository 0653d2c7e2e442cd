"""SCLIP (correlative self-attention in CLIP's last block), training-free, with its own protocol."""

from __future__ import annotations

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16, convert_clip_checkpoint
from textseg.clip.segmentor import DenseCLIP
from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD, Protocol

from .config import SCLIPConfig

#: SCLIP's evaluation settings (wangf3014/SCLIP ``configs/cfg_*.py`` at b56bd30): keep-ratio resize
#: to short side 336 (COCO-Stuff 448, Cityscapes 560), 224 windows at stride 112, CLIP mean/std,
#: the 80 ImageNet templates, SCLIP's name files with background words scored as text.
PROTOCOL = Protocol(
    name="sclip",
    version="1",
    summary="SCLIP's settings: short side 336 (Stuff 448, City 560), 224 windows / 112 stride, CLIP norm, "
    "80 templates, SCLIP name files, background as text",
    short_side=336,
    crop=224,
    stride=112,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    templates="openai80",
    synonyms="sclip",
    background_query=True,
    benchmarks={"coco_stuff": {"short_side": 448}, "cityscapes": {"short_side": 560}},
)

#: The model settings SCLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"logit_scale": 65.0, "bg_thresh": 0.1, "area_thd": 0.1},
    "context60": {"logit_scale": 50.0, "bg_thresh": 0.1},
    "coco_object": {"logit_scale": 50.0, "bg_thresh": 0.1},
}

SPEC = MethodSpec(
    name="sclip",
    summary="SCLIP: CLIP whose last block uses correlative (q-q + k-k) self-attention; training-free",
    paper="Wang, Mei, Yuille. SCLIP: Rethinking Self-Attention for Dense Vision-Language Inference. "
    "ECCV 2024. arXiv:2312.01597",
    config_cls=SCLIPConfig,
    build=DenseCLIP,
    presets={
        "paper": Preset(
            "SCLIP's repository setup (configs/cfg_*.py) per benchmark, CLIP ViT-B/16",
            protocol="sclip",
            benchmarks=PER_BENCHMARK,
        ),
        "tiny": Preset(
            "a tiny random CLIP with the paper settings, for tests",
            model={"clip": "tiny"},
            protocol="sclip",
            benchmarks=PER_BENCHMARK,
        ),
    },
    checkpoints={"openai": OPENAI_VIT_B16},
    convert_checkpoint=convert_clip_checkpoint,
    license="official SCLIP code: no license file (textseg's code is written anew); CLIP weights: MIT (OpenAI)",
)

__all__ = ["PROTOCOL", "SPEC", "SCLIPConfig"]
