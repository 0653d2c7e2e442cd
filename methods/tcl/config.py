"""TCL's settings and presets. Defaults are the official values (kakaobrain/tcl ``configs/tcl.yml``,
``configs/eval.yml`` and constants hard-coded in ``models/tcl``)."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.api import Preset
from textseg.clip import DEFAULT_CLIP
from textseg.clip.positions import PositionMode
from textseg.clip.text import TemplateAverage
from textseg.config import NonNegative, Positive, Probability
from textseg.evaluation.pamr import TCL_DILATIONS


@dataclass(frozen=True)
class TCLConfig:
    """Every knob of the model, its losses and its inference.

    Model: ``clip`` (any CLIP spelling: hub id, folder, OpenAI file, ``open_clip:ARCH/TAG``, ``tiny``;
    ``tokenizer`` overrides where the tokenizer comes from), ``positions`` (position interpolation; TCL's is ``size``), ``last_block``
    (the variant of the frozen and copied last block; TCL's diagonal attention is ``self``), and the
    decoder: ``decoder_layers`` stages of x2 upsampling, two gated convolutions per stage if
    ``decoder_double``, ``decoder_kernel``.

    Masks: Sim2Mask ``w`` / ``b`` initial values, whether they learn, Gumbel ``tau``.

    Training: loss weights ``tcl_w`` (both TCL losses), ``area_w``, ``tv_w`` and ``neg_area_w`` (the
    negative area term's own weight; ``None``, TCL's case, uses ``area_w``); area priors
    ``pos_area`` (hard-coded 0.4 officially) and ``neg_area``; the contrastive ``temperature`` init
    and the logit-scale clamp ``max_logit_scale``; ``ust_steps`` (the copied block stays frozen
    before this step); the training crop ``image_size`` and augmentation (``crop_scale``,
    ``auto_augment``, ``color_jitter`` (timm ignores it while RandAugment is on), ``re_prob``).

    Inference: ``pamr`` with ``pamr_iterations`` / ``pamr_dilations``; the kp branch ``kp_w`` with
    its constants ``kp_center`` / ``kp_scale``; ``bg_thresh`` (the background score on benchmarks
    with a background class); ``text_average`` (how template embeddings are averaged; TCL: ``raw``).
    """

    clip: str = DEFAULT_CLIP
    tokenizer: str | None = None
    positions: PositionMode = "size"
    last_block: str = "self"
    decoder_layers: int = 2
    decoder_double: bool = True
    decoder_kernel: int = 3
    sim2mask_w: float = 10.0
    sim2mask_b: float = -2.5
    sim2mask_learnable: bool = True
    gumbel_tau: Positive = 1.0
    tcl_w: NonNegative = 0.1
    area_w: NonNegative = 0.4
    tv_w: NonNegative = 1.0
    neg_area_w: NonNegative | None = None
    pos_area: Probability = 0.4
    neg_area: Probability = 0.0
    temperature: Positive = 0.07
    max_logit_scale: Positive = 100.0
    ust_steps: int = 30000
    image_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: NonNegative = 0.4
    re_prob: Probability = 0.25
    pamr: bool = True
    pamr_iterations: int = 10
    pamr_dilations: tuple[int, ...] = TCL_DILATIONS
    kp_w: Probability = 0.3
    kp_center: float = 0.25
    kp_scale: Positive = 10.0
    bg_thresh: Probability = 0.4
    text_average: TemplateAverage = "raw"


#: The training recipe of configs/tcl.yml (README: 16 GPUs x 64). lr and min_lr are the config values,
#: scaled by global batch / 4096 as main.py does; warmup is LinearLR from 1e-4 of the base.
PAPER_TRAIN = {
    "steps": 50000,
    "batch_size": 64,
    "lr": 3e-4,
    "min_lr": 4e-5,
    "lr_scale_batch": 4096,
    "warmup_steps": 15000,
    "warmup_start_factor": 1e-4,
    "weight_decay": 0.05,
    "betas": (0.9, 0.999),
    "eps": 1e-6,
    "grad_clip": 5.0,
    "precision": "fp16",
    "seed": 0,
    "num_workers": 6,
    "shuffle_buffer": 40000,
    "checkpoint_every": 5000,
}

PRESETS = {
    "paper": Preset(
        "the published recipe: PAMR on, background 0.4, kp_w 0.3 (Table 2); CC3M+CC12M training",
        model={"pamr": True, "bg_thresh": 0.4, "kp_w": 0.3},
        train=PAPER_TRAIN,
    ),
    "paper-no-pamr": Preset(
        "the paper's ablation without PAMR: background 0.5, kp_w 0.3 (appendix Table 3)",
        model={"pamr": False, "bg_thresh": 0.5, "kp_w": 0.3},
        train=PAPER_TRAIN,
    ),
    "tiny": Preset(
        "CPU-sized for tests: tiny random CLIP, 96 px training crops, 2 PAMR iterations, the copied "
        "block unfreezes at step 2",
        model={"clip": "tiny", "image_size": 96, "ust_steps": 2, "pamr_iterations": 2},
        train={
            "steps": 4,
            "batch_size": 4,
            "lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 1,
            "eps": 1e-6,
            "grad_clip": 5.0,
            "num_workers": 0,
            "shuffle_buffer": 16,
            "checkpoint_every": 2,
            "log_every": 1,
        },
    ),
}
