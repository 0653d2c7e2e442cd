"""GroupViT's training sample transform, run in the data workers (NVlabs/GroupViT ``datasets/builder.py``).

Image: timm's DeiT training transform, the same call as TCL's (TCL inherited it from GroupViT):
RandomResizedCrop (scale 0.08-1, bilinear), flip, RandAugment ``rand-m9-mstd0.5-inc1``, random
erasing 0.25, ImageNet mean/std (:class:`textseg.methods.tcl.transform.TrainTransform`).

Text (``WordAugTokenizeWrapper``): the caption, then ``K`` prompts. The caption's words tagged as
nouns or verbs (:data:`~textseg.methods.groupvit.config.WORD_TAGS`; duplicates kept) are sampled
without replacement (``min(K, count)`` of them), each put into a random template; missing prompts
are copies of the caption. All ``1 + K`` texts are tokenised CLIP-style (77 tokens, truncated with
the end token kept last, zero padding). The draws use Python's ``random`` (seeded per worker by
PyTorch); the official code uses NumPy's global generator.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from torch import Tensor

from textseg.api import ImageTextSample
from textseg.clip.text import tokenize
from textseg.methods.tcl.transform import TrainTransform
from textseg.text.nouns import NounExtractor


class GroupViTTrainTransform(TrainTransform):
    """``ImageTextSample -> {"image": [3, S, S] float, "text": [1 + K, L] long}`` (caption first)."""

    def __init__(
        self,
        tokenizer: Any,
        context_length: int,
        image_size: int,
        crop_scale: tuple[float, float],
        auto_augment: str | None,
        color_jitter: float,
        re_prob: float,
        words: NounExtractor | None,
        num_prompts: int,
        templates: Sequence[str],
    ) -> None:
        super().__init__(
            tokenizer, context_length, image_size, crop_scale, auto_augment, color_jitter, re_prob
        )
        self.words = words
        self.num_prompts = num_prompts
        self.templates = tuple(templates)

    def prompts(self, caption: str) -> list[str]:
        """``K`` prompt texts for ``caption``."""
        if not self.num_prompts:
            return []
        words = self.words(caption) if self.words is not None else []
        chosen = random.sample(words, min(self.num_prompts, len(words)))
        texts = [random.choice(self.templates).format(word) for word in chosen]
        return texts + [caption] * (self.num_prompts - len(texts))

    def __call__(self, sample: ImageTextSample) -> dict[str, Tensor]:
        image = self.augment(sample["image"].convert("RGB"))
        caption = sample["caption"]
        texts = [caption, *self.prompts(caption)]
        return {"image": image, "text": tokenize(self.tokenizer, texts, self.context_length)}
