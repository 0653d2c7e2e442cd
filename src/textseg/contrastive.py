"""CLIP's symmetric image-text contrastive loss over the global batch, shared by every method that
trains with it (``clip``; TCL's image-level term; ViL-Seg's cross-modal term).

Keys are gathered over processes with gradient (:func:`textseg.distributed.gather_with_grad`, the
identity on one process); each process scores its own ``B`` queries against all ``N`` keys
(``[B, N]`` per direction, not the transpose of one global matrix), so its positives sit at
``rank * B + i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.distributed import gather_with_grad, rank


def global_targets(local_batch: int, device: torch.device, repeat: int = 1) -> Tensor:
    """Indices of this process's keys in the gathered key matrix, each repeated ``repeat`` times."""
    own = torch.arange(local_batch, device=device) + rank() * local_batch
    return own.repeat_interleave(repeat)


def symmetric_cross_entropy(logits_per_image: Tensor, logits_per_text: Tensor) -> Tensor:
    """``0.5 * (CE_img + CE_txt)`` of already scaled ``[B, N]`` logits, positives at ``rank * B + i``."""
    labels = global_targets(logits_per_image.shape[0], logits_per_image.device)
    return 0.5 * (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels))


def clip_loss(image: Tensor, text: Tensor, scale: Tensor) -> Tensor:
    """CLIP's loss between paired, already L2-normalised embeddings ``[B, D]``, logits times ``scale``."""
    return symmetric_cross_entropy(
        scale * (image @ gather_with_grad(text).t()), scale * (text @ gather_with_grad(image).t())
    )
