"""Test-time image preprocessing exactly as mmsegmentation 0.x runs it (mmcv ``imrescale`` + ``imnormalize``).

The official protocols resize the uint8 image with OpenCV's bilinear ``cv2.resize`` (no antialiasing,
fixed-point arithmetic, rounded back to uint8) *before* normalising. textseg does not depend on OpenCV,
so :func:`resize_bilinear` reproduces that arithmetic with integer torch ops:

* horizontal taps: source x = (dx + 0.5) * (1 / (dst / src)) - 0.5 in float32, weights
  ``round((1 - f) * 2048)`` and ``round(f * 2048)`` as int16, clamped at the borders (f = 0);
* vertical taps: the same formula, *not* clamped (border rows are repeated with their weights);
* the vertical pass as OpenCV's SIMD path computes it:
  ``((((r0 >> 4) * b0) >> 16) + (((r1 >> 4) * b1) >> 16) + 2) >> 2``.

It matches opencv-python-headless 5.0.0 and 4.6.0 bit for bit on 300 random size pairs and the VOC, Cityscapes
and capped-long-side cases, including 2x downscales (which OpenCV routes to INTER_AREA, identical
there) and 1-pixel sources; ``tests/data`` holds reference outputs made by
``scripts/make_cv2_resize_fixture.py`` with OpenCV 4.6.0 (the fixture cases also equal 5.0.0's).
Not verified: OpenCV builds without SIMD, whose scalar rounding
(``(r0 * b0 + r1 * b1 + 2**21) >> 22``) differs by 1 on ~13% of values.

Decoding is the source's job (PIL in ``FolderSource``); mmseg decodes with OpenCV. Both use
libjpeg-turbo and gave identical pixels on test JPEGs (4:2:0 and 4:4:4, Pillow 13, OpenCV 5.0).

:func:`normalize` computes ``(x - mean) / std`` in float32 with mean and std as float32, which is
mmseg 1.x's ``SegDataPreProcessor`` (the SCLIP family) by definition, and for every uint8 value with
ImageNet's and CLIP's statistics also equals mmseg 0.x bit for bit (TCL's protocol: ``Normalize``
stores mean and std as float32, mmcv's ``imnormalize`` subtracts in float32 and multiplies by
``1 / float64(std32)`` in float64; checked against OpenCV 4.6.0, the 4.x line mmcv 1.x ran with, in
``tests/data/cv2_reference.npz``). Two near misses, for the record: ``1 / std`` from the decimal std
(textseg's protocols before version 2) is 1 ulp off on 36% of values, and OpenCV 5.1 rounds the
factor to float32 first (28% off): neither is what the papers ran.

The image is RGB throughout: mmseg loads BGR and converts before normalising, and both the resize
and the normalisation act on each channel separately, so the order does not change any value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE (11 fractional bits)


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """mmcv's keep-ratio size for ``scale = (long, short)``: the largest size fitting inside it.

    The factor is ``min(long / max(h, w), short / min(h, w))`` and each side becomes
    ``int(side * factor + 0.5)`` (mmcv ``rescale_size``), e.g. 500x375 -> 597x448 at (2048, 448).
    """
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def _taps(src: int, dst: int, clamp: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Source indices and int16-valued weights of OpenCV's linear resize along one axis."""
    scale = 1.0 / (dst / src)
    position = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(position)
    frac = (position - first).astype(np.float32)
    first = first.astype(np.int64)
    if clamp:
        frac[(first < 0) | (first >= src - 1)] = 0
    w0 = np.rint((np.float32(1) - frac) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(frac * np.float32(_COEF_SCALE)).astype(np.int32)
    i0, i1 = np.clip(first, 0, src - 1), np.clip(first + 1, 0, src - 1)
    return torch.from_numpy(i0), torch.from_numpy(i1), torch.from_numpy(w0), torch.from_numpy(w1)


def resize_bilinear(image: Tensor, size: tuple[int, int]) -> Tensor:
    """``cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)`` for an ``[H, W, C]`` uint8 tensor."""
    height, width = size
    if tuple(image.shape[:2]) == (height, width):
        return image
    x0, x1, a0, a1 = _taps(image.shape[1], width, clamp=True)
    y0, y1, b0, b1 = _taps(image.shape[0], height, clamp=False)
    # Horizontal pass only on the source rows the vertical pass reads (a big saving when shrinking).
    needed, where = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    source = image.index_select(0, needed).to(torch.int32)
    rows = source.index_select(1, x0).mul_(a0[:, None]).add_(source.index_select(1, x1).mul_(a1[:, None]))
    rows >>= 4
    out = rows.index_select(0, where[:height]).mul_(b0[:, None, None]).bitwise_right_shift_(16)
    out += rows.index_select(0, where[height:]).mul_(b1[:, None, None]).bitwise_right_shift_(16)
    out += 2
    out >>= 2
    return out.clamp_(0, 255).to(torch.uint8)


def normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``[H, W, 3]`` uint8 -> ``[3, H, W]`` float32 ``(x - mean) / std`` (module docstring)."""
    centred = image.to(torch.float32) - torch.tensor(mean, dtype=torch.float32)
    return (centred / torch.tensor(std, dtype=torch.float32)).permute(2, 0, 1).contiguous()


def preprocess(
    image: np.ndarray | Tensor,
    scale: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> Tensor:
    """Keep-ratio resize to fit ``scale = (long, short)``, then normalise: the model's input."""
    pixels = torch.as_tensor(image)
    size = rescale_size(pixels.shape[0], pixels.shape[1], scale)
    return normalize(resize_bilinear(pixels, size), mean, std)
