"""ViL-Seg's training views, made in the data workers.

From one image-caption pair it makes

* ``image``: the global view (random resized crop), left photometrically untouched because the
  caption may name colours; it feeds the cross-modal loss, the key of the vision loss and the
  first clustering view;
* ``image_aug``, ``box`` and ``flip``: the clustering view, a random sub-crop of the global view
  (``box``: its corners in the global view's 0-1 coordinates) recoloured (jitter, grayscale, blur)
  and, with ``cluster_flip``, mirrored. Every one of its patches has a known location in the global
  view, and a patch's content sits at different token positions in the two views, so the
  clustering cannot be satisfied by position alone;
* ``local``: ``num_local`` small crops (recoloured, randomly flipped), the queries of the vision loss;
* ``input_ids`` / ``attention_mask``: the tokenised caption, padded to ``context_length``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import InterpolationMode, RandomResizedCrop
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF
from transformers import PreTrainedTokenizerBase

from textseg.api import ImageTextSample, SkipSample
from textseg.methods.vilseg.config import VilSegConfig


def _photometric(size: int) -> T.Compose:
    """DINO/BYOL-style recolouring: colour jitter, grayscale, Gaussian blur (kernel ~10% of the side)."""
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)
    return T.Compose(
        [
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5),
        ]
    )


class VilSegTrainTransform:
    """Picklable: holds only torchvision transforms, the tokenizer and a few numbers."""

    def __init__(self, config: VilSegConfig, tokenizer: PreTrainedTokenizerBase) -> None:
        bicubic = InterpolationMode.BICUBIC
        self.tokenizer = tokenizer
        self.context_length = config.context_length
        self.num_local = config.num_local
        self.cluster_flip = config.cluster_flip
        self.cluster_scale = config.cluster_scale
        self.ratio = (3 / 4, 4 / 3)
        self.bicubic = bicubic
        self.local_size = config.local_size
        self.global_crop = T.RandomResizedCrop(config.global_size, config.global_scale, interpolation=bicubic)
        self.local_crop = T.RandomResizedCrop(config.local_size, config.local_scale, interpolation=bicubic)
        self.global_recolour = _photometric(config.global_size)
        self.local_recolour = T.Compose([T.RandomHorizontalFlip(), _photometric(config.local_size)])
        self.to_float = T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True)])
        self.normalize = T.Normalize(config.mean, config.std)

    def __call__(self, sample: ImageTextSample) -> dict[str, Any]:
        caption = sample["caption"].strip()
        if not caption:
            raise SkipSample("empty caption")
        image = sample["image"].convert("RGB")
        view = self.to_float(self.global_crop(image)).clamp(0, 1)
        top, left, height, width = RandomResizedCrop.get_params(view, self.cluster_scale, self.ratio)
        size = view.shape[-1]
        box = torch.tensor([left, top, left + width, top + height], dtype=torch.float32) / size
        augmented = TF.resized_crop(view, top, left, height, width, [size, size], self.bicubic).clamp(0, 1)
        augmented = self.global_recolour(augmented)
        flip = self.cluster_flip and bool(torch.rand(()) < 0.5)
        if flip:
            augmented = augmented.flip(-1)
        if self.num_local:
            local = torch.stack(
                [
                    self.normalize(self.local_recolour(self.to_float(self.local_crop(image)).clamp(0, 1)))
                    for _ in range(self.num_local)
                ]
            )
        else:
            local = torch.empty(0, 3, self.local_size, self.local_size)
        tokens = self.tokenizer(
            caption,
            padding="max_length",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        )
        return {
            "image": self.normalize(view),
            "image_aug": self.normalize(augmented),
            "box": box,
            "flip": torch.tensor(flip),
            "local": local,
            "input_ids": tokens["input_ids"][0],
            "attention_mask": tokens["attention_mask"][0],
        }


def unflip(maps: Tensor, flip: Tensor) -> Tensor:
    """Mirror back ``[B, h, w, ...]`` maps whose view was flipped (``flip`` ``[B]`` bool)."""
    mask = flip.to(maps.device).reshape(-1, *([1] * (maps.ndim - 1)))
    return torch.where(mask, maps.flip(2), maps)


def sample_boxes(maps: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinearly sample ``maps`` ``[B, C, h, w]`` inside ``boxes`` ``[B, 4]`` (x0, y0, x1, y1 in 0-1
    units) on a ``size`` grid of cell centres: the values at the other view's patch centres."""
    rows, cols = size
    steps_y = (torch.arange(rows, device=maps.device, dtype=maps.dtype) + 0.5) / rows
    steps_x = (torch.arange(cols, device=maps.device, dtype=maps.dtype) + 0.5) / cols
    boxes = boxes.to(maps)
    x = boxes[:, 0, None] + steps_x[None] * (boxes[:, 2] - boxes[:, 0])[:, None]  # [B, cols]
    y = boxes[:, 1, None] + steps_y[None] * (boxes[:, 3] - boxes[:, 1])[:, None]  # [B, rows]
    grid = torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), dim=-1) * 2 - 1
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
