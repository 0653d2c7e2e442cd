"""CoDe's training sample transform, run in the data workers (``datasets/builder.py`` officially).

Image: TCL's transform (:class:`~textseg.methods.tcl.transform.TrainTransform`) as CoDe configures
it — RandomResizedCrop to 224 with scale (0.9, 1) and ratio (3/4, 4/3), bilinear; horizontal flip;
ImageNet mean/std; no RandAugment, colour jitter or erasing. Caption: tokenised whole (77).

Text: the caption's nouns (:mod:`textseg.text.nouns`); a caption with fewer than ``num_nouns``
distinct nouns raises :class:`~textseg.api.SkipSample`, which the data pipeline counts. Otherwise
``num_nouns`` of them are drawn at random (Python's ``random``, seeded per worker by PyTorch's
DataLoader) and the sample gets

* ``nouns`` ``[K, Lp]`` — the chosen nouns tokenised for the noun prompt (``Lp = 77 - n_ctx``);
* ``kg_text`` ``[K, 77]`` — each chosen noun in a template drawn from ``kg_templates`` (the 80
  ImageNet templates), for the knowledge-guided loss;
* ``word_labels`` ``[77]`` — the text segmenter's pseudo-labels (:mod:`.labels`).

It holds a tokenizer, a noun extractor, templates and timm's transform — no model — so it pickles small.
"""

from __future__ import annotations

import random
from typing import Any

from torch import Tensor

from textseg.api import ImageTextSample, SkipSample
from textseg.clip.text import tokenize
from textseg.methods.code.labels import word_labels
from textseg.methods.tcl.transform import TrainTransform
from textseg.text.nouns import NounExtractor


class CoDeTransform:
    """``ImageTextSample -> {"image", "text", "nouns", "kg_text", "word_labels"}``."""

    def __init__(
        self,
        base: TrainTransform,
        nouns: NounExtractor,
        num_nouns: int,
        noun_length: int,
        kg_templates: tuple[str, ...],
    ) -> None:
        self.base = base
        self.nouns = nouns
        self.num_nouns = num_nouns
        self.noun_length = noun_length
        self.kg_templates = kg_templates

    def bpe(self, word: str) -> list[int]:
        """The word's BPE ids without start or end token."""
        return self.base.tokenizer(word, add_special_tokens=False)["input_ids"]

    def __call__(self, sample: ImageTextSample) -> dict[str, Any]:
        nouns = self.nouns(sample["caption"])
        if len(nouns) < self.num_nouns:
            raise SkipSample(f"fewer than {self.num_nouns} nouns")
        chosen = random.sample(nouns, self.num_nouns)
        out: dict[str, Tensor] = self.base(sample)
        tokenizer = self.base.tokenizer
        out["nouns"] = tokenize(tokenizer, chosen, self.noun_length)
        sentences = [random.choice(self.kg_templates).format(noun) for noun in chosen]
        out["kg_text"] = tokenize(tokenizer, sentences, self.base.context_length)
        out["word_labels"] = word_labels(
            out["text"], [self.bpe(n) for n in chosen], [self.bpe(n) for n in nouns]
        )
        return out
