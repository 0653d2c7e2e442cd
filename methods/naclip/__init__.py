"""NACLIP (neighbourhood attention in CLIP's last block, PAMR), training-free, with its own protocol."""

from __future__ import annotations

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16, convert_clip_checkpoint
from textseg.clip.segmentor import DenseCLIP
from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD, Protocol

from .config import NACLIPConfig

#: NACLIP's evaluation settings (sinahmr/NACLIP ``configs/cfg_*.py`` at 0cac3a6): keep-ratio resize
#: to short side 336 (Cityscapes 560), 224 windows at stride 112 except the whole image at once on
#: VOC21 and VOC20 (``slide_crop=0``), CLIP mean/std, the 80 ImageNet templates, SCLIP's name files
#: (NACLIP ships the same) with background words scored as text.
PROTOCOL = Protocol(
    name="naclip",
    version="1",
    summary="NACLIP's settings: short side 336 (City 560), 224 windows / 112 stride (VOC: whole image), "
    "CLIP norm, 80 templates, SCLIP name files, background as text",
    short_side=336,
    crop=224,
    stride=112,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    templates="openai80",
    synonyms="sclip",
    background_query=True,
    benchmarks={"voc21": {"crop": None}, "voc20": {"crop": None}, "cityscapes": {"short_side": 560}},
)

#: The model settings NACLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"bg_thresh": 0.1},
    "context60": {"bg_thresh": 0.1},
    "coco_object": {"bg_thresh": 0.1},
}

SPEC = MethodSpec(
    name="naclip",
    summary="NACLIP: CLIP's last block with neighbourhood-aware k-k attention, no residual/MLP, PAMR",
    paper="Hajimiri, Ben Ayed, Dolz. Pay Attention to Your Neighbours: Training-Free Open-Vocabulary "
    "Semantic Segmentation. WACV 2025. arXiv:2404.08181",
    config_cls=NACLIPConfig,
    build=DenseCLIP,
    presets={
        "paper": Preset(
            "NACLIP's repository setup per benchmark, PAMR on (test_all.sh reduced naclip 5 on), "
            "CLIP ViT-B/16",
            protocol="naclip",
            benchmarks=PER_BENCHMARK,
        ),
        "no-pamr": Preset(
            "NACLIP without post-processing (PAMR off: test_all.sh reduced naclip 5 off)",
            model={"pamr": False},
            protocol="naclip",
            benchmarks=PER_BENCHMARK,
        ),
        "tiny": Preset(
            "a tiny random CLIP with the paper settings, for tests",
            model={"clip": "tiny"},
            protocol="naclip",
            benchmarks=PER_BENCHMARK,
        ),
    },
    checkpoints={"openai": OPENAI_VIT_B16},
    convert_checkpoint=convert_clip_checkpoint,
    license="official NACLIP code: MIT; CLIP weights: MIT (OpenAI)",
)

__all__ = ["PROTOCOL", "SPEC", "NACLIPConfig"]
