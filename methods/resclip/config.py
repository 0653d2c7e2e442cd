"""ResCLIP's settings: ``ResCLIPSegmentation`` in yvhangyang/ResCLIP, with the values its demo uses."""

from __future__ import annotations

from dataclasses import dataclass

from textseg.clip.segmentor import DenseCLIPConfig


@dataclass(frozen=True)
class ResCLIPConfig(DenseCLIPConfig):
    """ResCLIP (``resclip_segmentor.py:23-26``, ``clip/model.py`` at 6b082d9) on a base method.

    The base is the last block's attention (``eval.py --attn``): ``last_block`` ``naclip`` (the
    official ``resclip`` strategy, the same code as ``naclip``: ``s k kᵀ`` plus NACLIP's Gaussian
    ``Ω``), ``qq`` (``clearclip``: ``s q qᵀ``), ``csa`` (``sclip``: ``softmax(s q qᵀ) + softmax(s k kᵀ)``)
    or ``vanilla`` (``s q kᵀ``). ``residual_mlp`` is ``--arch`` (``w_resi`` True, ``wo_resi``
    False; None: the base's own, as NACLIP, ClearCLIP, SCLIP and CLIP have it; ``csa`` requires
    it). ``gaussian_std`` (``--std``) is σ of ``Ω`` and of SFR's row blur.

    RCS: the mean attention map of the blocks ``rcs_layers`` (0-based indices into blocks
    ``1 .. L-1``; the code's fixed ``range(5, 9)``, blocks 6-9, for every backbone) mixed into the
    last block's attention as ``τ [(1 - λ) A + λ A_rcs]`` with ``attn_rcs_weights = (τ, λ)``.
    SFR: a first pass labels each patch (the mode of the pixels' best query after PAMR, 0 below
    ``temp_thd``); the same-label matrix (decayed across other labels when
    ``delete_same_entity``), blurred and normalised, is mixed into the attention logits with
    ``attn_sfr_weights``. ``use_rcs`` / ``use_sfr`` switch the two off for ablations (the official
    switches are 1-tuples, always true, so the released code cannot).

    ``temp_thd``, ``attn_rcs_weights`` and ``attn_sfr_weights`` have no default in the official
    constructor; these defaults are ``demo.py``'s (equal to ``cfg_voc20.py``), and the presets set
    each benchmark's. Every config sets ``delete_same_entity=True``; logits × 40, no ``prob_thd``,
    no final PAMR (``pamr_steps=0``), windows not padded.
    """

    last_block: str = "naclip"
    temp_thd: float = 0.10
    attn_rcs_weights: tuple[float, float] = (2.0, 0.6)
    attn_sfr_weights: tuple[float, float] = (2.1, 0.6)
    rcs_layers: tuple[int, ...] = (5, 6, 7, 8)
    delete_same_entity: bool = True
    use_rcs: bool = True
    use_sfr: bool = True
