"""NACLIP's settings: the constructor defaults of ``NACLIP`` in sinahmr/NACLIP."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.clip.segmentor import DenseCLIPConfig
from textseg.config import Positive


@dataclass(frozen=True)
class NACLIPConfig(DenseCLIPConfig):
    """NACLIP: the ``naclip`` last block (k-k attention plus a Gaussian neighbourhood bias with
    ``gaussian_std=5``, no residual, no MLP: ``arch='reduced'``; ``residual_mlp=True`` is
    ``arch='vanilla'``), positions by the ``+0.1`` scale factor, windows not padded, logits × 40,
    no ``prob_thd``, PAMR(10, dilations 8 and 16) on the full-size logits. Per-benchmark values are
    in the presets. See :class:`textseg.clip.segmentor.DenseCLIPConfig` for every field."""

    last_block: str = "naclip"
    gaussian_std: Positive = 5.0
    logit_scale: Positive = 40.0
    pamr: bool = True
