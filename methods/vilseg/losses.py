"""ViL-Seg's training signals besides the cross-modal one (CLIP's loss,
:func:`textseg.contrastive.clip_loss`), as plain functions of embeddings and assignments.

Contrastive keys are gathered over processes with :func:`textseg.distributed.gather_with_grad`
(the identity on one process); each process scores its own queries against every key, so the
positives of this process sit at ``rank * batch + i``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from textseg.contrastive import global_targets
from textseg.distributed import gather_with_grad


def local_global_loss(local: Tensor, global_: Tensor, temperature: float) -> Tensor:
    """InfoNCE with each local crop as query and the global view of the same image as its positive.

    ``local`` is ``[B * n, D]`` (crops of image ``i`` at rows ``i*n .. i*n+n-1``), ``global_`` is
    ``[B, D]``; both L2-normalised. The other images' global views (over all processes) are the
    negatives.
    """
    per_image = len(local) // len(global_)
    logits = local @ gather_with_grad(global_).t() / temperature
    return F.cross_entropy(logits, global_targets(len(global_), local.device, per_image))


def iic_loss(
    assign: Tensor, assign_other: Tensor, lamb: float = 1.0, global_stats: bool = False, eps: float = 1e-8
) -> Tensor:
    """Negative mutual information between the cluster assignments of corresponding items (IIC).

    ``assign`` and ``assign_other`` are ``[M, C]`` soft assignments (rows sum to 1) where row ``m``
    of each is the same patch seen in two views. Their joint distribution ``P`` over cluster pairs
    is the mean outer product, symmetrised; the loss is
    ``-sum P_cc' (log P_cc' - lamb log P_c - lamb log P_c')``: with ``lamb = 1`` exactly ``-I``,
    minimised (at ``-log C``) by confident, balanced, view-consistent assignments.
    """
    joint = assign.float().t() @ assign_other.float() / len(assign)
    if global_stats:
        joint = gather_with_grad(joint.unsqueeze(0)).mean(0)
    joint = ((joint + joint.t()) / 2).clamp_min(eps)
    row = joint.sum(1, keepdim=True)
    col = joint.sum(0, keepdim=True)
    return -(joint * (joint.log() - lamb * row.log() - lamb * col.log())).sum()
