"""CLIP-DINOiser's training sample (``train.py``): the image alone, no caption, no normalisation.

``ToTensor``, ``Resize(size)`` of the short side (bilinear, on the tensor, without antialiasing:
torchvision 0.13, the official environment, did not antialias tensors), ``RandomCrop(size)``, a
horizontal flip with probability 0.5 and ``ColorJitter(brightness)`` (brightness only). The
caption of the image-text sample is ignored: the heads learn from DINO and FOUND alone.
"""

from __future__ import annotations

from torch import Tensor
from torchvision import transforms as T

from textseg.api import ImageTextSample


class CLIPDINOiserTrainTransform:
    """``ImageTextSample -> {"image": [3, size, size] float in [0, 1]}``."""

    def __init__(self, size: int, brightness: float) -> None:
        self.augment = T.Compose(
            [
                T.ToTensor(),
                T.Resize(size, antialias=False),
                T.RandomCrop(size),
                T.RandomHorizontalFlip(p=0.5),
                T.ColorJitter(brightness=brightness),
            ]
        )

    def __call__(self, sample: ImageTextSample) -> dict[str, Tensor]:
        return {"image": self.augment(sample["image"].convert("RGB"))}
