"""CoDe's own losses (``cal_kg_loss`` in ``noun_decomposition.py`` and ``tseg_loss`` in
``codecomposition.py`` officially); the image-side losses are TCL's
(:meth:`~textseg.methods.tcl.model.TCL.grounding_losses`) and the region-word loss is TCL's
:class:`~textseg.methods.tcl.losses.InfoNCE` on the highlighted region and words."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.methods.code.labels import IGNORE


def knowledge_guided_loss(nouns: Tensor, reference: Tensor) -> Tensor:
    """``1 - mean_i <noun_i, reference_i>`` for unit embeddings ``[N, D]`` (the prompted nouns and the
    frozen CLIP's embeddings of template sentences holding the same nouns)."""
    return 1 - (nouns * reference.to(nouns.dtype)).sum(-1).mean()


def word_segmentation_loss(logits: Tensor, labels: Tensor, other_weight: float = 0.5) -> Tensor:
    """Class-weighted cross-entropy of word-mask logits ``[B, K + 1, L]`` against labels ``[B, L]``.

    Class weights are ``[other_weight, 1, .., 1]`` and ``-1`` is ignored, so the value is
    ``Σ_t w[y_t] (-log p_t[y_t]) / Σ_t w[y_t]`` over the labelled tokens of the batch (PyTorch's
    weighted mean). A batch without a single labelled token gives 0 (officially NaN).
    """
    classes = logits.shape[1]
    weight = torch.ones(classes, device=logits.device, dtype=torch.float32)
    weight[0] = other_weight
    if not (labels != IGNORE).any():
        return logits.sum() * 0
    return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=IGNORE)
