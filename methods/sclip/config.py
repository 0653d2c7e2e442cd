"""SCLIP's settings: the constructor defaults of ``CLIPForSegmentation`` in wangf3014/SCLIP."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.clip.segmentor import DenseCLIPConfig
from textseg.config import Positive


@dataclass(frozen=True)
class SCLIPConfig(DenseCLIPConfig):
    """SCLIP: the ``csa`` last block (q-q + k-k attention, residual and MLP kept), positions by the
    ``+0.1`` scale factor, windows not padded, logits × 40, no ``prob_thd``, no ``area_thd``, no
    PAMR (``pamr_steps=0`` in every config). Per-benchmark values are in the presets. See
    :class:`textseg.clip.segmentor.DenseCLIPConfig` for every field."""

    last_block: str = "csa"
    logit_scale: Positive = 40.0
