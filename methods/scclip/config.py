"""SC-CLIP's settings: the constructor defaults of ``SCCLIPForSegmentation`` in SuleBai/SC-CLIP."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textseg.clip.segmentor import DenseCLIPConfig


@dataclass(frozen=True)
class SCCLIPConfig(DenseCLIPConfig):
    """SC-CLIP (``scclip_segmentor.py:19-22`` and ``configs/base_config.py`` at 0417ba9).

    Layer indices are the official ones: ``i`` is the output of block ``i + 1`` (the list of the
    first ``L - 1`` blocks' outputs, 0-based). ``pre_adjust_idx``: the layer whose (anomaly-fixed)
    patch similarity aggregates the tokens before the last block and drives its attention;
    ``post_adjust_idx``: the layer whose similarity aggregates its output; ``multi_start_idx`` ..
    ``multi_end_idx - 1``: the layers summed for the multi-level branch; ``res_cls``: the weight of
    the penultimate class token added to every patch. ViT-B/16: 8, 3, 3, 10, 0.3 (the defaults);
    ViT-L/14: 16, 6, 8, 19, 0.1 (preset ``l14``). ``outliers``: how anomaly tokens are found,
    ``lof`` (the released code: local outlier factor, top 5 %) or ``norm`` (the first commit,
    74471da: the 10 tokens of largest norm).

    Positions by the ``+0.1`` scale factor, windows not padded, logits × 40, no ``prob_thd``, no
    ``area_thd``, no PAMR (``pamr_steps=0`` everywhere); per-benchmark values are in the presets.
    SC-CLIP replaces CLIP's last block by its own computation, so ``last_block``,
    ``residual_mlp``, ``gaussian_std`` and ``pad`` of :class:`DenseCLIPConfig` must stay unset.
    """

    pre_adjust_idx: int = 8
    post_adjust_idx: int = 3
    multi_start_idx: int = 3
    multi_end_idx: int = 10
    res_cls: float = 0.3
    outliers: Literal["lof", "norm"] = "lof"
