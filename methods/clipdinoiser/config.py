"""CLIP-DINOiser's settings and presets. Defaults are the official values
(wysoczanska/clip_dinoiser ``configs/clip_dinoiser.yaml``, ``configs/maskclip.yaml``,
``models/clip_dinoiser/clip_dinoiser.py``, ``train.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.api import Preset
from textseg.config import Positive, Probability

#: The official CLIP (``configs/maskclip.yaml``: ``ViT-B-16``, ``laion2b_s34b_b88k``).
LAION_VIT_B16 = "open_clip:ViT-B-16/laion2b_s34b_b88k"
#: FOUND's released decoder (valeoai/FOUND ``data/weights/decoder_weights.pt``, 2,689 bytes), the
#: background teacher's only weights beyond DINO ViT-S/8.
FOUND_DECODER_URL = "https://github.com/valeoai/FOUND/raw/main/data/weights/decoder_weights.pt"
FOUND_DECODER_SHA256 = "47ff2a4af3dbc6c80cb832cc81f8ed8ae81809e52576d0de5f9c754cf46ef9b5"


@dataclass(frozen=True)
class CLIPDINOiserConfig:
    """MaskCLIP features pooled by learned patch correlations, with a learned background head.

    ``clip``: any CLIP spelling (:mod:`textseg.clip.loading`; official: OpenCLIP LAION-2B ViT-B/16);
    ``tokenizer`` overrides its tokenizer. ``head_block``: the block whose ``ln_2`` output feeds
    both heads (official ``feats_idx=-3``: block 10 of 12), as a Python index into the blocks.
    ``head_dim`` / ``head_kernel``: the correlation head, a ``head_kernel``-square convolution with
    replicate padding to ``head_dim`` channels (official ``in_dim=256``, ``conv_kernel=3``).

    Inference: correlations below ``gamma`` are dropped before pooling (0.2); class probabilities
    are ``softmax(logit_scale * cosine)`` (MaskCLIP's ``cls_seg``: 100). With ``found`` and a
    vocabulary whose class 0 is background, a patch whose best probability is below ``delta``
    (0.99) and whose background head says background (sigmoid <= 0.5) gets probability 1 for
    background; the official evaluation turns this on for VOC21 and COCO-Object only.

    Training (teachers, loaded at the first training step and never saved): ``vfm`` gives the
    correlation targets (DINO ViT-B/16 value features, cosines >= ``gamma``), ``found_vfm`` with
    the 1x1 decoder ``found_decoder`` (a URL, a file, or ``random`` for tests) the background
    targets (FOUND: DINO ViT-S/8 key features). ``train_size``: square training crops (448),
    ``brightness``: ``ColorJitter(brightness)`` (0.5). ``background_lr``: the background head's
    learning rate (1e-2; the correlation head takes ``train.lr``, 5e-5).
    """

    clip: str = LAION_VIT_B16
    tokenizer: str | None = None
    text_cache: bool = True
    head_block: int = -3
    head_dim: int = 256
    head_kernel: int = 3
    gamma: Probability = 0.2
    delta: Probability = 0.99
    logit_scale: Positive = 100.0
    found: bool = True
    vfm: str = "dino_vitb16"
    found_vfm: str = "dino_vits8"
    found_decoder: str = FOUND_DECODER_URL
    train_size: int = 448
    brightness: float = 0.5
    background_lr: Positive = 1e-2


#: ``train.py`` with ``configs/clip_dinoiser.yaml``: 1,000 ImageNet images (``ds_size``), batch 16,
#: 100 epochs of 63 batches, AdamW (torch defaults: betas 0.9/0.999, eps 1e-8, weight decay 0.01 on
#: every parameter), lr 5e-5 (correlation head) / 1e-2 (background head), x0.1 at step 5,000, no
#: warmup, fp32, one GPU.
PAPER_TRAIN = {
    "steps": 6300,
    "batch_size": 16,
    "lr": 5e-5,
    "lr_milestones": (5000,),
    "lr_gamma": 0.1,
    "weight_decay": 0.01,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "precision": "no",
    "seed": 0,
    "num_workers": 4,
    "shuffle_buffer": 1000,
    "checkpoint_every": 630,
}

#: Only VOC21 and COCO-Object use the background head (``main_eval.py``: ``key in ["voc", "coco_object"]``).
NO_FOUND = {"context60": {"found": False}}

PRESETS = {
    "paper": Preset(
        "the released heads on OpenCLIP LAION-2B ViT-B/16 under CLIP-DINOiser's protocol (TCL's evaluation "
        "code: 448 windows, 80 templates, background as text, FOUND background on VOC21 and COCO-Object); "
        "training: 6,300 steps of 16 images, DINO ViT-B/16 and FOUND teachers",
        train=PAPER_TRAIN,
        protocol="clipdinoiser",
        benchmarks=NO_FOUND,
    ),
    "tiny": Preset(
        "CPU-sized for tests: a tiny random CLIP, 16-channel correlation head, tiny random DINO teachers "
        "and FOUND decoder, 64 px training crops",
        model={
            "clip": "tiny",
            "head_dim": 16,
            "vfm": "tiny-dino16",
            "found_vfm": "tiny-dino8",
            "found_decoder": "random",
            "train_size": 64,
        },
        train={
            "steps": 4,
            "batch_size": 4,
            "lr": 1e-3,
            "num_workers": 0,
            "shuffle_buffer": 16,
            "checkpoint_every": 2,
            "log_every": 1,
        },
        protocol="clipdinoiser",
        benchmarks=NO_FOUND,
    ),
}
