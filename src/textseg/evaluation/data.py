"""Loading evaluation images in DataLoader workers: decode, resize and normalise off the main process.

The main process only moves ready tensors to the device and runs the model, so the model stays busy.
Each process of a distributed run reads a disjoint, strided share of the samples: no sample is
padded in or counted twice, whatever the dataset size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from textseg.benchmark import EvalSource
from textseg.errors import TextsegError
from textseg.evaluation.preprocess import preprocess
from textseg.evaluation.protocol import Protocol


class EvalItem(TypedDict, total=False):
    error: str  # set instead of the other fields when the sample cannot be read (see EvalImages)
    index: int  # position in the source
    id: str
    image: Tensor  # [3, h, w] float32, normalised, at protocol resolution
    label: Tensor  # [H, W] at the original size: uint8, or int32 where labels are wider (> 255 classes)
    label_max: int  # largest label value other than the ignore index (-1 if none)


def shard(size: int, rank: int, world: int) -> list[int]:
    """The indices process ``rank`` of ``world`` scores: every ``world``-th, starting at ``rank``."""
    return list(range(rank, size, world))


class EvalImages(Dataset[EvalItem]):
    """``source[i]`` for ``i`` in ``indices``, preprocessed as ``protocol`` says."""

    def __init__(self, source: EvalSource, indices: Sequence[int], protocol: Protocol, ignore_index: int):
        self.source = source
        self.indices = list(indices)
        self.scale = (protocol.max_long_side, protocol.short_side)
        self.mean = protocol.mean
        self.std = protocol.std
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> EvalItem:
        """The preprocessed sample, or ``{"error": message}`` when it cannot be read: the main process
        raises it, so a bad file ends in its one-line message whether or not workers load the data
        (an exception raised in a worker would reach the user wrapped in the worker's traceback)."""
        index = self.indices[position]
        try:
            sample = self.source[index]
        except TextsegError as exc:
            return EvalItem(error=str(exc))
        # uint8 stays uint8; wider labels (uint16 of the 847- and 459-class benchmarks) become int32,
        # which torch handles everywhere.
        dtype = np.uint8 if sample.label.dtype == np.uint8 else np.int32
        label = np.require(sample.label, dtype=dtype, requirements=["C", "W"])
        scored = label[label != self.ignore_index]
        return EvalItem(
            index=index,
            id=sample.id,
            image=preprocess(sample.image, self.scale, self.mean, self.std),
            label=torch.from_numpy(label),
            label_max=int(scored.max()) if scored.size else -1,
        )


def make_loader(dataset: EvalImages, num_workers: int, pin_memory: bool) -> DataLoader[EvalItem]:
    """One item at a time (images differ in size), in order, prefetched by ``num_workers`` workers."""
    return DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers > 0 else None,
    )
