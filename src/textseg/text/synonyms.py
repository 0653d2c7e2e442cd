"""Class synonyms: a class with several names scores the best of its names.

Methods score every name of a :class:`textseg.api.Vocabulary` (``vocab.names``) and reduce to one
score per class with :func:`max_over_names` (``vocab.name_to_class`` says which class each name
belongs to). This is the SCLIP-family rule (``max`` over a class's names after the per-name
scores are computed) and a no-op when every class has one name.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def max_over_names(scores: Tensor, name_to_class: Sequence[int], num_classes: int, dim: int = 1) -> Tensor:
    """Per-name ``scores`` (names along ``dim``) -> per-class scores (classes along ``dim``), by max."""
    if len(name_to_class) != scores.shape[dim]:
        raise ValueError(f"{len(name_to_class)} names for {scores.shape[dim]} score channels")
    if len(name_to_class) == num_classes and list(name_to_class) == list(range(num_classes)):
        return scores
    moved = scores.movedim(dim, -1)
    index = torch.as_tensor(name_to_class, device=scores.device).expand_as(moved)
    out = moved.new_full((*moved.shape[:-1], num_classes), float("-inf"))
    out = out.scatter_reduce(-1, index, moved, reduce="amax", include_self=True)
    return out.movedim(-1, dim)
