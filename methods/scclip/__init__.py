"""SC-CLIP (self-calibrated CLIP: anomaly tokens fixed, mid-layer similarity, multi-level fusion), training-free."""

from __future__ import annotations

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16
from textseg.clip.segmentor import dense_clip_protocol

from .config import SCCLIPConfig
from .model import SCCLIP

#: SC-CLIP's evaluation settings (SuleBai/SC-CLIP ``configs/cfg_*.py`` at 0417ba9): keep-ratio
#: resize to short side 336 (Cityscapes 560; COCO-Stuff 336, where SCLIP uses 448), 224 windows at
#: stride 112, CLIP mean/std, the 80 ImageNet templates, SCLIP's name files (SC-CLIP ships them
#: byte for byte) with background words scored as text.
PROTOCOL = dense_clip_protocol(
    name="scclip",
    summary="SC-CLIP's settings: short side 336 (City 560), 224 windows / 112 stride, CLIP norm, "
    "80 templates, SCLIP name files, background as text",
    short_side=336,
    crop=224,
    stride=112,
    synonyms="sclip",
    benchmarks={"cityscapes": {"short_side": 560}},
)

#: The model settings SC-CLIP's configs change per benchmark for ViT-B/16 (``bg_thresh`` is their
#: ``prob_thd``).
PER_BENCHMARK = {
    "voc21": {"logit_scale": 50.0, "bg_thresh": 0.15, "area_thd": 0.1},
    "context60": {"bg_thresh": 0.15},
    "coco_object": {"logit_scale": 55.0, "bg_thresh": 0.35},
}
#: For ViT-L/14: the lines commented "for ViT-L/14" in the first commit (74471da) ``cfg_voc21.py``
#: and ``cfg_coco_object.py`` (logit scale back to the default 40); Context60 keeps its value.
PER_BENCHMARK_L14 = {
    "voc21": {"bg_thresh": 0.2, "area_thd": 0.1},
    "context60": {"bg_thresh": 0.15},
    "coco_object": {"bg_thresh": 0.25},
}
#: The layer indices and class-token weight for ViT-L/14 (74471da ``configs/base_config.py``).
L14 = {
    "clip": "openai/clip-vit-large-patch14",
    "pre_adjust_idx": 16,
    "post_adjust_idx": 6,
    "multi_start_idx": 8,
    "multi_end_idx": 19,
    "res_cls": 0.1,
}
#: The tiny test CLIP has 3 blocks (outputs 0 and 1 before the last): the same computation on them.
TINY = {"clip": "tiny", "pre_adjust_idx": 1, "post_adjust_idx": 0, "multi_start_idx": 0, "multi_end_idx": 2}


def _preset(summary: str, model: dict, benchmarks: dict = PER_BENCHMARK) -> Preset:
    return Preset(summary, model=model, protocol="scclip", benchmarks=benchmarks)


SPEC = MethodSpec(
    name="scclip",
    summary="SC-CLIP: CLIP self-calibrated (anomaly tokens, mid-layer similarity, multi-level fusion); "
    "training-free",
    paper="Bai, Liu, Han, Zhang, Tang. Self-Calibrated CLIP for Training-Free Open-Vocabulary "
    "Segmentation. arXiv:2411.15869",
    config_cls=SCCLIPConfig,
    build=SCCLIP,
    presets={
        "paper": _preset("SC-CLIP's repository setup (configs/cfg_*.py) per benchmark, CLIP ViT-B/16", {}),
        "l14": _preset(
            "SC-CLIP with CLIP ViT-L/14: the authors' ViT-L/14 indices and thresholds (first commit)",
            L14,
            PER_BENCHMARK_L14,
        ),
        "first-release": _preset(
            "the first release's anomaly detector (10 largest-norm tokens, 74471da) with the paper settings",
            {"outliers": "norm"},
        ),
        "tiny": _preset(
            "a tiny random CLIP with the paper settings (indices fit its 3 blocks), for tests", TINY
        ),
    },
    checkpoints={"openai": OPENAI_VIT_B16},
    weights_setting="clip",
    license="official SC-CLIP code: no license file (textseg's code is written anew); CLIP weights: MIT (OpenAI)",
)

__all__ = ["PROTOCOL", "SCCLIP", "SPEC", "SCCLIPConfig"]
