"""ProxyCLIP's settings: the constructor defaults of ``ProxyCLIPSegmentation`` in mc-lan/ProxyCLIP."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.clip.segmentor import DenseCLIPConfig
from textseg.config import Positive


@dataclass(frozen=True)
class ProxyCLIPConfig(DenseCLIPConfig):
    """ProxyCLIP (``proxyclip_segmentor.py:30-31`` and ``configs/base_config.py`` at e7b767f).

    ``vfm``: the proxy, any :func:`textseg.backbones.load_vfm` spelling (official default DINO
    ViT-B/8, ``dino_vitb8``; ``tiny-dino8`` etc. in tests). ``vfm_size``: resize every window
    (bilinearly, after ImageNet normalisation) to ``vfm_size x vfm_size`` before the proxy, as the
    official code does for SAM (1024) and MAE (``slide_crop``); None: the window as it is (DINO,
    DINOv2). ``beta``, ``gamma``: the proxy attention's threshold and sharpness,
    ``A = softmax(γ (S - β mean S))`` with negative entries masked. ``pad_multiple``: windows are
    zero-padded (centred) to a multiple of it (56) when ``pad`` is True (always, officially).

    CLIP's last block is ProxyCLIP's own computation, so ``last_block``, ``residual_mlp`` and
    ``gaussian_std`` of :class:`DenseCLIPConfig` must stay unset. Positions by the ``+0.1`` scale
    factor, logits × 40, no ``prob_thd``, no PAMR, no ``area_thd``; per-benchmark values are in the
    presets.
    """

    vfm: str = "dino_vitb8"
    vfm_size: int | None = None
    beta: Positive = 1.2
    gamma: Positive = 3.0
    pad: bool = True
    pad_multiple: int = 56
