"""TCL's training sample transform, run in the data workers (``datasets/builder.py`` in kakaobrain/tcl).

Image: timm's ImageNet training transform as TCL calls it (``deit_aug``): RandomResizedCrop to
``image_size`` with scale (0.08, 1) and ratio (3/4, 4/3), bilinear; horizontal flip 0.5;
RandAugment ``rand-m9-mstd0.5-inc1``; ImageNet mean/std; RandomErasing p=0.25 in ``pixel`` mode,
one box. ``color_jitter=0.4`` is passed as TCL does (none when 0); timm ignores it while
RandAugment is on.
Caption: tokenised whole with CLIP's tokenizer (77 tokens, truncated with the end token kept last);
TCL extracts no nouns and uses no templates in training.

The transform holds the tokenizer and timm's transform, never a model, so it pickles small.

One incompatibility is handled here: at magnitude 10 (9 + noise, clipped) timm's
``PosterizeIncreasing`` asks Pillow to keep 0 bits. Pillow 9 (TCL's pin) returned a black image;
recent Pillow (13 here) raises ``ValueError``. Such a sample (0.15% of them, measured by
``scripts/randaugment_posterize_rate.py``) gets a fresh draw of the augmentation instead of
crashing the run.
"""

from __future__ import annotations

from typing import Any

from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from torch import Tensor

from textseg.api import ImageTextSample
from textseg.clip.text import tokenize


class TrainTransform:
    """``ImageTextSample -> {"image": [3, S, S] float, "text": [77] long}``."""

    def __init__(
        self,
        tokenizer: Any,
        context_length: int = 77,
        image_size: int = 224,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        auto_augment: str | None = "rand-m9-mstd0.5-inc1",
        color_jitter: float = 0.4,
        re_prob: float = 0.25,
    ) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.image = create_transform(
            input_size=image_size,
            is_training=True,
            scale=tuple(crop_scale),
            color_jitter=color_jitter if color_jitter > 0 else None,
            auto_augment=auto_augment,
            interpolation="bilinear",
            re_prob=re_prob,
            re_mode="pixel",
            re_count=1,
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
        )

    def augment(self, image: Image.Image, attempts: int = 5) -> Tensor:
        """The timm transform, drawn again when RandAugment's posterize asks Pillow for 0 bits."""
        for _ in range(attempts - 1):
            try:
                return self.image(image)
            except ValueError as exc:
                if "bits must be" not in str(exc):
                    raise
        return self.image(image)

    def __call__(self, sample: ImageTextSample) -> dict[str, Tensor]:
        image = self.augment(sample["image"].convert("RGB"))
        text = tokenize(self.tokenizer, [sample["caption"]], self.context_length)[0]
        return {"image": image, "text": text}
