"""AdamW with parameter groups, and the learning-rate schedule: linear warmup, then cosine to ``min_lr``.

Both follow TCL's and CoDe's ``utils/optimizer.py`` / ``utils/lr_scheduler.py``:

* every parameter goes into the optimizer, frozen ones included (AdamW skips a parameter without
  a gradient), so a block a method unfreezes later (TCL at step 30k) is trained from then on;
* no weight decay for parameters that are 1-D or whose name ends in ``.bias``. 0-dim parameters
  (logit scales, gates) *are* decayed, as in the official code;
* ``LinearLR(start_factor) -> CosineAnnealingLR(T_max=steps - warmup, eta_min=min_lr)``,
  stepped once per optimisation step, in closed form (:func:`lr_factor`); with ``lr_milestones``
  the cosine is replaced by ``MultiStepLR(milestones, lr_gamma)`` (CLIP-DINOiser's schedule);
* ``lr`` and ``min_lr`` are multiplied by ``global batch / lr_scale_batch`` when the recipe sets
  ``lr_scale_batch`` (TCL and CoDe: 4096). The global batch counts every process and every
  gradient-accumulation micro-batch.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from textseg.api import SegMethod
from textseg.training.config import TrainConfig


def decay_groups(
    named: Iterable[tuple[str, nn.Parameter]], weight_decay: float, *, decay_scalars: bool = True
) -> list[dict[str, Any]]:
    """Two groups: decayed, and not decayed (1-D parameters and names ending in ``.bias``).

    0-dim parameters (logit scales, gates) are decayed, as in TCL's and CoDe's code, unless
    ``decay_scalars`` is False (open_clip's rule for CLIP, which exempts its logit scale).
    """
    decay, no_decay = [], []
    for name, parameter in named:
        exempt = parameter.ndim == 1 or name.endswith(".bias") or (parameter.ndim == 0 and not decay_scalars)
        (no_decay if exempt else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def default_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """:func:`decay_groups` over every parameter of ``module`` (the trainer's default)."""
    return decay_groups(module.named_parameters(), weight_decay)


def lr_scale(config: TrainConfig, global_batch: int) -> float:
    """The factor applied to ``lr`` and ``min_lr`` (1 unless ``lr_scale_batch`` is set)."""
    return global_batch / config.lr_scale_batch if config.lr_scale_batch else 1.0


def build_optimizer(method: SegMethod, config: TrainConfig, global_batch: int) -> torch.optim.AdamW:
    """AdamW over the method's groups (or the default groups), learning rates scaled by global batch.

    A group that carries its own ``lr`` is scaled by the same factor as the base ``lr``.
    """
    scale = lr_scale(config, global_batch)
    groups = method.param_groups(config.weight_decay) or default_param_groups(method, config.weight_decay)
    for group in groups:
        if "lr" in group:
            group["lr"] = group["lr"] * scale
    return torch.optim.AdamW(groups, lr=config.lr * scale, betas=config.betas, eps=config.eps)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of each group's peak lr at optimisation step ``step`` (0-based).

    Warmup: ``start + (1 - start) * step / warmup``. Then cosine from 1 to ``min_lr / lr``
    over ``steps - warmup`` steps, staying at the minimum afterwards; or, with ``lr_milestones``,
    ``lr_gamma ** (number of milestones <= step)`` (``MultiStepLR``'s closed form).
    """
    warmup = config.warmup_steps
    if step < warmup:
        start = config.warmup_start_factor
        return start + (1.0 - start) * step / warmup
    if config.lr_milestones:
        return config.lr_gamma ** bisect.bisect_right(config.lr_milestones, step)
    floor = config.min_lr / config.lr if config.lr else 0.0
    span = config.steps - warmup
    progress = min(1.0, (step - warmup) / span) if span > 0 else 1.0
    return floor + (1.0 - floor) * (1.0 + math.cos(math.pi * progress)) / 2.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LambdaLR:
    """The schedule as a ``LambdaLR`` (a closure, so a checkpoint keeps only its step count)."""

    def factor(step: int) -> float:
        return lr_factor(step, config)

    return LambdaLR(optimizer, factor)
