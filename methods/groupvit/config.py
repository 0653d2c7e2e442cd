"""GroupViT's settings and presets. Defaults are the official values (NVlabs/GroupViT
``configs/{default,group_vit_gcc_yfcc_30e}.yml``, ``models/*.py`` and the segmentation configs
``segmentation/configs/_base_/datasets/*.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from textseg.api import Preset
from textseg.config import NonNegative, Positive, Probability
from textseg.testing.contract import CONTRACT_NOUNS
from textseg.text.nouns import NounConfig

#: The Penn Treebank tags whose words become prompts (``datasets/builder.py``, ``word_type: noun``):
#: nouns *and verbs*, despite the name.
WORD_TAGS = frozenset({"NN", "NNS", "NNP", "VBG", "VB", "VBD", "VBN", "VBP", "VBZ"})

#: The released background thresholds (``test_cfg.bg_thresh`` of the three dataset configs).
RELEASED_BG = {"voc21": 0.95, "context60": 0.35, "coco_object": 0.95}
#: The thresholds the paper states (VOC 0.9, Context 0.5); it gives none for COCO-Object, which
#: keeps the released value.
PAPER_BG = {"voc21": 0.9, "context60": 0.5, "coco_object": 0.95}


@dataclass(frozen=True)
class GroupViTConfig:
    """Every knob of the model, its training and its inference.

    Image encoder: ``patch_size`` patches of ``embed_dim`` channels (positional table for
    ``image_size``, resized bicubically for other sizes), ``depths`` blocks per stage with
    ``num_heads`` heads, ``num_group_tokens`` learned group tokens per stage (0: no grouping) and
    ``num_output_groups`` segments out of each grouping block; stochastic depth rises linearly to
    ``drop_path`` over the blocks. Text encoder: a causal transformer of ``text_width`` x
    ``text_layers`` with ``text_heads`` heads over ``context_length`` tokens of CLIP's BPE
    (``tokenizer``: a hub id or folder with CLIP tokenizer files, or ``tiny``). Both project into
    ``projection_dim`` through a 2-layer MLP with BatchNorm (hidden ``projection_hidden``).

    Training: the image-text contrastive loss with a learnable temperature (``temperature``
    init, exponential capped at ``max_logit_scale``), and with ``multi_label`` > 0 the multi-label
    loss (weight ``multi_label_weight``, its own temperature) against ``multi_label`` prompts made
    from the caption's words (``nouns`` backend, Penn tags :data:`WORD_TAGS`) in random
    ``prompt_templates``; the assignment is a straight-through Gumbel-softmax at ``gumbel_tau``.
    Training crops: ``train_size`` px, DeiT augmentation (``crop_scale``, ``auto_augment``,
    ``color_jitter``, ``re_prob``), ImageNet mean/std.

    Inference: the ``top_k`` classes of the whole window gate the group-to-class softmax;
    ``bg_thresh`` is the background threshold on benchmarks with a background class.
    """

    tokenizer: str = "nvidia/groupvit-gcc-yfcc"
    image_size: int = 224
    patch_size: int = 16
    embed_dim: int = 384
    depths: tuple[int, ...] = (6, 3, 3)
    num_heads: int = 6
    num_group_tokens: tuple[int, ...] = (64, 8, 0)
    num_output_groups: tuple[int, ...] = (64, 8)
    drop_path: Probability = 0.1
    text_width: int = 256
    text_layers: int = 12
    text_heads: int = 4
    context_length: int = 77
    projection_dim: int = 256
    projection_hidden: int = 4096
    temperature: Positive = 0.07
    max_logit_scale: Positive = 100.0
    multi_label: int = 3
    multi_label_weight: NonNegative = 1.0
    nouns: NounConfig = field(default_factory=NounConfig)
    prompt_templates: str = "openai80"
    gumbel_tau: Positive = 1.0
    train_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    auto_augment: str | None = "rand-m9-mstd0.5-inc1"
    color_jitter: NonNegative = 0.4
    re_prob: Probability = 0.25
    top_k: int = 5
    bg_thresh: Probability = 0.95

    @property
    def initial_logit_scale(self) -> float:
        return math.log(1 / self.temperature)


#: configs/group_vit_gcc_yfcc_30e.yml on default.yml: 30 epochs of CC3M + CC12M + YFCC14M
#: (2,891,445 + 11,156,203 + 14,615,499 pairs: 6,997 steps an epoch at 4096, floored as the
#: official loader does) with 2 warm-up epochs, 16 GPUs x 256, AdamW (eps 1e-8, wd 0.05), lr 1.6e-3 / warm-up 4e-6 / min 4e-5, each
#: scaled by global batch / 4096, clip 5, apex O1 (fp16 here).
PAPER_TRAIN = {
    "steps": 30 * 6997,
    "batch_size": 256,
    "lr": 1.6e-3,
    "min_lr": 4e-5,
    "lr_scale_batch": 4096,
    "warmup_steps": 2 * 6997,
    "warmup_start_factor": 4e-6 / 1.6e-3,
    "weight_decay": 0.05,
    "betas": (0.9, 0.999),
    "eps": 1e-8,
    "grad_clip": 5.0,
    "precision": "fp16",
    "seed": 0,
    "num_workers": 6,
    "shuffle_buffer": 10000,
    "checkpoint_every": 6997,
}

PRESETS = {
    "paper": Preset(
        "the released gcc-yfcc model and evaluation: GroupViT's protocol (one template, its class names), "
        "released background thresholds VOC 0.95 / Context 0.35 / COCO-Object 0.95; training: the "
        "gcc_yfcc_30e recipe with 3 prompts per caption",
        train=PAPER_TRAIN,
        protocol="groupvit",
        benchmarks={name: {"bg_thresh": value} for name, value in RELEASED_BG.items()},
    ),
    "paper-thresholds": Preset(
        "as paper, with the background thresholds the paper states (VOC 0.9, Context 0.5)",
        train=PAPER_TRAIN,
        protocol="groupvit",
        benchmarks={name: {"bg_thresh": value} for name, value in PAPER_BG.items()},
    ),
    "tcl-protocol": Preset(
        "GroupViT as TCL re-evaluated it (Table 2): TCL's unified protocol on 8 benchmarks with GroupViT's "
        "own inference and released thresholds",
        train=PAPER_TRAIN,
        protocol="tcl",
        benchmarks={name: {"bg_thresh": value} for name, value in RELEASED_BG.items()},
    ),
    "redcaps": Preset(
        "as paper, trained as the gcc_redcap_30e config: CC3M + CC12M + RedCaps12M (6,326 steps an "
        "epoch), no multi-label loss",
        model={"multi_label": 0},
        train={**PAPER_TRAIN, "steps": 30 * 6326, "warmup_steps": 2 * 6326, "checkpoint_every": 6326},
        protocol="groupvit",
        benchmarks={name: {"bg_thresh": value} for name, value in RELEASED_BG.items()},
    ),
    "tiny": Preset(
        "CPU-sized for tests: a random 3-stage GroupViT (32 channels, 8 then 4 groups), 1-layer text "
        "tower, the tiny tokenizer, 64 px training crops, 2 prompts from a lexicon",
        model={
            "tokenizer": "tiny",
            "image_size": 64,
            "embed_dim": 32,
            "depths": (1, 1, 1),
            "num_heads": 2,
            "num_group_tokens": (8, 4, 0),
            "num_output_groups": (8, 4),
            "text_width": 32,
            "text_layers": 1,
            "text_heads": 2,
            "context_length": 32,
            "projection_dim": 16,
            "projection_hidden": 32,
            "multi_label": 2,
            "nouns": {"backend": "lexicon", "lexicon": CONTRACT_NOUNS},
            "train_size": 64,
        },
        train={
            "steps": 4,
            "batch_size": 4,
            "lr": 1e-3,
            "min_lr": 1e-4,
            "warmup_steps": 1,
            "grad_clip": 5.0,
            "num_workers": 0,
            "shuffle_buffer": 16,
            "checkpoint_every": 2,
            "log_every": 1,
        },
    ),
}
