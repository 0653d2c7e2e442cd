"""The online clustering head and cluster-level classification (ViL-Seg's inference).

The head maps every L2-normalised patch embedding to a distribution over ``C`` clusters; it is
trained without labels by :func:`textseg.methods.vilseg.losses.iic_loss`. At inference each patch
takes its most likely cluster, the patches of one cluster in one image are pooled into a segment
embedding, and the segment -- not the patch -- is classified against the class text embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ClusterHead(nn.Module):
    """``Linear -> GELU -> Linear`` (or one ``Linear``) from embeddings to ``C`` cluster logits."""

    def __init__(self, dim: int, num_clusters: int, kind: str = "mlp") -> None:
        super().__init__()
        if kind == "mlp":
            self.net: nn.Module = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, num_clusters))
        elif kind == "linear":
            self.net = nn.Linear(dim, num_clusters)
        else:
            raise ValueError(f"unknown cluster head {kind!r}; use 'mlp' or 'linear'")
        self.num_clusters = num_clusters

    def forward(self, embeddings: Tensor) -> Tensor:
        """Cluster logits ``[..., C]`` for embeddings ``[..., D]``."""
        return self.net(embeddings)


def classify_clusters(
    patches: Tensor,
    assign: Tensor,
    names: Tensor,
    name_to_class: Tensor,
    num_classes: int,
    num_clusters: int,
    temperature: float,
) -> Tensor:
    """Per-class scores ``[B, K, h, w]`` where every patch carries its cluster's scores.

    ``patches`` ``[B, h, w, D]`` and ``names`` ``[M, D]`` are L2-normalised; ``assign`` ``[B, h, w]``
    holds cluster indices; ``name_to_class`` ``[M]`` maps each name (synonym) to its class. A
    cluster's embedding is the re-normalised mean of its patches in that image; a class's cosine
    is its best name's; the score is the softmax over classes of cosine / ``temperature``.
    """
    b, h, w, _ = patches.shape
    members = F.one_hot(assign.reshape(b, h * w), num_clusters).to(patches.dtype)  # [B, N, C]
    segments = F.normalize(members.transpose(1, 2) @ patches.reshape(b, h * w, -1), dim=-1)  # [B, C, D]
    cosine = segments @ names.t()  # [B, C, M]
    owner = name_to_class.to(cosine.device).expand_as(cosine)
    per_class = cosine.new_full((b, num_clusters, num_classes), float("-inf"))
    per_class = per_class.scatter_reduce(-1, owner, cosine, reduce="amax")
    probs = torch.softmax(per_class / temperature, dim=-1)  # [B, C, K]
    return (members @ probs).transpose(1, 2).reshape(b, num_classes, h, w)
