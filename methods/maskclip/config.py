"""MaskCLIP's settings. Every field is a documented choice; see README.md for why each default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textseg.clip.loading import DEFAULT_CLIP
from textseg.config import Positive, Probability


@dataclass(frozen=True)
class MaskCLIPConfig:
    """Training-free dense CLIP with a changed last block.

    ``clip``: any CLIP spelling (hub id, folder, OpenAI ``.pt`` file, ``open_clip:ARCH/TAG``, ``tiny``;
    see :mod:`textseg.clip.loading`); ``tokenizer``: overrides where the tokenizer comes from (weights
    without one, OpenAI files and OpenCLIP, get OpenAI's BPE from the installed open_clip_torch).
    ``last_block``: a :data:`textseg.clip.LAST_BLOCKS` variant (``self`` = official MaskCLIP,
    ``value`` = ClearCLIP's "MaskCLIP": no residual, no MLP). ``positions``: ``size`` (MaskCLIP/TCL)
    or ``scale`` (SCLIP family). ``template_average``: ``raw`` (TCL's protocol code) or ``unit``
    (official MaskCLIP's prompt engineering).

    Scores: ``score="sigmoid"`` returns ``sigmoid((cos - score_center) * score_scale)`` (TCL's kp
    branch, the MaskCLIP computation inside TCL's evaluation code); ``score="cosine"`` returns the raw
    cosine (official MaskCLIP). ``bg_thresh`` is compared with these scores on benchmarks with a
    background class, so it must be chosen for the score in use (0.5 with the sigmoid = cosine 0.25).

    ``pamr``: refine the scores with PAMR(10, dilations 1..24) at 1/4 of the crop, as TCL refines
    its masks (off in the re-evaluated baseline as far as is known).

    The method does not normalise images: the protocol does (``tcl``: ImageNet mean/std, as official
    MaskCLIP and TCL do, although CLIP was trained with its own statistics).
    """

    clip: str = DEFAULT_CLIP
    tokenizer: str | None = None
    last_block: str = "self"
    positions: Literal["size", "scale"] = "size"
    template_average: Literal["raw", "unit"] = "raw"
    score: Literal["sigmoid", "cosine"] = "sigmoid"
    score_center: float = 0.25
    score_scale: Positive = 10.0
    bg_thresh: Probability = 0.5
    pamr: bool = False
    text_cache: bool = True
