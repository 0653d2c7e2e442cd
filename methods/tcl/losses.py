"""TCL's losses (kakaobrain/tcl ``models/tcl/{mi,tcl}.py``), written for any number of processes.

Both contrastive losses use a learnable logit scale (init ``log(1 / 0.07)``; ``exp`` clamped at
100 from above only), L2-normalise with eps 1e-6, use *global* labels ``arange(B) + B * rank``,
gather across processes with gradient (:func:`textseg.distributed.gather_with_grad`, the
identity on one process) and average the two directions: ``0.5 * (CE_img + CE_txt)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from textseg.contrastive import clip_loss, symmetric_cross_entropy
from textseg.distributed import gather_with_grad, rank, world_size
from textseg.methods.tcl.masks import normalize

#: masked_pool's eps (TCL: 1e-6).
POOL_EPS = 1e-6


def masked_pool(embedding: Tensor, masks: Tensor) -> Tensor:
    """Mask-weighted average ``[B, N, C]`` of ``embedding`` ``[B, C, H, W]`` under ``masks`` ``[B, N, H, W]``.

    ``out[b, n] = Σ_hw E[b, :, h, w] M[b, n, h, w] / (Σ_hw M[b, n] + 1e-6)``; nothing is normalised.
    """
    weight = masks / (masks.sum(dim=(2, 3), keepdim=True) + POOL_EPS)
    return torch.einsum("bchw,bnhw->bnc", embedding, weight)


def tv_loss(x: Tensor) -> Tensor:
    """L1 total variation: mean |horizontal differences| + mean |vertical differences| over all elements."""
    horizontal = (x[..., :, :-1] - x[..., :, 1:]).abs().mean()
    vertical = (x[..., :-1, :] - x[..., 1:, :]).abs().mean()
    return horizontal + vertical


def area_loss(masks: Tensor, prior: float) -> Tensor:
    """``|mean(masks) - prior|``, the mean over every element (one scalar per batch)."""
    return (masks.mean() - prior).abs()


def info_nce(image_emb: Tensor, text_emb: Tensor, scale: Tensor) -> Tensor:
    """CLIP's loss (:func:`textseg.contrastive.clip_loss`) after TCL's L2 normalisation (eps 1e-6)."""
    return clip_loss(normalize(image_emb, -1), normalize(text_emb, -1), scale)


class _Contrastive(nn.Module):
    """A learnable logit scale and the symmetric cross-entropy with global labels."""

    def __init__(self, temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / temperature)))
        self.max_scale = max_scale

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=self.max_scale)

    def symmetric(self, logits_per_image: Tensor, logits_per_text: Tensor) -> Tensor:
        scale = self.scale()
        return symmetric_cross_entropy(scale * logits_per_image, scale * logits_per_text)


class InfoNCE(_Contrastive):
    """CLIP-style loss (:func:`info_nce`) with its own learnable logit scale."""

    def forward(self, image_emb: Tensor, text_emb: Tensor) -> Tensor:
        return info_nce(image_emb, text_emb, self.scale())


class ExtendedInfoNCE(_Contrastive):
    """TCL's feature-level loss on mask-pooled embeddings ``[B, N, C]`` (image ``b`` pooled with the
    mask of global text ``n``) and the local texts ``[B, C]``, ``N = B * world size``.

    * per image: ``logits[b, n] = <V[b, n], T[n]>`` — image ``b`` under text ``n``'s mask, against text ``n``;
    * per text: ``logits[b, n] = <V_global[n, rank * B + b], T[b]>`` — every global image ``n`` pooled
      with local text ``b``'s mask, against text ``b``. The images pooled with this process's texts
      (the ``rank``-th chunk along ``N``) are gathered from all processes.
    """

    def forward(self, pooled: Tensor, text_emb: Tensor) -> Tensor:
        batch, texts = pooled.shape[:2]
        if texts != batch * world_size():
            raise ValueError(
                f"pooled embeddings hold {texts} texts; expected batch x world = {batch * world_size()}"
            )
        image, text = normalize(pooled, -1), normalize(text_emb, -1)
        all_text = gather_with_grad(text)
        logits_per_image = torch.einsum("bnc,nc->bn", image, all_text)
        here = image.chunk(world_size(), dim=1)[rank()]  # [B local images, B local texts, C]
        all_here = gather_with_grad(here.contiguous())  # [N images, B local texts, C]
        logits_per_text = torch.einsum("nbc,bc->bn", all_here, text)
        return self.symmetric(logits_per_image, logits_per_text)
