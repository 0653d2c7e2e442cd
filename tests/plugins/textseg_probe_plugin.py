"""A test-only trainable method for the trainer tests (installed as an outside plugin by them).

It is the dummy method plus what the trainer must cope with: random augmentation in the data
workers and random noise in the training step (so resume must restore every RNG), a frozen part
that is unfrozen at a given step (as TCL unfreezes a block at 30k), a loss that turns NaN, a job
killed at a given step, and a dump of each process's parameters at every step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from textseg_dummy_plugin import DummyConfig, DummyMethod, _Transform
from torch import Tensor, nn

from textseg.api import MethodSpec, Preset
from textseg.distributed import rank


@dataclass(frozen=True)
class ProbeConfig(DummyConfig):
    noise: float = 0.1
    frozen_size: int = 0  # a pretrained, frozen part (like CLIP) that checkpoints must leave out
    unfreeze_at_step: int = -1  # `words` is frozen before this step
    nan_from_step: int = -1
    stop_at_step: int = -1
    dump_dir: str = ""


class Interrupted(Exception):
    """Stands for a job killed between two steps."""


class _NoisyTransform(_Transform):
    def __call__(self, sample: dict[str, Any]) -> dict[str, Tensor]:
        out = super().__call__(sample)
        if random.random() < 0.5:
            out["image"] = out["image"].flip(-1)
        out["image"] = out["image"] + torch.from_numpy(
            np.random.normal(0, 0.05, out["image"].shape).astype(np.float32)
        )
        return out


class ProbeMethod(DummyMethod):
    pretrained_prefixes = ("frozen.",)

    def __init__(self, config: ProbeConfig) -> None:
        super().__init__(config)
        self.frozen = nn.Linear(config.frozen_size, config.frozen_size) if config.frozen_size else None
        if self.frozen is not None:
            self.frozen.requires_grad_(False)
        if config.unfreeze_at_step > 0:
            self.words.requires_grad_(False)
        self.step = 0

    def train_transform(self) -> _NoisyTransform:
        return _NoisyTransform(self.config)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        noisy = dict(batch, image=batch["image"] * (1 + self.config.noise * torch.randn_like(batch["image"])))
        out = super().training_step(noisy)
        if 0 <= self.config.nan_from_step <= self.step:
            out["loss"] = out["loss"] * float("nan")
        return out

    def on_train_step(self, step: int) -> None:
        self.step = step
        if self.config.dump_dir:
            state = {k: v.detach().clone() for k, v in self.trainable_state_dict().items()}
            torch.save(state, Path(self.config.dump_dir) / f"rank{rank()}-step{step}.pt")
        if step == self.config.unfreeze_at_step:
            self.words.requires_grad_(True)
        if step == self.config.stop_at_step:
            raise Interrupted(f"killed before step {step}")


PROBE = MethodSpec(
    name="probe",
    summary="test-only trainable method (trainer tests)",
    paper="none",
    config_cls=ProbeConfig,
    build=ProbeMethod,
    presets={"paper": Preset("default"), "tiny": Preset("default")},
    trainable=True,
)
