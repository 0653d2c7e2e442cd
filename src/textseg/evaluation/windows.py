"""Sliding-window placement exactly as mmsegmentation 0.x ``EncoderDecoder.slide_inference`` does it."""

from __future__ import annotations

from typing import NamedTuple

#: Windows per ``segment`` call when not given, by device type (any other device: CUDA's value).
#: CPU: measured with scripts/bench_speed.py (README, "Speed"): on 2 cores TCL takes the same time
#: per window at 1, 4 and 16 windows per call (within 5 %) while memory grows with the batch, and one
#: window per call is exactly the official loops' call, so even a method whose numbers depend on the
#: batch gives their labels. CUDA: not measured (no GPU here); batches keep a GPU busy.
DEFAULT_MAX_WINDOWS = {"cpu": 1, "cuda": 16}


def default_max_windows(device_type: str) -> int:
    """The ``max_windows`` the evaluator uses on a device of ``device_type`` (``"cpu"``, ``"cuda"``, ...)."""
    return DEFAULT_MAX_WINDOWS.get(device_type, DEFAULT_MAX_WINDOWS["cuda"])


class Window(NamedTuple):
    """A crop ``[top:bottom, left:right]`` of the resized image."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left


def window_grid(height: int, width: int, crop: int | None, stride: int) -> list[Window]:
    """The windows covering a ``height`` x ``width`` image, row by row.

    ``max(H - crop + stride - 1, 0) // stride + 1`` windows per axis at multiples of ``stride``;
    each is cut at the border and then shifted back so it keeps ``crop`` pixels where the image
    allows (so the last window ends exactly at the border). An image smaller than ``crop`` gives
    windows of the image's size. ``crop=None`` is one window over the whole image.
    """
    if crop is None:
        return [Window(0, height, 0, width)]
    if crop <= 0 or stride <= 0:
        raise ValueError(f"crop and stride must be positive, got crop={crop}, stride={stride}")
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    windows = []
    for i in range(rows):
        for j in range(cols):
            bottom = min(i * stride + crop, height)
            right = min(j * stride + crop, width)
            windows.append(Window(max(bottom - crop, 0), bottom, max(right - crop, 0), right))
    return windows
