"""Plain CLIP as a dense segmenter (MaskCLIP's pipeline with CLIP's last block unchanged) that also
trains with CLIP's own image-caption contrastive loss, every weight included."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from textseg.clip.loading import EXPORTED_CLIP
from textseg.contrastive import clip_loss
from textseg.distributed import world_size
from textseg.errors import ConfigError
from textseg.methods.maskclip.model import MaskCLIP
from textseg.training.optim import decay_groups

from .config import CLIPBaselineConfig
from .transform import CaptionTransform


class CLIPBaseline(MaskCLIP):
    """State dict: ``clip.*`` (:class:`textseg.clip.CLIPBackbone`), all of it trainable and saved."""

    #: Nothing is frozen: a checkpoint holds the whole CLIP (a CLIP trained from scratch has no
    #: pretrained part to fill in), and :meth:`export` writes it as a CLIP folder.
    pretrained_prefixes = ()

    def __init__(self, config: CLIPBaselineConfig) -> None:
        super().__init__(config)
        self.clip.requires_grad_(True)

    def train_transform(self) -> CaptionTransform:
        c = self.config
        return CaptionTransform(
            self.clip.text.tokenizer, self.clip.text.context_length, c.image_size, c.crop_scale, c.mean, c.std
        )

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """CLIP's loss: ``{"loss", "logit_scale"}`` (the scale is logged, not a loss term)."""
        images, ids = batch["image"], batch["text"]
        if images.shape[0] * world_size() < 2:
            raise ConfigError(
                "CLIP contrasts each image with the other captions of the batch: use a global batch >= 2"
            )
        image = self.clip.vision.global_embedding(images, self.config.positions)
        text = self.clip.text.encode(ids)
        scale = self.clip.logit_scale.exp().clamp(max=self.config.max_logit_scale)
        return {
            "loss": clip_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1), scale),
            "logit_scale": scale.detach(),
        }

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """CLIP's (open_clip's) rule: no decay for gains, biases and the logit scale."""
        return decay_groups(self.named_parameters(), weight_decay, decay_scalars=False)

    def export(self, folder: Path) -> None:
        """The trained CLIP as ``<checkpoint>/clip/``: ``--set clip=<checkpoint>`` (or the folder) loads it."""
        self.clip.save_pretrained(folder / EXPORTED_CLIP)
