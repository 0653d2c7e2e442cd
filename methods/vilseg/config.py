"""ViL-Seg's settings and presets.

ViL-Seg (Liu et al., ECCV 2022) has no public code and its method section could not be read, so
every value below that the abstract does not fix is a choice. ``README.md`` gives, for each field,
the reason and the source (or says that there is none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textseg.api import Preset
from textseg.clip.loading import DEFAULT_CLIP
from textseg.config import NonNegative, Positive, Probability

#: ImageNet mean/std in 0-1 units: the statistics the ``tcl`` protocol normalises with at test
#: time, so training sees the same input distribution.
IMAGENET_MEAN_01 = (0.485, 0.456, 0.406)
IMAGENET_STD_01 = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class VilSegConfig:
    """Model, training-view and inference settings of ViL-Seg (see README.md for every reason)."""

    # -- encoders ----------------------------------------------------------------------------
    clip: str = DEFAULT_CLIP  # tokenizer, text-tower config, and weights for the ``clip`` inits
    vision_init: Literal["clip", "scratch"] = "clip"
    text_init: Literal["clip", "scratch"] = "clip"
    # Shape of the timm ViT when ``vision_init="scratch"`` (ignored for ``clip``: CLIP's shape).
    vit_width: int = 768
    vit_depth: int = 12
    vit_heads: int = 12
    patch_size: int = 16
    vit_image_size: int = 224  # the positional-embedding grid; other sizes are interpolated
    context_length: int = 77

    # -- training views (made in the data workers) -------------------------------------------
    global_size: int = 224
    global_scale: tuple[float, float] = (0.4, 1.0)
    num_local: int = 6
    local_size: int = 96
    local_scale: tuple[float, float] = (0.05, 0.4)
    cluster_scale: tuple[float, float] = (0.5, 1.0)  # the clustering view's area within the global view
    cluster_flip: bool = True  # and it is mirrored half of the time
    mean: tuple[float, float, float] = IMAGENET_MEAN_01
    std: tuple[float, float, float] = IMAGENET_STD_01

    # -- losses --------------------------------------------------------------------------------
    cross_weight: NonNegative = 1.0
    vision_weight: NonNegative = 1.0
    cluster_weight: NonNegative = 1.0
    init_temperature: Positive = 0.07  # cross-modal, learnable; a CLIP init copies CLIP's instead
    vision_temperature: Positive = 0.1
    vision_teacher: Literal["none", "ema"] = "none"
    teacher_momentum: Probability = 0.996
    num_clusters: int = 20
    cluster_head: Literal["mlp", "linear"] = "mlp"
    cluster_lambda: NonNegative = 1.0  # IIC's weight on the marginal entropies (1.0 = mutual information)
    cluster_detach: bool = False  # stop the clustering gradient at the encoder
    cluster_global_stats: bool = False  # average the joint distribution over processes
    head_lr: Positive | None = None  # absolute lr of the new heads; None = the trainer's lr

    # -- inference -----------------------------------------------------------------------------
    score_temperature: Positive = 0.01
    bg_thresh: Probability = 0.5


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        summary="ViL-Seg as far as known: ViT-B/16 + CLIP text tower, both from OpenAI CLIP, fine-tuned on CC12M",
        model={},
        train=dict(
            steps=30_000,
            batch_size=128,  # per process; 8 processes give the 1024 the lr is set for
            lr=5e-6,
            lr_scale_batch=1024,
            min_lr=0.0,
            warmup_steps=1000,
            weight_decay=0.1,
            betas=(0.9, 0.98),
            eps=1e-6,
            grad_clip=1.0,
            precision="fp16",
        ),
    ),
    "paper-scratch": Preset(
        summary="ViL-Seg with both towers trained from scratch on CC12M (GroupViT-scale recipe)",
        model=dict(vision_init="scratch", text_init="scratch"),
        train=dict(
            steps=88_000,  # ~30 epochs of CC12M at a global batch of 4096
            batch_size=256,  # per process; 16 processes give 4096
            lr=1.6e-3,
            lr_scale_batch=4096,
            min_lr=1e-5,
            warmup_steps=5000,
            weight_decay=0.05,
            betas=(0.9, 0.98),
            eps=1e-6,
            grad_clip=1.0,
            precision="fp16",
        ),
    ),
    "tiny": Preset(
        summary="CPU-sized: a 2-block timm ViT from scratch + the tiny CLIP's text tower (tests)",
        model=dict(
            clip="tiny",
            vision_init="scratch",
            text_init="clip",
            vit_width=32,
            vit_depth=2,
            vit_heads=2,
            context_length=16,
            global_size=64,
            num_local=2,
            local_size=32,
            num_clusters=4,
        ),
        train=dict(steps=20, batch_size=8, lr=1e-3, warmup_steps=2, num_workers=0, checkpoint_every=10),
    ),
}
