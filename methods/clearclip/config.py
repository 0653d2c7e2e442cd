"""ClearCLIP's settings: the constructor defaults of ``ClearCLIPSegmentation`` in mc-lan/ClearCLIP."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.clip.segmentor import DenseCLIPConfig
from textseg.config import Positive


@dataclass(frozen=True)
class ClearCLIPConfig(DenseCLIPConfig):
    """ClearCLIP: the ``qq`` last block (q-q attention, no residual, no MLP; ``residual_mlp=True``
    is the repository's ``ignore_residual=False``), positions by the ``+0.1`` scale factor, windows
    zero-padded (centred) to a multiple of 16, logits × 50, no ``prob_thd``. Per-benchmark values
    are in the presets. See :class:`textseg.clip.segmentor.DenseCLIPConfig` for every field."""

    last_block: str = "qq"
    pad: bool = True
    logit_scale: Positive = 50.0
