"""ProxyCLIP (CLIP's values aggregated with a vision foundation model's attention), training-free."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16
from textseg.clip.loading import OPENAI_VIT_L14
from textseg.clip.segmentor import dense_clip_protocol

from .config import ProxyCLIPConfig
from .model import ProxyCLIP, proxy_attention, proxy_values

#: ProxyCLIP's evaluation settings (mc-lan/ProxyCLIP ``configs/cfg_*.py`` at e7b767f): keep-ratio
#: resize to short side 336 (Cityscapes and ADE20K 448), 336 windows at stride 112 (Cityscapes: 224
#: windows), CLIP mean/std, the 80 ImageNet templates, ProxyCLIP's name files (``'; '``-separated
#: synonyms) with background words scored as text.
PROTOCOL = dense_clip_protocol(
    name="proxyclip",
    summary="ProxyCLIP's settings: short side 336 (City, ADE 448), 336 windows / 112 stride (City 224 windows), "
    "CLIP norm, 80 templates, ProxyCLIP name files, background as text",
    short_side=336,
    crop=336,
    stride=112,
    synonyms="proxyclip",
    benchmarks={"cityscapes": {"short_side": 448, "crop": 224}, "ade20k": {"short_side": 448}},
)

#: The model settings ProxyCLIP's configs change per benchmark (``bg_thresh`` is their ``prob_thd``;
#: ``logit_scale`` is 40 everywhere). The configs are the same for every CLIP and proxy.
PER_BENCHMARK: dict[str, dict[str, Any]] = {
    "voc21": {"bg_thresh": 0.2},
    "context60": {"bg_thresh": 0.15},
    "coco_object": {"bg_thresh": 0.25},
}
#: MAE is built for ``slide_crop x slide_crop`` inputs and every window is resized to it
#: (``proxyclip_segmentor.py:60``, ``:163``): 336, Cityscapes 224.
PER_BENCHMARK_MAE = {**PER_BENCHMARK, "cityscapes": {"vfm_size": 224}}

#: The CLIPs of ``configs/base_config.py`` (``clip_type``, ``model_type``): the default and the two
#: in its comments. The proxy is DINO ViT-B/8 for each (the repository's only default).
OPENCLIP_VIT_H14 = "open_clip:ViT-H-14/laion2b_s32b_b79k"
#: The proxies ``ProxyCLIPSegmentation`` builds (``vfm_model`` = dino, dinov2, sam, mae) and the
#: DINO alternatives it names in comments (``:50-53``).
PROXIES: dict[str, tuple[str, dict[str, Any], Mapping[str, Mapping[str, Any]]]] = {
    "dino-b16": (
        "ProxyCLIP with DINO ViT-B/16 as proxy (the commented hub alternative dino_vitb16), CLIP ViT-B/16",
        {"vfm": "dino_vitb16"},
        PER_BENCHMARK,
    ),
    "dinov2": (
        "ProxyCLIP with DINOv2 ViT-B/14 with registers as proxy (vfm_model='dinov2'), CLIP ViT-B/16",
        {"vfm": "dinov2_vitb14_reg"},
        PER_BENCHMARK,
    ),
    "sam": (
        "ProxyCLIP with SAM ViT-B's encoder as proxy, windows resized to 1024 (vfm_model='sam'), CLIP ViT-B/16",
        {"vfm": "sam_vit_b", "vfm_size": 1024},
        PER_BENCHMARK,
    ),
    "mae": (
        "ProxyCLIP with MAE ViT-B/16 as proxy, windows resized to slide_crop (vfm_model='mae'), CLIP ViT-B/16",
        {"vfm": "mae_vitb16", "vfm_size": 336},
        PER_BENCHMARK_MAE,
    ),
    "vit-l14": (
        "ProxyCLIP on OpenAI CLIP ViT-L/14 with DINO ViT-B/8 (base_config ('openai', 'ViT-L-14'))",
        {"clip": OPENAI_VIT_L14},
        PER_BENCHMARK,
    ),
    "vit-h14": (
        "ProxyCLIP on OpenCLIP ViT-H/14 LAION-2B with DINO ViT-B/8 (base_config ('laion2b_s32b_b79k', 'ViT-H-14'))",
        {"clip": OPENCLIP_VIT_H14},
        PER_BENCHMARK,
    ),
    "tiny": (
        "a tiny random CLIP and a tiny random DINO-style ViT/8 with the paper settings, for tests",
        {"clip": "tiny", "vfm": "tiny-dino8"},
        PER_BENCHMARK,
    ),
}


def _preset(summary: str, model: Mapping[str, Any], benchmarks: Mapping[str, Mapping[str, Any]]) -> Preset:
    return Preset(summary, model=model, protocol="proxyclip", benchmarks=benchmarks)


SPEC = MethodSpec(
    name="proxyclip",
    summary="ProxyCLIP: CLIP's last-block values aggregated with a vision foundation model's attention "
    "(DINO, DINOv2, SAM, MAE); training-free",
    paper="Lan, Chen, Ke, Wang, Feng, Zhang. ProxyCLIP: Proxy Attention Improves CLIP for "
    "Open-Vocabulary Segmentation. ECCV 2024. arXiv:2408.04883",
    config_cls=ProxyCLIPConfig,
    build=ProxyCLIP,
    presets={
        "paper": _preset(
            "ProxyCLIP's repository setup (configs/cfg_*.py) per benchmark: CLIP ViT-B/16 with DINO ViT-B/8",
            {},
            PER_BENCHMARK,
        ),
        **{key: _preset(*value) for key, value in PROXIES.items()},
    },
    checkpoints={"openai": OPENAI_VIT_B16},
    weights_setting="clip",
    license="official ProxyCLIP code: NTU S-Lab License 1.0 (textseg's code is written anew); CLIP weights: MIT "
    "(OpenAI, OpenCLIP); proxies: DINO, DINOv2, SAM Apache-2.0, MAE CC BY-NC 4.0",
)

__all__ = ["PROTOCOL", "SPEC", "ProxyCLIP", "ProxyCLIPConfig", "proxy_attention", "proxy_values"]
