"""Talk2DINO's training sample, run in the data workers.

The official code trains on features extracted once (``dino_extraction_v2.py`` with the README's
``--resize_dim 448 --crop_dim 448``): the image resized so its short side is 448 (bicubic), the
centre 448x448 crop, ImageNet mean/std; the caption through ``clip.tokenize(truncate=True)``
(``text_features_extraction.py``). No augmentation. textseg runs the frozen backbones in the
training step instead, on exactly these inputs.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import Tensor
from torchvision import transforms as T

from textseg.api import ImageTextSample
from textseg.clip.text import tokenize


class Talk2DINOTrainTransform:
    """``ImageTextSample -> {"image": [3, S, S] float, "text": [L] long}``."""

    def __init__(self, tokenizer: Any, context_length: int, size: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.image = T.Compose(
            [
                T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(size),
                T.ToTensor(),
                T.Normalize(IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
            ]
        )

    def __call__(self, sample: ImageTextSample) -> dict[str, Tensor]:
        image = self.image(sample["image"].convert("RGB"))
        text = tokenize(self.tokenizer, [sample["caption"]], self.context_length)[0]
        return {"image": image, "text": text}
