"""A test-only method, installed in tests as an outside plugin distribution (never shipped).

It is small but real: a convolution on the image, text embeddings from a learnable table indexed
by a stable hash of each name, cosine scores, and a contrastive training step. The harness and
trainer tests use it until, and beside, the real methods.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import MethodSpec, Preset, SegMethod, TextState, Vocabulary


@dataclass(frozen=True)
class DummyConfig:
    dim: int = 16
    buckets: int = 257
    stride: int = 4
    bg_thresh: float = 0.1
    image_size: int = 64


def _bucket(word: str, buckets: int) -> int:
    return zlib.crc32(word.encode()) % buckets


class _Transform:
    """Picklable per-sample transform: resize, to tensor, caption -> word buckets."""

    def __init__(self, config: DummyConfig) -> None:
        self.config = config

    def __call__(self, sample: dict[str, Any]) -> dict[str, Tensor]:
        size = self.config.image_size
        image = np.asarray(sample["image"].convert("RGB").resize((size, size)), dtype=np.float32) / 255.0
        words = [_bucket(w, self.config.buckets) for w in sample["caption"].lower().split()][:8]
        words += [-1] * (8 - len(words))
        return {"image": torch.from_numpy(image).permute(2, 0, 1), "words": torch.tensor(words)}


class DummyMethod(SegMethod):
    def __init__(self, config: DummyConfig) -> None:
        super().__init__(config)
        self.conv = nn.Conv2d(3, config.dim, config.stride, stride=config.stride)
        self.words = nn.Embedding(config.buckets, config.dim)

    def _embed(self, names: list[str]) -> Tensor:
        ids = torch.tensor([_bucket(n, self.config.buckets) for n in names], device=self.words.weight.device)
        return F.normalize(self.words(ids), dim=-1)

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        return TextState(vocab, self._embed(list(vocab.names)))

    def segment(self, images: Tensor, text: TextState) -> Tensor:
        features = F.normalize(self.conv(images), dim=1)
        per_name = torch.einsum("bchw,nc->bnhw", features, text.embeddings)
        owner = torch.tensor(text.vocabulary.name_to_class, device=images.device)
        scores = torch.stack([per_name[:, owner == k].amax(1) for k in range(text.vocabulary.num_classes)], 1)
        return (scores + 1) / 2

    def train_transform(self) -> _Transform:
        return _Transform(self.config)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        image = F.normalize(self.conv(batch["image"]).mean((2, 3)), dim=-1)
        words = batch["words"]
        mask = (words >= 0).float().unsqueeze(-1)
        text = F.normalize((self.words(words.clamp(min=0)) * mask).sum(1), dim=-1)
        logits = image @ text.t() * 10
        target = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        return {"loss": loss, "contrastive": loss.detach()}


DUMMY = MethodSpec(
    name="dummy",
    summary="test-only method (plugin fixture)",
    paper="none",
    config_cls=DummyConfig,
    build=DummyMethod,
    presets={"paper": Preset("default"), "tiny": Preset("default")},
    trainable=True,
)


class BrokenSegmentation(DummyMethod):
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        return super().segment(images, text) * float("nan")


BROKEN_OUTPUT = MethodSpec(
    name="nan-scores",
    summary="returns NaN scores (to show check_method fails)",
    paper="none",
    config_cls=DummyConfig,
    build=BrokenSegmentation,
    presets={"paper": Preset("default"), "tiny": Preset("default")},
)
