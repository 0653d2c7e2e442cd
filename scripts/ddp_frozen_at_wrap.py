"""Which parameters does DDP synchronise when a method unfreezes some of them mid-training?

TCL freezes its copied block for 30k steps and then trains it without rebuilding the optimizer.
This shows, on a toy model with two CPU processes (gloo), that DDP only synchronises parameters
that required gradients when it was built, and that ``find_unused_parameters=True`` is needed
while a registered parameter is frozen. Run:

    python -m torch.distributed.run --nproc_per_node=2 scripts/ddp_frozen_at_wrap.py

Measured with torch 2.14.1 (CPU):

    frozen_at_wrap=False find_unused=False: error at step 1 (expected to finish reduction ...)
    frozen_at_wrap=False find_unused=True:  None, None, synced, synced
    frozen_at_wrap=True  find_unused=False: None, None, NOT synced, NOT synced
    frozen_at_wrap=True  find_unused=True:  None, None, NOT synced, NOT synced
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 4)
        self.staged = nn.Linear(4, 4)  # frozen for steps 0-1, trained from step 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.staged(x)).sum()


def run(frozen_at_wrap: bool, find_unused: bool) -> list[str] | str:
    torch.manual_seed(0)
    model = Toy()
    model.staged.requires_grad_(not frozen_at_wrap)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)
    outcome = []
    for step in range(4):
        model.staged.requires_grad_(step >= 2)
        model.zero_grad(set_to_none=True)
        x = torch.randn(2, 4) * (dist.get_rank() + 1) + step  # different data on each process
        try:
            ddp(x).backward()
        except RuntimeError as exc:
            return f"error at step {step}: {str(exc)[:60]}"
        grad = model.staged.weight.grad
        if grad is None:
            outcome.append("None")
            continue
        parts = [torch.zeros_like(grad) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, grad)
        outcome.append("synced" if all(torch.allclose(parts[0], p) for p in parts) else "NOT synced")
    return outcome


def main() -> None:
    dist.init_process_group("gloo")
    for frozen_at_wrap in (False, True):
        for find_unused in (False, True):
            result = run(frozen_at_wrap, find_unused)
            if dist.get_rank() == 0:
                print(f"frozen_at_wrap={frozen_at_wrap} find_unused={find_unused}: {result}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
