"""Talk2DINO's settings and presets. Defaults are the official values (lorebianchi98/Talk2DINO
``configs/vitb_mlp_infonce.yaml``, ``src/model.py``, ``src/loss.py``, ``src/train_util.py`` and the
evaluation configs ``src/open_vocabulary_segmentation/configs/<dataset>/*.yml``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from textseg.api import Preset
from textseg.config import NonNegative, Positive, Probability
from textseg.evaluation.pamr import TCL_DILATIONS

#: Benchmarks whose released ``dinotext_*_mlp_infonce.yml`` sets ``with_bg_clean: true``. The
#: Context-with-background configs do not (``context_bg/dinotext_context_bg_*.yml``).
BG_CLEAN_BENCHMARKS = ("voc21", "coco_object")
#: Benchmarks with a background class and their ``bg_thresh`` (``eval_*_bg_pamr.yml``,
#: ``eval_coco_object_pamr.yml``): 0.55 for ViT-B, 0.54 for ViT-L. Without background the value
#: (0.4 in those files) is never used.
BACKGROUND_BENCHMARKS = ("voc21", "context60", "coco_object")


@dataclass(frozen=True)
class Talk2DINOConfig:
    """Every knob of the model, its training and its inference.

    Backbones (frozen): ``clip`` (any CLIP spelling, :func:`textseg.backbones.load_clip_backbone`;
    officially OpenAI's ViT-B/16, whose projected end-of-text embedding is the input) and ``vfm``
    (:func:`textseg.backbones.load_vfm`; officially DINOv2 ViT-B/14 with registers).

    Projection (``ProjectionLayer``): a Linear from CLIP's embedding to DINOv2's width, then
    ``hidden_layers`` x (``activation``, Linear width -> width). ``attn_scale`` multiplies ``q_cls ·
    k_patch`` in the CLS-attention logits (the official code fixes 0.125 = 64^-0.5, DINOv2-B/L's
    head dimension, whatever the model).

    Training: symmetric InfoNCE at the fixed temperature ``temperature`` between each caption's
    projection and its image's best-matching head embedding (``max_score``), divided by the squared
    batch size; images resized (short side, bicubic) and centre-cropped to ``train_size``.

    Inference: each window is resized to ``resize_dim`` square; scores are sigmoid(cosine) at the
    patch grid; ``bg_clean`` blends in the text-weighted CLS attention with weight
    ``bg_clean_weight``; bilinear upsampling (``align_corners=True``) to the window, then ``pamr``
    (``pamr_iterations`` over ``pamr_dilations``) on the window; ``bg_thresh`` is the constant
    background score on benchmarks with background.
    """

    clip: str = "openai/clip-vit-base-patch16"
    vfm: str = "dinov2_vitb14_reg"
    hidden_layers: int = 1
    activation: Literal["tanh", "relu", "sigmoid", "none"] = "tanh"
    attn_scale: Positive = 0.125
    temperature: Positive = 0.07
    context_length: int = 77
    train_size: int = 448
    resize_dim: int = 448
    bg_clean: bool = False
    bg_clean_weight: NonNegative = 0.2
    pamr: bool = True
    pamr_iterations: int = 10
    pamr_dilations: tuple[int, ...] = TCL_DILATIONS
    bg_thresh: Probability = 0.55

    @property
    def logit_scale(self) -> float:
        """``exp(log(1 / temperature))``: the loss's ``logit_scale``, never optimised officially."""
        return math.exp(math.log(1 / self.temperature))


#: COCO 2014 train captions, one sample per caption (``DinoClipDataset``): 414,113 captions of 82,783
#: images (the published counts of ``captions_train2014.json``; not counted here), batch 128 (the
#: DataLoader keeps the last partial batch: 3,236 steps an epoch), 100 epochs, Adam at a constant 1e-4
#: (no weight decay, no schedule: ``scheduler='linear'`` with no warm-up is None), no gradient
#: clipping, seed 123; the last epoch's weights are kept.
PAPER_TRAIN = {
    "steps": 100 * 3236,
    "batch_size": 128,
    "lr": 1e-4,
    "min_lr": 1e-4,
    "warmup_steps": 0,
    "weight_decay": 0.0,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "grad_clip": None,
    "precision": "no",
    "seed": 123,
    "num_workers": 8,
    "checkpoint_every": 3236,
}


def _per_benchmark(bg_thresh: float) -> dict[str, dict[str, object]]:
    settings: dict[str, dict[str, object]] = {
        name: {"bg_thresh": bg_thresh} for name in BACKGROUND_BENCHMARKS
    }
    for name in BG_CLEAN_BENCHMARKS:
        settings[name]["bg_clean"] = True
    return settings


PRESETS = {
    "paper": Preset(
        "the released ViT-B model (DINOv2-B/14-reg, CLIP ViT-B/16) and the README's evaluation: PAMR, "
        "background 0.55, background cleaning on VOC and COCO-Object; training: COCO 2014 captions, 100 epochs",
        train=PAPER_TRAIN,
        protocol="talk2dino",
        benchmarks=_per_benchmark(0.55),
    ),
    "paper-no-pamr": Preset(
        "as paper without PAMR (the eval_<dataset>.yml files)",
        model={"pamr": False},
        train=PAPER_TRAIN,
        protocol="talk2dino",
        benchmarks=_per_benchmark(0.55),
    ),
    "vitl": Preset(
        "the released ViT-L model (DINOv2-L/14-reg, CLIP ViT-B/16): PAMR, background 0.54, background "
        "cleaning on VOC and COCO-Object",
        model={"vfm": "dinov2_vitl14_reg"},
        train=PAPER_TRAIN,
        protocol="talk2dino",
        benchmarks=_per_benchmark(0.54),
    ),
    "tiny": Preset(
        "CPU-sized for tests: tiny random CLIP and DINOv2-with-registers stand-ins, 56 px, PAMR of 2 iterations "
        "over dilations 1 and 2",
        model={
            "clip": "tiny",
            "vfm": "tiny-dinov2-reg",
            "train_size": 56,
            "resize_dim": 56,
            "pamr_iterations": 2,
            "pamr_dilations": (1, 2),
        },
        train={
            "steps": 4,
            "batch_size": 4,
            "lr": 1e-3,
            "min_lr": 1e-3,
            "weight_decay": 0.0,
            "num_workers": 0,
            "shuffle_buffer": 16,
            "checkpoint_every": 2,
            "log_every": 1,
        },
        protocol="talk2dino",
        benchmarks=_per_benchmark(0.55),
    ),
}
