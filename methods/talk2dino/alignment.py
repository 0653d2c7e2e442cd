"""Talk2DINO's distinctive steps, as functions of tensors (lorebianchi98/Talk2DINO).

Training (``dino_extraction_v2.py``, ``src/model.py`` ``ProjectionLayer.compute_similarity``,
``src/loss.py``):

1. :func:`head_embeddings` — one embedding per attention head of the last DINOv2 block: the patch
   tokens averaged with the softmax (over patches) of that head's CLS-to-patch logits. The official
   code takes the *mean* of the weighted tokens (the weighted sum / number of patches); the factor
   disappears when the embeddings are normalised.
2. :func:`select_heads` — ``max_score``: each caption keeps the head of its own image whose
   (normalised) embedding is most similar to its (normalised) projection.
3. :func:`alignment_loss` — CLIP's symmetric InfoNCE between the captions and their selected
   heads, logits scaled by a fixed ``1 / 0.07``, divided by the squared batch size.

Inference (``models/dinotext/dinotext.py`` ``similarity_assignment_weighted``):
:func:`clean_background` blends the per-class scores with a per-class attention map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.contrastive import clip_loss
from textseg.distributed import world_size


def head_embeddings(tokens: Tensor, logits: Tensor) -> Tensor:
    """``tokens`` ``[B, P, C]`` (patches), ``logits`` ``[B, H, P]`` (CLS attention per head) ->
    ``[B, H, C]``: ``mean_p softmax_p(logits_h)_p · tokens_p`` for each head ``h``."""
    return (logits.softmax(dim=-1).unsqueeze(-1) * tokens.unsqueeze(1)).mean(dim=2)


def select_heads(text: Tensor, heads: Tensor) -> tuple[Tensor, Tensor]:
    """``max_score``: for L2-normalised ``text`` ``[B, D]`` and ``heads`` ``[B, H, D]``, the index of
    the head of its own image that each caption matches best ``[B]`` and that head ``[B, D]``."""
    index = torch.einsum("bd,bhd->bh", text, heads).softmax(dim=-1).argmax(dim=-1)
    return index, heads[torch.arange(heads.shape[0], device=heads.device), index]


def alignment_loss(text: Tensor, heads: Tensor, logit_scale: float) -> tuple[Tensor, Tensor]:
    """The training loss and the selected head indices, from projected captions ``[B, D]`` and
    their images' head embeddings ``[B, H, D]`` (neither normalised yet).

    Every caption's positive is its own image's selected head; the negatives are the other
    captions' selected heads (``S_ij = t_i · v_j``, the head of image ``j`` chosen by caption ``j``),
    gathered over processes. Divided by the squared global batch size, as ``Contrastive`` does.
    """
    text = F.normalize(text, dim=-1)
    index, chosen = select_heads(text, F.normalize(heads, dim=-1))
    batch = text.shape[0] * world_size()
    scale = torch.as_tensor(logit_scale, dtype=text.dtype, device=text.device)
    return clip_loss(chosen, text, scale) / batch**2, index


def clean_background(scores: Tensor, features: Tensor, logits: Tensor, text: Tensor, weight: float) -> Tensor:
    """Background cleaning: ``(scores + weight · m) / (1 + weight)``, image by image.

    ``scores`` ``[B, N, h, w]`` (sigmoid cosines), ``features`` ``[B, C, h, w]`` (raw DINOv2 patch
    features), ``logits`` ``[B, H, h*w]`` (raw CLS-attention logits), ``text`` ``[N, C]`` (normalised
    projections). For each head, the patch features averaged with the *raw* logits as weights and
    normalised; each name weights the heads by the softmax (over heads) of its similarity to them;
    its map ``m`` is the softmax over patches of the weighted logits. Over all names and patches of
    the image, ``m`` is shifted by its minimum, divided by ``max(max, max - min)`` (the official
    expression; the maximum itself for the positive softmax values) and mapped onto the scores'
    range ``[min, max]``.
    """
    b, n, h, w = scores.shape
    flat = features.flatten(2)  # [B, C, P]
    heads = F.normalize((logits.unsqueeze(2) * flat.unsqueeze(1)).mean(dim=-1), dim=-1)  # [B, H, C]
    weights = torch.einsum("nc,bhc->bnh", text, heads).softmax(dim=-1)  # [B, N, H]
    per_name = torch.einsum("bnh,bhp->bnp", weights, logits) / weights.sum(-1, keepdim=True)
    attention = per_name.softmax(dim=-1)  # [B, N, P]
    low = attention.amin(dim=(1, 2), keepdim=True)
    high = attention.amax(dim=(1, 2), keepdim=True)
    attention = (attention - low) / torch.maximum(high, high - low)
    flat_scores = scores.flatten(2)
    lowest = flat_scores.amin(dim=(1, 2), keepdim=True)
    highest = flat_scores.amax(dim=(1, 2), keepdim=True)
    attention = attention * (highest - lowest) + lowest
    return ((flat_scores + weight * attention) / (1 + weight)).view(b, n, h, w)
