"""CLIP's training sample transform, run in the data workers: a random square crop and the caption's tokens.

CLIP's only augmentation is a random square crop of the resized image; open_clip implements it as
``RandomResizedCrop(image_size, scale=(0.9, 1.0))`` with bicubic interpolation and square
aspect ratios kept near 1 (its default ratio range (3/4, 4/3)), then CLIP's normalisation. No flip:
captions may say "to the left of". The caption is tokenised to the text tower's context length
(CLIP's 77), truncated with the end token kept last.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchvision import transforms

from textseg.api import ImageTextSample
from textseg.clip.text import tokenize


class CaptionTransform:
    """``ImageTextSample -> {"image": [3, S, S] float, "text": [context_length] long}``; picklable."""

    def __init__(
        self,
        tokenizer: Any,
        context_length: int,
        image_size: int,
        crop_scale: tuple[float, float],
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.image = transforms.Compose([
            transforms.RandomResizedCrop(
                image_size, scale=tuple(crop_scale), interpolation=transforms.InterpolationMode.BICUBIC
            ),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ])  # fmt: skip

    def __call__(self, sample: ImageTextSample) -> dict[str, Tensor]:
        image = self.image(sample["image"].convert("RGB"))
        text = tokenize(self.tokenizer, [sample["caption"]], self.context_length)[0]
        return {"image": image, "text": text}
