"""ClearCLIP (q-q attention, no residual, no MLP in CLIP's last block), training-free, with its protocol."""

from __future__ import annotations

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
)

__all__ = ["PROTOCOL", "SPEC", "ClearCLIPConfig"]
