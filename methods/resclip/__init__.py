"""ResCLIP (RCS + SFR as a plug-in on NACLIP, ClearCLIP, SCLIP or CLIP), training-free.

ResCLIP's evaluation settings (yvhangyang/ResCLIP ``configs/cfg_*.py`` at 6b082d9) are NACLIP's
protocol exactly (ResCLIP forks NACLIP): keep-ratio resize to short side 336 (Cityscapes 560), 224
windows at stride 112 except the whole image on VOC21 and VOC20, CLIP mean/std, the 80 ImageNet
templates, SCLIP's name files with background words scored as text. So the presets use the
protocol ``naclip``; ``tests/test_resclip.py`` checks it against ResCLIP's configs.
"""

from __future__ import annotations

from textseg.api import MethodSpec, Preset
from textseg.clip.backbone import OPENAI_VIT_B16

from .config import ResCLIPConfig
from .model import ResCLIP

#: The model settings ResCLIP's configs set per benchmark (``bg_thresh`` is their ``prob_thd``;
#: weights are ``[τ, λ]``). The same configs serve every base and backbone.
PER_BENCHMARK = {
    "voc21": {
        "bg_thresh": 0.1,
        "temp_thd": 0.5,
        "attn_rcs_weights": (2.0, 0.3),
        "attn_sfr_weights": (2.2, 0.7),
    },
    "context60": {
        "bg_thresh": 0.1,
        "temp_thd": 0.3,
        "attn_rcs_weights": (2.0, 0.3),
        "attn_sfr_weights": (1.8, 0.7),
    },
    "coco_object": {
        "bg_thresh": 0.1,
        "temp_thd": 0.11,
        "attn_rcs_weights": (2.0, 0.4),
        "attn_sfr_weights": (1.8, 0.7),
    },
    "voc20": {"temp_thd": 0.1, "attn_rcs_weights": (2.0, 0.6), "attn_sfr_weights": (2.1, 0.6)},
    "context59": {"temp_thd": 0.25, "attn_rcs_weights": (2.0, 0.4), "attn_sfr_weights": (1.8, 0.7)},
    "coco_stuff": {"temp_thd": 0.11, "attn_rcs_weights": (2.0, 0.4), "attn_sfr_weights": (1.8, 0.7)},
    "cityscapes": {"temp_thd": 0.1, "attn_rcs_weights": (2.0, 0.2), "attn_sfr_weights": (2.1, 0.6)},
    "ade20k": {"temp_thd": 0.25, "attn_rcs_weights": (2.0, 0.3), "attn_sfr_weights": (2.1, 0.7)},
}

#: Base presets: name -> (what it is, the base's last block). ``test_all.sh wo_resi <attn> 5``
#: with ``<attn>`` resclip, clearclip; ``w_resi`` with sclip, vanilla.
BASES = {
    "paper": ("ResCLIP on NACLIP (attn resclip, wo_resi): the paper's main rows", "naclip"),
    "clearclip": ("ResCLIP on ClearCLIP (attn clearclip, wo_resi)", "qq"),
    "sclip": ("ResCLIP on SCLIP (attn sclip, w_resi)", "csa"),
    "vanilla": ("ResCLIP on plain CLIP (attn vanilla, w_resi); no published numbers", "vanilla"),
}
#: The paper's ViT-L/14 rows use the same configs with ``--backbone ViT-L/14``.
L14_CLIP = "openai/clip-vit-large-patch14"


def _preset(summary: str, model: dict) -> Preset:
    return Preset(summary, model=model, protocol="naclip", benchmarks=PER_BENCHMARK)


_presets = {
    name: _preset(f"{text}, CLIP ViT-B/16", {"last_block": block}) for name, (text, block) in BASES.items()
}
_presets.update(
    {
        ("l14" if name == "paper" else f"{name}-l14"): _preset(
            f"{text}, CLIP ViT-L/14", {"last_block": block, "clip": L14_CLIP}
        )
        for name, (text, block) in BASES.items()
        if name != "vanilla"
    }
)
#: The tiny test CLIP has 3 blocks: RCS averages the maps of blocks 1 and 2.
_presets["tiny"] = _preset(
    "a tiny random CLIP with the paper settings (RCS over its blocks 1-2), for tests",
    {"clip": "tiny", "rcs_layers": (0, 1)},
)

SPEC = MethodSpec(
    name="resclip",
    summary="ResCLIP: residual cross-correlation attention (RCS) and semantic feedback (SFR) on an "
    "SCLIP-family base; training-free",
    paper="Yang, Deng, Li, Duan. ResCLIP: Residual Attention for Training-free Dense Vision-language "
    "Inference. CVPR 2025. arXiv:2411.15851",
    config_cls=ResCLIPConfig,
    build=ResCLIP,
    presets=_presets,
    checkpoints={"openai": OPENAI_VIT_B16},
    weights_setting="clip",
    license="official ResCLIP code: no license file (textseg's code is written anew); CLIP weights: MIT (OpenAI)",
)

__all__ = ["PER_BENCHMARK", "SPEC", "ResCLIP", "ResCLIPConfig"]
