"""Positional embeddings for any patch grid, interpolated the way each family's official code does.

Both modes resize the stored ``g x g`` patch table bicubically (``align_corners=False``) and keep
the class token's row unchanged and first; they differ in how the output grid is specified, which
moves the sampling positions:

* ``size`` — ``F.interpolate(size=(h, w))``: TCL (``sclip/model.py::interpolate_pos_emb``),
  official MaskCLIP (mmseg ``resize_pos_embed``) and transformers' ``interpolate_pos_encoding``.
  Source position of output row ``i``: ``(i + 0.5) * g / h - 0.5``.
* ``scale`` — ``F.interpolate(scale_factor=((h + 0.1) / g, (w + 0.1) / g))`` with the given
  factor used for sampling (DINO's trick): SCLIP, ClearCLIP, NACLIP. Source position:
  ``(i + 0.5) * g / (h + 0.1) - 0.5``.

Both return the stored table untouched when the grid is the training grid. The same modes serve
the vision foundation models (:mod:`textseg.backbones.vfm`): DINO and DINOv2 without registers
interpolate with the ``+0.1`` scale factor, DINOv2 with registers by size with antialiasing (its hub
models set ``interpolate_offset=0``, ``interpolate_antialias=True``), MAE by size.
:func:`interpolate_grid` works on a table of patch rows only (DINOv2 with registers keeps none for
the class token).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.errors import ConfigError

PositionMode = Literal["size", "scale"]
POSITION_MODES: tuple[str, ...] = ("size", "scale")


def _check_mode(mode: str) -> None:
    if mode not in POSITION_MODES:
        raise ConfigError(f"unknown position interpolation {mode!r}; use one of {', '.join(POSITION_MODES)}")


def interpolate_positions(table: Tensor, grid: tuple[int, int], mode: PositionMode = "size") -> Tensor:
    """``table`` ``[1 + g*g, C]`` (class token first) -> ``[1 + h*w, C]`` for the patch grid ``(h, w)``."""
    _check_mode(mode)
    side = math.isqrt(table.shape[0] - 1)
    if side * side != table.shape[0] - 1:
        raise ValueError(f"a position table of {table.shape[0]} rows is not 1 + a square grid")
    if tuple(grid) == (side, side):
        return table
    return torch.cat([table[:1], interpolate_grid(table[1:], grid, mode)], dim=0)


def interpolate_grid(
    table: Tensor, grid: tuple[int, int], mode: PositionMode = "size", antialias: bool = False
) -> Tensor:
    """A patch-only table ``[g*g, C]`` (row-major) -> ``[h*w, C]`` for the patch grid ``(h, w)``,
    computed in float32 (or wider) and returned in the table's dtype. ``antialias`` low-pass
    filters when shrinking (DINOv2 with registers: ``interpolate_antialias=True``, by size)."""
    _check_mode(mode)
    h, w = grid
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise ValueError(f"a position table of {table.shape[0]} patch rows is not a square grid")
    if (h, w) == (side, side):
        return table
    dim = table.shape[1]
    patches = (
        table.to(torch.promote_types(table.dtype, torch.float32))
        .reshape(1, side, side, dim)
        .permute(0, 3, 1, 2)
    )
    if mode == "size":
        resized = F.interpolate(
            patches, size=(h, w), mode="bicubic", align_corners=False, antialias=antialias
        )
    else:
        factor = ((h + 0.1) / side, (w + 0.1) / side)
        resized = F.interpolate(
            patches,
            scale_factor=factor,
            mode="bicubic",
            align_corners=False,
            recompute_scale_factor=False,
            antialias=antialias,
        )
    assert resized.shape[-2:] == (h, w), f"interpolated to {tuple(resized.shape[-2:])}, wanted {(h, w)}"
    return resized.permute(0, 2, 3, 1).reshape(h * w, dim).to(table.dtype)
