"""TCL's inference path (``TCL.generate_masks`` and ``kp_branch`` in kakaobrain/tcl ``models/tcl/tcl.py``).

For one batch of crops:

1. pad to a multiple of the patch size (zeros in normalised space, centred);
2. soft masks from the grounder at 1/4 of the padded size (the method computes these);
3. PAMR, if on: the padded image resized to the mask size (bilinear, ``align_corners=True``)
   gives the affinities, and the masks are refined at 1/4 resolution, per crop;
4. the "kp" branch, if ``kp_w > 0``: masks from the *frozen* CLIP's dense features,
   ``sigmoid((cos - 0.25) * 10)``, upsampled bilinearly to the mask size and mixed in as
   ``kp_w * kp + (1 - kp_w) * mask`` — *after* PAMR, so the kp part is not refined;
5. bilinear upsampling to the padded size, then the padding is cropped off.

CoDe runs the same pipeline with different text embeddings for the kp branch; that is why the
kp similarity is an input here rather than computed from the grounder's text.

The official loop scores one crop at a time; textseg batches crops. Everything after the backbone
(cosine maps, sigmoids, the kp mix) runs :func:`per_window`, so a crop's masks do not depend on the
batch it came in, bit for bit (PAMR sees to its own part).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.clip import pad_to_multiple, unpad_scores
from textseg.evaluation.pamr import PAMR


@dataclass(frozen=True)
class KpBranch:
    """The MaskCLIP-style branch: ``sigmoid((cos - center) * scale)`` mixed in with weight ``weight``."""

    weight: float = 0.3
    center: float = 0.25
    scale: float = 10.0

    def masks(self, cosine: Tensor) -> Tensor:
        return torch.sigmoid((cosine - self.center) * self.scale)

    def mix(self, masks: Tensor, cosine: Tensor) -> Tensor:
        """``weight * kp + (1 - weight) * masks``, kp upsampled bilinearly to the masks' size."""
        kp = F.interpolate(self.masks(cosine), masks.shape[-2:], mode="bilinear")
        return self.weight * kp + (1 - self.weight) * masks


def per_window(fn: Callable[..., Tensor], *tensors: Any) -> Tensor:
    """``fn`` on each window's slice ``[1, ...]`` of ``tensors``, concatenated.

    CPU kernels round ``exp`` (in ``sigmoid``) 1 ulp differently in vectorised and scalar code, and
    which elements take which path depends on the tensor's layout and size: ``einsum`` returns the
    cosine map of one crop in NCHW order but of a batch channels-last (measured). Computed for the
    whole batch, a crop's masks would then differ slightly from those of the crop scored alone.
    """
    return torch.cat([fn(*(t[i : i + 1] for t in tensors)) for i in range(len(tensors[0]))])


def refine_with_pamr(pamr: PAMR, images: Tensor, masks: Tensor) -> Tensor:
    """PAMR at the masks' resolution: the image is resized bilinearly (``align_corners=True``) to it."""
    small = F.interpolate(images, masks.shape[-2:], mode="bilinear", align_corners=True)
    return pamr(small, masks)


def generate_masks(
    images: Tensor,
    patch_size: int,
    masks_and_kp: Callable[[Tensor], tuple[Tensor, Tensor | None]],
    pamr: PAMR | None,
    kp: KpBranch | None,
) -> Tensor:
    """Soft masks ``[B, N, H, W]`` for crops ``[B, 3, H, W]``.

    ``masks_and_kp(padded)`` returns the grounder's soft masks at 1/4 of the padded size and the
    frozen CLIP's cosine map at patch resolution (or None when the kp branch is off).
    """
    padded, pads = pad_to_multiple(images, patch_size)
    masks, cosine = masks_and_kp(padded)
    if pamr is not None:
        masks = refine_with_pamr(pamr, padded, masks)
    if kp is not None and kp.weight:
        masks = per_window(kp.mix, masks, cosine)
    masks = F.interpolate(masks, padded.shape[-2:], mode="bilinear")
    return unpad_scores(masks, pads, tuple(images.shape[-2:]))
