"""Centred zero padding to a multiple of the patch size, and undoing it on score maps.

TCL (``compute_padsize`` in ``TCL.generate_masks``) and ClearCLIP pad a crop whose side is not a
multiple of 16 with zeros in normalised space (the mean colour), half on each side with the odd
pixel on the right/bottom; the score map, computed on the padded grid, is upsampled bilinearly
to the padded size and the padding is cropped off. Without padding the patch convolution would
silently drop the last ``side % 16`` pixels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

#: ``(left, right, top, bottom)``, the order ``F.pad`` takes for the last two dimensions.
Pads = tuple[int, int, int, int]


def centred_pads(height: int, width: int, multiple: int) -> Pads:
    """The padding that brings ``height x width`` to multiples of ``multiple``, centred."""
    extra_w = -width % multiple
    extra_h = -height % multiple
    return extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2


def pad_to_multiple(images: Tensor, multiple: int) -> tuple[Tensor, Pads]:
    """``images`` ``[B, C, H, W]`` zero-padded (centred) to multiples of ``multiple``, and the pads."""
    pads = centred_pads(images.shape[-2], images.shape[-1], multiple)
    return (F.pad(images, pads) if any(pads) else images), pads


def unpad_scores(scores: Tensor, pads: Pads, size: tuple[int, int]) -> Tensor:
    """Score maps computed on a padded input, brought back to the unpadded ``size`` ``(H, W)``.

    Without padding the maps are returned as they are (the caller or the harness upsamples);
    with padding they are upsampled bilinearly to the padded size and cropped.
    """
    if not any(pads):
        return scores
    left, right, top, bottom = pads
    height, width = size
    padded = F.interpolate(scores, (height + top + bottom, width + left + right), mode="bilinear")
    return padded[..., top : top + height, left : left + width]
