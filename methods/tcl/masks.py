"""From a per-pixel embedding and text embeddings to masks: cosine map, Sim2Mask, straight-through
Gumbel-sigmoid, and the split into the paired ("positive") and other ("negative") texts.

Official code: ``models/tcl/{gumbel,masker}.py`` (``gumbel_sigmoid``, ``Sim2Mask``,
``Masker.forward``). Normalisation uses eps 1e-6 everywhere (``us.normalize``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: TCL's ``us.normalize`` eps, large on purpose for fp16.
NORM_EPS = 1e-6


def normalize(x: Tensor, dim: int) -> Tensor:
    """L2 normalisation with TCL's eps: ``x / max(|x|, 1e-6)``."""
    return F.normalize(x, dim=dim, eps=NORM_EPS)


def cosine_map(image_emb: Tensor, text_emb: Tensor) -> Tensor:
    """Cosine of every pixel of ``[B, D, H, W]`` with every text ``[N, D]`` -> ``[B, N, H, W]``."""
    return torch.einsum("bchw,nc->bnhw", normalize(image_emb, 1), normalize(text_emb, -1))


def gumbel_sigmoid(logits: Tensor, tau: float = 1.0, hard: bool = False) -> Tensor:
    """Sigmoid of ``(logits + logistic noise) / tau``; with ``hard``, the straight-through 0/1 version.

    The noise is ``log(U / (1 - U))`` for ``U ~ U[0, 1)`` (no eps: ``U = 0`` gives a 0 mask value).
    ``hard`` returns ``y_hard - y_soft.detach() + y_soft``: forward values are exactly 0 or 1
    (``y_soft > 0.5``, strict), gradients are those of ``y_soft``.
    """
    uniform = torch.rand_like(logits)
    noise = torch.log(uniform / (1 - uniform))
    soft = torch.sigmoid((logits + noise) / tau)
    if not hard:
        return soft
    return (soft > 0.5).to(soft.dtype) - soft.detach() + soft


class Sim2Mask(nn.Module):
    """``logits = w * similarity + b`` with 0-dim ``w`` (init 10) and ``b`` (init -2.5).

    Returns ``(hard, soft)``: ``soft = sigmoid(logits)``; ``hard`` is the straight-through Gumbel
    sample in training (``deterministic=False``) and ``soft > 0.5`` otherwise.
    """

    def __init__(self, init_w: float = 10.0, init_b: float = -2.5, tau: float = 1.0, learnable: bool = True):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(init_w)), requires_grad=learnable)
        self.b = nn.Parameter(torch.tensor(float(init_b)), requires_grad=learnable)
        self.tau = tau

    def forward(self, similarity: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor]:
        logits = similarity * self.w + self.b
        soft = torch.sigmoid(logits)
        hard = (soft > 0.5).to(soft.dtype) if deterministic else gumbel_sigmoid(logits, self.tau, hard=True)
        return hard, soft


@dataclass
class PairMasks:
    """Masks of each image with every text of the global batch, split by pairing.

    ``pos``: the hard (straight-through) mask of the paired text ``[B, 1, H, W]``; ``soft_pos`` its
    soft mask; ``soft_neg`` the soft masks of the other ``N - 1`` texts in ascending global order
    ``[B, N - 1, H, W]``; ``soft_all`` every soft mask ``[B, N, H, W]``.
    """

    pos: Tensor
    soft_pos: Tensor
    soft_neg: Tensor
    soft_all: Tensor


def split_pairs(hard: Tensor, soft: Tensor, offset: int) -> PairMasks:
    """Split ``[B, N, H, W]`` masks where image ``b`` is paired with global text ``offset + b``."""
    batch, texts = soft.shape[:2]
    rows = torch.arange(batch, device=soft.device)
    paired = rows + offset
    others = torch.ones(batch, texts, dtype=torch.bool, device=soft.device)
    others[rows, paired] = False
    return PairMasks(
        pos=hard[rows, paired].unsqueeze(1),
        soft_pos=soft[rows, paired].unsqueeze(1),
        soft_neg=soft[others].view(batch, texts - 1, *soft.shape[2:]),
        soft_all=soft,
    )
