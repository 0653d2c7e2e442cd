"""GroupViT's distinctive steps, as plain functions (NVlabs/GroupViT ``models/group_vit.py`` and
``segmentation/evaluation/group_vit_seg.py``).

Training and features: each image token is assigned to one group by a one-hot over the *group*
axis, with the straight-through estimator (forward: the one-hot of the argmax; gradient: the
softmax's). During training the logits get Gumbel noise first (:func:`gumbel_assignment`); at
inference the same one-hot is taken without noise (:func:`hard_assignment`).

Segmentation: the *soft* assignments of the grouping stages (softmax over groups, no noise, not
hardened) are chained by matrix products, upsampled bilinearly to the window, and every pixel
takes its most likely final group (:func:`pixel_groups`). A group's class scores are the
product of two softmaxes over classes, the second restricted to the window's ``top_k`` classes
(:func:`group_class_probs`); on benchmarks with background a pixel is background when its best
score is below ``min(bg_thresh, best score of any group)`` (:func:`background`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def hard_assignment(logits: Tensor, dim: int = -2) -> Tensor:
    """One-hot of the argmax of ``softmax(logits)`` along ``dim``, with the softmax's gradient."""
    soft = logits.softmax(dim)
    index = soft.max(dim, keepdim=True)[1]
    hard = torch.zeros_like(soft).scatter_(dim, index, 1.0)
    return hard - soft.detach() + soft


def gumbel_noise(shape: torch.Size, like: Tensor) -> Tensor:
    """Standard Gumbel samples (``torch.distributions.Gumbel(0, 1)``, as the official code draws them)."""
    zero = torch.zeros((), device=like.device, dtype=like.dtype)
    return torch.distributions.Gumbel(zero, zero + 1).sample(shape)


def gumbel_assignment(logits: Tensor, tau: float = 1.0, dim: int = -2, noise: Tensor | None = None) -> Tensor:
    """:func:`hard_assignment` of ``(logits + g) / tau``, ``g`` Gumbel noise (drawn if not given)."""
    if noise is None:
        noise = gumbel_noise(logits.shape, logits)
    return hard_assignment((logits + noise) / tau, dim)


def pixel_groups(soft_maps: list[Tensor], grid: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """The final group of every pixel ``[B, H, W]`` (long).

    ``soft_maps`` are the stages' soft assignments ``[B, G_i, L_i]`` (``L_1`` image tokens on a
    ``grid``, ``L_{i+1} = G_i``); their transposes are multiplied into ``[B, L_1, G_last]``, which
    is laid on the grid, upsampled bilinearly to ``size`` and argmaxed over groups.
    """
    chained = None
    for soft in soft_maps:
        step = soft.transpose(1, 2)
        chained = step if chained is None else chained @ step
    if chained is None:
        raise ValueError("GroupViT has no grouping stage: there is nothing to segment with")
    batch, _, groups = chained.shape
    maps = chained.transpose(1, 2).reshape(batch, groups, *grid)
    return F.interpolate(maps, size, mode="bilinear", align_corners=False).argmax(1)


def group_class_probs(
    groups: Tensor, image: Tensor, text: Tensor, scale: Tensor | float, top_k: int
) -> Tensor:
    """Scores ``[B, G, N]`` of ``G`` groups for ``N`` texts.

    ``groups`` ``[B, G, D]``, ``image`` ``[B, D]`` (the whole window) and ``text`` ``[N, D]`` are
    L2-normalised. ``softmax(s * groups @ text)`` times the same softmax restricted to the ``top_k``
    texts the whole window scores highest (the others' logits set to -inf).
    """
    logits = (groups @ text.t()) * scale
    prior = logits.softmax(-1)
    window = ((image @ text.t()) * scale).softmax(-1)
    top = window.topk(min(top_k, text.shape[0]), dim=-1)
    keep = torch.zeros_like(window).scatter_add_(-1, top.indices, torch.ones_like(top.values)).bool()
    return logits.masked_fill(~keep[:, None, :], float("-inf")).softmax(-1) * prior


def gather_groups(probs: Tensor, assignment: Tensor) -> Tensor:
    """Per-pixel scores ``[B, N, H, W]``: each pixel takes its group's row of ``probs`` ``[B, G, N]``.

    The official code multiplies a one-hot map by ``probs``; indexing gives the same numbers.
    """
    batch, height, width = assignment.shape
    index = assignment.reshape(batch, height * width, 1).expand(-1, -1, probs.shape[-1])
    return probs.gather(1, index).transpose(1, 2).reshape(batch, -1, height, width)


def background(scores: Tensor, probs: Tensor, bg_thresh: float) -> Tensor:
    """GroupViT's background channel ``[B, 1, H, W]``: 1 where a pixel's best class score is below
    ``min(bg_thresh, max(probs))`` (per window), else 0. Scores are probabilities (<= 1), so this
    channel wins the argmax wherever it is 1."""
    threshold = probs.flatten(1).max(1).values.clamp(max=bg_thresh)
    return (scores.max(1, keepdim=True).values < threshold[:, None, None, None]).to(scores.dtype)
