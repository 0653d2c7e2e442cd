"""GroupViT's two training losses (NVlabs/GroupViT ``models/multi_label_contrastive.py``).

Both take L2-normalised embeddings and gather the keys over processes with gradient (the identity
on one process), so the positives of this process's rows sit at ``rank * B + i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.contrastive import clip_loss, global_targets
from textseg.distributed import gather_with_grad

#: The image-caption loss is CLIP's symmetric InfoNCE (``MultiLabelContrastive.loss``).
image_text_loss = clip_loss


def multi_label_loss(image: Tensor, prompts: Tensor, scale: Tensor | float) -> Tensor:
    """The multi-label contrastive loss between images ``[B, D]`` and their prompts ``[B, K, D]``.

    Image -> prompts: soft targets, ``1 / K`` on each of the image's own ``K`` prompts among all
    gathered prompts. Prompt -> images: its own image. Each direction is the soft-target cross
    entropy (timm's ``SoftTargetCrossEntropy``: ``-sum(target * log_softmax)``, mean over rows);
    the loss is their average.
    """
    batch, count, _ = prompts.shape
    flat = prompts.reshape(batch * count, -1)
    logits_per_image = (image @ gather_with_grad(flat).t()) * scale  # [B, W*B*K]
    logits_per_prompt = (flat @ gather_with_grad(image).t()) * scale  # [B*K, W*B]
    own = global_targets(batch, image.device)  # this process's images in the gathered batch
    columns = (own[:, None] * count + torch.arange(count, device=image.device)).long()
    targets = torch.zeros_like(logits_per_image).scatter_(1, columns, 1.0 / count)
    loss_image = -(targets * logits_per_image.log_softmax(-1)).sum(-1).mean()
    loss_prompt = F.cross_entropy(logits_per_prompt, global_targets(batch, image.device, repeat=count))
    return 0.5 * (loss_image + loss_prompt)
