"""Training settings shared by every method; a method's presets override them (``train.*`` keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the one training loop.

    ``lr`` and ``min_lr`` are per the recipe; when ``lr_scale_batch`` is set they are multiplied
    by ``global batch / lr_scale_batch`` (TCL and CoDe scale by global batch / 4096).
    """

    steps: int = 1000
    batch_size: int = 64  # per process, before gradient accumulation
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 0.0
    lr_scale_batch: int | None = None
    warmup_steps: int = 0
    warmup_start_factor: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None
    precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0
    num_workers: int = 2
    shuffle_buffer: int = 1000
    checkpoint_every: int = 1000
    keep_last: int = 3
    eval_every: int = 0
    eval_benchmarks: tuple[str, ...] = ()
    log_every: int = 10
    trackers: tuple[str, ...] = ("csv",)
