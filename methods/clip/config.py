"""The ``clip`` method's settings and presets: MaskCLIP's scoring knobs, CLIP's last block unchanged,
and CLIP's own image-caption training."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.api import Preset
from textseg.config import Positive
from textseg.methods.maskclip.config import MaskCLIPConfig

#: CLIP's image statistics (0-1 units), what CLIP normalises its training images with.
CLIP_MEAN_01 = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD_01 = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPBaselineConfig(MaskCLIPConfig):
    """Plain CLIP as a dense baseline, and CLIP's training (see README.md).

    Inference (every field of :class:`~textseg.methods.maskclip.config.MaskCLIPConfig`): the last
    block runs ``vanilla`` (unmodified softmax attention with residual and MLP), then
    ``post_layernorm`` + projection on every patch token, cosine with the class text, scored as
    ``sigmoid((cos - score_center) * score_scale)`` against ``bg_thresh``.

    Training: CLIP's symmetric contrastive loss between the class-token image embedding and the
    end-of-text caption embedding over the global batch, with CLIP's own learnable ``logit_scale``
    (its exponential capped at ``max_logit_scale``); every CLIP weight trains. Training images are
    random square crops (``crop_scale`` of the area, bicubic) resized to ``image_size`` and
    normalised with ``mean`` / ``std`` (CLIP's statistics by default).
    """

    last_block: str = "vanilla"
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.9, 1.0)
    mean: tuple[float, float, float] = CLIP_MEAN_01
    std: tuple[float, float, float] = CLIP_STD_01
    max_logit_scale: Positive = 100.0


#: CLIP's recipe for ViT-B/16 (Radford et al. 2021, hyperparameter table): 32 epochs of 400M pairs at
#: a global batch of 32768, AdamW (β2 0.98, eps 1e-6, weight decay 0.2), 2000 warmup steps, cosine
#: decay, peak lr 5e-4, mixed precision. Recorded from the paper as recalled, not re-checked here.
PAPER_TRAIN = {
    "steps": 390_625,
    "batch_size": 128,  # per process: 256 processes give 32768
    "lr": 5e-4,
    "lr_scale_batch": 32768,
    "min_lr": 0.0,
    "warmup_steps": 2000,
    "weight_decay": 0.2,
    "betas": (0.9, 0.98),
    "eps": 1e-6,
    "precision": "fp16",
}

PRESETS = {
    "paper": Preset(
        "plain CLIP ViT-B/16 under the unified tcl protocol (MaskCLIP's sigmoid score, background 0.5); "
        "training: CLIP's ViT-B/16 recipe",
        model={},
        train=PAPER_TRAIN,
    ),
    "tiny": Preset(
        "CPU-sized for tests: the tiny random CLIP, 64 px training crops",
        model={"clip": "tiny", "image_size": 64},
        train={
            "steps": 4,
            "batch_size": 8,
            "lr": 1e-3,
            "warmup_steps": 1,
            "weight_decay": 0.2,
            "betas": (0.9, 0.98),
            "eps": 1e-6,
            "num_workers": 0,
            "shuffle_buffer": 16,
            "checkpoint_every": 2,
            "log_every": 1,
        },
    ),
}
