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
cosines are all refined as they are.

Speed. The refinement is ``2 * P * num_iter`` elementwise passes over the masks, so it is bound by
memory traffic: on a CPU it runs at cache speed only if the masks in flight fit in the cache. A
batch of windows times 150 classes does not (``[16, 150, 112, 112]`` is 120 MB, and its
temporaries are fresh pages every pass), which made a batch of 16 five times slower per window
than one window alone. Images and classes are independent, so on CPU the masks are refined in
blocks of at most :data:`CPU_BLOCK_BYTES` (all iterations of one block before the next), reading
every neighbour from one replicate-padded copy per iteration and multiplying into one reused
buffer. Every output element goes through the same float operations in the same order whatever
the block or batch size, so a batch is bit-identical to its windows refined one at a time. On
other devices (CUDA) the whole batch is one block: fewer, larger kernels.
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

#: On CPU, the masks refined together take at most this many bytes (with their padded copy and two
#: buffers, about 4x this stays in flight: inside the L3 cache). Measured on TCL's case (150 classes
#: at 112 x 112, 10 iterations, 2 cores): 210-225 ms per window at 1, 4 and 16 windows per call with
#: 2 MiB blocks, against 590 (1 window) to 890 ms (4 windows) per window unblocked; 1 MiB blocks pay
#: more per-operation overhead (250-340 ms), 8 MiB ones fall out of the cache (400-440 ms).
CPU_BLOCK_BYTES = 2 << 20


def _shifts(dilations: Sequence[int], centre: bool) -> Iterator[tuple[int, int]]:
    """(top, left) of every dilated 3x3 neighbour inside a copy padded by ``max(dilations)``."""
    pad = max(dilations)
    for d in dilations:
        for dy, dx in _OFFSETS:
            if (dy, dx) != (0, 0) or centre:
                yield pad + dy * d, pad + dx * d


def _neighbours(x: Tensor, dilations: Sequence[int], centre: bool) -> Iterator[Tensor]:
    """The dilated 3x3 neighbours of every pixel of ``x`` ``[B, C, H, W]`` (replicate padding: a
    copy padded once by the largest dilation holds every smaller one's padding too)."""
    height, width = x.shape[-2:]
    pad = max(dilations)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    for top, left in _shifts(dilations, centre):
        yield padded[..., top : top + height, left : left + width]


def _blocks(
    batch: int, channels: int, plane_bytes: int, device: torch.device
) -> Iterator[tuple[slice, slice]]:
    """(images, channels) blocks of at most :data:`CPU_BLOCK_BYTES` on CPU; one block elsewhere."""
    if device.type != "cpu":
        yield slice(None), slice(None)
        return
    planes = max(CPU_BLOCK_BYTES // plane_bytes, 1)
    images, step = max(planes // channels, 1), min(planes, channels)
    for b in range(0, batch, images):
        for c in range(0, channels, step):
            yield slice(b, b + images), slice(c, c + step)


class PAMR(nn.Module):
    """``PAMR(num_iter, dilations)(image [B, C, H, W], mask [B, K, h, w]) -> [B, K, H, W]``."""

    def __init__(self, num_iter: int = 10, dilations: Sequence[int] = TCL_DILATIONS) -> None:
        super().__init__()
        if num_iter < 0 or not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"PAMR needs num_iter >= 0 and positive dilations, got {num_iter}, {dilations}")
        self.num_iter = num_iter
        self.dilations = tuple(int(d) for d in dilations)

    def affinity(self, image: Tensor) -> Tensor:
        """Softmax-normalised affinities ``[B, P, H, W]`` of every pixel to its ``P`` neighbours.

        :meth:`forward` calls it one image at a time: CPU ``softmax`` over a middle dimension
        rounds some elements differently depending on the batch size (1 ulp, measured), so a batch
        computed at once would not match its windows scored alone, as the official loops score them.
        """
        image = image.float()
        values = torch.stack(list(_neighbours(image, self.dilations, centre=True)), dim=2)  # [B, C, 9D, H, W]
        std = values.std(dim=2, keepdim=True)
        neighbours = torch.stack(
            list(_neighbours(image, self.dilations, centre=False)), dim=2
        )  # [B, C, P, H, W]
        aff = -(image.unsqueeze(2) - neighbours).abs() / (1e-8 + 0.1 * std)
        return aff.mean(dim=1).softmax(dim=1)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        dtype = mask.dtype
        mask = mask.float()
        if mask.shape[-2:] != image.shape[-2:]:
            mask = F.interpolate(mask, image.shape[-2:], mode="bilinear", align_corners=True)
        if self.num_iter == 0:
            return mask.to(dtype)
        out = torch.empty_like(mask)
        batch, channels, height, width = mask.shape
        block_images, aff = None, None
        for images, classes in _blocks(batch, channels, 4 * height * width, mask.device):
            if images != block_images:
                indices = range(batch)[images]
                affs = [self.affinity(image[i : i + 1]) for i in indices]  # per image: see affinity
                block_images, aff = images, torch.cat(affs).unsqueeze(2)  # [b, P, 1, H, W]
            out[images, classes] = self._propagate(aff, mask[images, classes])
        return out.to(dtype)

    def _propagate(self, aff: Tensor, mask: Tensor) -> Tensor:
        """``num_iter`` times ``mask <- Σ_p aff_p · mask_p``: each product rounded, summed in ``p`` order."""
        product = torch.empty_like(mask)
        for _ in range(self.num_iter):
            refined = torch.zeros_like(mask)
            for p, neighbour in enumerate(_neighbours(mask, self.dilations, centre=False)):
                refined += torch.mul(aff[:, p], neighbour, out=product)
            mask = refined
        return mask
