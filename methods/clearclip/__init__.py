"""ClearCLIP (q-q attention, no residual, no MLP in CLIP's last block), training-free, with its protocol."""

from __future__ import annotations

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16, convert_clip_checkpoint
from textseg.clip.segmentor import DenseCLIP
from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD, Protocol

from .config import ClearCLIPConfig

#: ClearCLIP's evaluation settings (mc-lan/ClearCLIP ``configs/cfg_*.py`` at ad68a40): keep-ratio
#: resize to short side 448, 448 windows at stride 224 (Cityscapes: 224 windows), CLIP mean/std, the
#: 80 ImageNet templates, ClearCLIP's name files with background scored as text.
PROTOCOL = Protocol(
    name="clearclip",
    version="1",
    summary="ClearCLIP's settings: short side 448, 448 windows / 224 stride (City 224 windows), CLIP norm, "
    "80 templates, ClearCLIP name files, background as text",
    short_side=448,
    crop=448,
    stride=224,
    mean=CLIP_MEAN,
    std=CLIP_STD,
    templates="openai80",
    synonyms="clearclip",
    background_query=True,
    benchmarks={"cityscapes": {"crop": 224}},
)

#: The model settings ClearCLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"bg_thresh": 0.5},
    "context60": {"bg_thresh": 0.15},
    "coco_object": {"bg_thresh": 0.4},
}

SPEC = MethodSpec(
    name="clearclip",
    summary="ClearCLIP: CLIP's last block without residual and MLP, with q-q attention; training-free",
    paper="Lan, Chen, Ke, Wang, Feng, Zhang. ClearCLIP: Decomposing CLIP Representations for Dense "
    "Vision-Language Inference. ECCV 2024. arXiv:2407.12442",
    config_cls=ClearCLIPConfig,
    build=DenseCLIP,
    presets={
        "paper": Preset(
            "ClearCLIP's repository setup (configs/cfg_*.py, model_type='ClearCLIP') per benchmark, "
            "CLIP ViT-B/16",
            protocol="clearclip",
            benchmarks=PER_BENCHMARK,
        ),
        "tiny": Preset(
            "a tiny random CLIP with the paper settings, for tests",
            model={"clip": "tiny"},
            protocol="clearclip",
            benchmarks=PER_BENCHMARK,
        ),
    },
    checkpoints={"openai": OPENAI_VIT_B16},
    convert_checkpoint=convert_clip_checkpoint,
    license="official ClearCLIP code: NTU S-Lab License 1.0 (textseg's code is written anew); "
    "CLIP weights: MIT (OpenAI)",
)

__all__ = ["PROTOCOL", "SPEC", "ClearCLIPConfig"]
