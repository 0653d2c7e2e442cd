"""The one distributed helper a method may use: gather a tensor from every process, keeping gradients.

TCL and CoDe contrast each image with the texts of the whole global batch. On one process (or
when torch.distributed is not initialised) this is the identity, so methods need no special case.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.cat(gathered, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        # Every process's loss depends on every slice; sum the gradients, keep this process's slice.
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size(), dim=0)[dist.get_rank()]


def gather_with_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all processes along dim 0; gradients flow back to each source.

    All processes must pass tensors of the same shape. Identity on a single process.
    """
    if world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)
