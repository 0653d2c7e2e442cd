"""Training settings shared by every method; a method's presets override them (``train.*`` keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from textseg.config import NonNegative, Positive, Range
from textseg.errors import ConfigError

#: An Adam beta: a decay rate in [0, 1).
Beta = Annotated[float, Range(0.0, 1.0, high_open=True)]


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the one training loop.

    After the warmup the rate follows a cosine to ``min_lr``, or, when ``lr_milestones`` are given,
    stays constant and is multiplied by ``lr_gamma`` at each milestone step (torch's ``MultiStepLR``:
    CLIP-DINOiser). ``lr`` and ``min_lr`` are per the recipe; when ``lr_scale_batch`` is set they are
    multiplied by ``global batch / lr_scale_batch`` (TCL and CoDe scale by global batch / 4096). The global
    batch is ``batch_size x processes x grad_accum``. ``num_workers`` data workers run per process.
    ``checkpoint_every``/``eval_every``/``log_every`` count optimisation steps; ``keep_last=0``
    keeps every checkpoint. Periodic evaluation reads ``eval_benchmarks`` under ``eval_data_root``
    (default: ``$TEXTSEG_DATA`` or ``./data``).
    """

    steps: int = 1000
    batch_size: int = 64  # per process, before gradient accumulation
    grad_accum: int = 1
    lr: Positive = 3e-4
    min_lr: NonNegative = 0.0
    lr_scale_batch: int | None = None
    warmup_steps: int = 0
    warmup_start_factor: float = 1e-4
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: Positive = 0.1
    weight_decay: NonNegative = 0.05
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    eps: Positive = 1e-8
    grad_clip: Positive | None = None
    precision: Literal["no", "fp16", "bf16"] = "no"
    seed: int = 0
    num_workers: int = 2
    shuffle_buffer: int = 1000
    checkpoint_every: int = 1000
    keep_last: int = 3
    eval_every: int = 0
    eval_benchmarks: tuple[str, ...] = ()
    eval_data_root: str | None = None
    log_every: int = 10
    trackers: tuple[str, ...] = ("csv",)
    find_unused_parameters: bool = False  # DDP: set when a trainable parameter may get no gradient in a step

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "grad_accum", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "num_workers", "shuffle_buffer", "keep_last", "eval_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} cannot be negative, got {getattr(self, name)}")
        if list(self.lr_milestones) != sorted(set(self.lr_milestones)) or any(
            m < 1 for m in self.lr_milestones
        ):
            raise ConfigError(
                f"train.lr_milestones must be increasing positive steps, got {self.lr_milestones}"
            )
        if not 0 < self.warmup_start_factor <= 1:
            raise ConfigError(f"train.warmup_start_factor must be in (0, 1], got {self.warmup_start_factor}")
