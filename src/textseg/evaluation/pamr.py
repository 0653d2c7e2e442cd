"""PAMR: pixel-adaptive mask refinement (Araslanov & Roth, CVPR 2020), as TCL, CoDe and NACLIP use it.

The same algorithm as ``models/tcl/pamr.py`` in kakaobrain/tcl (from visinf/1-stage-wseg), written
anew with shifted views instead of fixed convolution kernels:

1. The mask is resized to the image (bilinear, ``align_corners=True``; a no-op at equal sizes).
2. For each dilation ``d`` the 8 neighbours at offsets ``(±d or 0, ±d or 0)`` are read from the
   replicate-padded input, in row-major order; dilations are concatenated (``P = 8 * len(dilations)``).
3. Per image channel, the local standard deviation ``σ`` is taken over the ``9 * len(dilations)``
   values of the dilated 3x3 windows (the centre counted once per dilation), unbiased.
4. Affinity to neighbour ``p``: ``-|x - x_p| / (1e-8 + 0.1 σ)``, averaged over image channels,
   softmax over all ``P`` neighbours (the pixel itself is not one).
5. ``num_iter`` times: ``mask <- Σ_p affinity_p · mask_p`` with the neighbours of the current mask
   (replicate padding). The affinities are computed once.

Each output is a convex combination of neighbour values, so sigmoid masks, probabilities and raw
cosines are all refined as they are. Masks are processed a channel at a time through the
neighbour sum, so memory stays ``O(P · H · W)`` whatever the number of classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: TCL and CoDe: 10 iterations over dilations 1..24 at 1/4 of the crop.
TCL_DILATIONS = (1, 2, 4, 8, 12, 24)
#: NACLIP (and SCLIP's unused default): 10 iterations over dilations 8, 16 at full resolution.
NACLIP_DILATIONS = (8, 16)

_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # row-major, centre at index 4


def _windows(x: Tensor, dilations: Sequence[int], centre: bool) -> Iterator[Tensor]:
    """The dilated 3x3 neighbours of every pixel of ``x`` ``[..., H, W]`` (replicate padding)."""
    height, width = x.shape[-2:]
    for d in dilations:
        padded = F.pad(x.reshape(-1, 1, height, width), (d, d, d, d), mode="replicate")
        for dy, dx in _OFFSETS:
            if (dy, dx) == (0, 0) and not centre:
                continue
            top, left = d + dy * d, d + dx * d
            yield padded[..., top : top + height, left : left + width].reshape(x.shape)


class PAMR(nn.Module):
    """``PAMR(num_iter, dilations)(image [B, C, H, W], mask [B, K, h, w]) -> [B, K, H, W]``."""

    def __init__(self, num_iter: int = 10, dilations: Sequence[int] = TCL_DILATIONS) -> None:
        super().__init__()
        if num_iter < 0 or not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"PAMR needs num_iter >= 0 and positive dilations, got {num_iter}, {dilations}")
        self.num_iter = num_iter
        self.dilations = tuple(int(d) for d in dilations)

    def affinity(self, image: Tensor) -> Tensor:
        """Softmax-normalised affinities ``[B, P, H, W]`` of every pixel to its ``P`` neighbours."""
        image = image.float()
        values = torch.stack(list(_windows(image, self.dilations, centre=True)), dim=2)  # [B, C, 9D, H, W]
        std = values.std(dim=2, keepdim=True)
        neighbours = torch.stack(
            list(_windows(image, self.dilations, centre=False)), dim=2
        )  # [B, C, P, H, W]
        aff = -(image.unsqueeze(2) - neighbours).abs() / (1e-8 + 0.1 * std)
        return aff.mean(dim=1).softmax(dim=1)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        dtype = mask.dtype
        mask = mask.float()
        if mask.shape[-2:] != image.shape[-2:]:
            mask = F.interpolate(mask, image.shape[-2:], mode="bilinear", align_corners=True)
        aff = self.affinity(image).unsqueeze(1)  # [B, 1, P, H, W]
        for _ in range(self.num_iter):
            refined = torch.zeros_like(mask)
            for p, neighbour in enumerate(_windows(mask, self.dilations, centre=False)):
                refined += aff[:, :, p] * neighbour
            mask = refined
        return mask.to(dtype)
