"""Hand-checkable methods, a raw protocol and file writers for the harness tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.evaluation.protocol import Protocol


@dataclass(frozen=True)
class ThresholdConfig:
    bg_thresh: float = 0.5


class ChannelScores(SegMethod):
    """Scores = the first K input channels: with :func:`raw_protocol` the score of class k at a pixel
    is its k-th colour value / 255, so predictions can be worked out by hand."""

    def __init__(self, config: ThresholdConfig | None = None) -> None:
        super().__init__(config or ThresholdConfig())
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device
        self.calls: list[tuple[int, ...]] = []

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        return TextState(vocab)

    def segment(self, images: Tensor, text: TextState) -> Tensor:
        self.calls.append(tuple(images.shape))
        return images[:, : text.vocabulary.num_classes] + self.anchor


class WindowMean(ChannelScores):
    """One score per window and class: the window's mean of channel 0, as a 1x1 map."""

    def segment(self, images: Tensor, text: TextState) -> Tensor:
        self.calls.append(tuple(images.shape))
        mean = images[:, :1].mean((2, 3), keepdim=True)
        return mean.expand(-1, text.vocabulary.num_classes, 1, 1)


class Quantised(ChannelScores):
    """Scores on a coarse grid at half resolution, so classes (and a 0.25 background threshold) tie
    often: channel k is ``round(4 * ((k + 1) * x0 - k * x1)) / 4``, NaN where ``x2 > nan_above``.
    Elementwise arithmetic only, so a window's scores do not depend on the batch it is scored in:
    batched and one-window-at-a-time runs can be compared exactly."""

    def __init__(self, nan_above: float = float("inf")) -> None:
        super().__init__()
        self.nan_above = nan_above

    def segment(self, images: Tensor, text: TextState) -> Tensor:
        self.calls.append(tuple(images.shape))
        x = images[:, :, ::2, ::2]
        k = torch.arange(text.vocabulary.num_classes, dtype=x.dtype)[None, :, None, None]
        scores = torch.round(((k + 1) * x[:, :1] - k * x[:, 1:2]) * 4) / 4 + self.anchor
        scores[:, 2:3] += torch.where(x[:, 2:3] > self.nan_above, float("nan"), 0.0)
        return scores


def raw_protocol(short_side: int, crop: int | None = None, stride: int = 16, **kwargs: object) -> Protocol:
    """No resize for images whose short side is ``short_side``; inputs are pixel / 255."""
    return Protocol(
        name="raw",
        version="0",
        summary="test: pixels / 255",
        short_side=short_side,
        max_long_side=100_000,
        crop=crop,
        stride=stride,
        mean=(0.0, 0.0, 0.0),
        std=(255.0, 255.0, 255.0),
        templates="simple",
        **kwargs,  # type: ignore[arg-type]
    )


def write_sample(root: Path, folder: str, name: str, image: np.ndarray, label: np.ndarray) -> None:
    """One image/label pair in the toy plugin's layout."""
    for sub, array in (("images", image), ("labels", label)):
        (root / folder / sub).mkdir(parents=True, exist_ok=True)
        Image.fromarray(array.astype(np.uint8)).save(root / folder / sub / f"{name}.png")
