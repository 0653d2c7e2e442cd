"""TCL (Cha, Mun, Roh; CVPR 2023) as a :class:`textseg.api.SegMethod`.

A frozen CLIP (image and text towers), the trainable :class:`Grounder`, :class:`Sim2Mask` and the
two contrastive losses' temperatures. Official code: kakaobrain/tcl ``models/tcl/tcl.py``
(``TCL.forward``, ``generate_masks``, ``set_train``) and ``utils/optimizer.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.clip import CLIPBackbone
from textseg.distributed import gather_with_grad, rank, world_size
from textseg.errors import ConfigError
from textseg.evaluation.pamr import PAMR
from textseg.methods.tcl.config import TCLConfig
from textseg.methods.tcl.grounder import Grounder
from textseg.methods.tcl.inference import KpBranch, generate_masks
from textseg.methods.tcl.losses import ExtendedInfoNCE, InfoNCE, area_loss, masked_pool, tv_loss
from textseg.methods.tcl.masks import Sim2Mask, cosine_map, split_pairs
from textseg.methods.tcl.transform import TrainTransform
from textseg.text.synonyms import max_over_names

#: The parameters frozen during the decoder-only ("UST") phase: the copied last block.
STAGED_PREFIX = "grounder.block."


def decay_groups(named: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict[str, Any]]:
    """TCL's (and CoDe's) rule, ``utils/optimizer.py``: no decay for 1-D parameters and names ending
    in ``.bias``; everything else is decayed — including 0-dim parameters (gates, ``sim2mask.w/b``,
    logit scales), whose shape is not 1-D and whose names do not end in ``.bias``."""
    decay, no_decay = [], []
    for name, param in named:
        (no_decay if param.ndim == 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class TCL(SegMethod):
    """State-dict layout: ``clip.*`` (frozen, pretrained; never saved), ``grounder.{block,decoder,
    post_layernorm,projection}.*``, ``sim2mask.{w,b}``, ``image_loss.logit_scale`` (TCL's
    ``tcli_loss``) and ``feature_loss.logit_scale`` (``tclf_loss``)."""

    pretrained_prefixes = ("clip.",)

    def __init__(self, config: TCLConfig) -> None:
        super().__init__(config)
        self.clip = CLIPBackbone.load(config.clip, config.tokenizer)
        self.grounder = Grounder(
            self.clip.vision,
            config.decoder_layers,
            config.decoder_double,
            config.decoder_kernel,
            config.last_block,
        )
        self.sim2mask = Sim2Mask(
            config.sim2mask_w, config.sim2mask_b, config.gumbel_tau, config.sim2mask_learnable
        )
        self.image_loss = InfoNCE(config.temperature, config.max_logit_scale)
        self.feature_loss = ExtendedInfoNCE(config.temperature, config.max_logit_scale)
        self.pamr = PAMR(config.pamr_iterations, config.pamr_dilations) if config.pamr else None
        self.kp = KpBranch(config.kp_w, config.kp_center, config.kp_scale) if config.kp_w > 0 else None

    def train(self, mode: bool = True) -> TCL:
        """The frozen CLIP stays in eval mode (as TCL's ``train`` override; no numeric effect here)."""
        super().train(mode)
        self.clip.eval()
        return self

    # -- inference ----------------------------------------------------------------------------
    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        """One embedding per name: unnormalised template embeddings averaged, then normalised."""
        embeddings = self.clip.text.encode_classes(vocab.names, vocab.templates, self.config.text_average)
        return TextState(vocab, embeddings)

    def masks_and_kp(
        self, padded: Tensor, text: Tensor, kp_text: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Soft masks at 1/4 resolution for ``text`` and, if kp is on, the frozen CLIP's cosine map
        with ``kp_text`` (default: ``text``; CoDe embeds the two differently)."""
        vision = self.clip.vision
        tokens, grid = vision.tokens_before_last(padded, self.config.positions)
        _, soft = self.sim2mask(cosine_map(self.grounder(tokens, grid), text), deterministic=True)
        if self.kp is None:
            return soft, None
        frozen = vision.run_last(tokens, grid, self.config.last_block)
        kp_text = text if kp_text is None else kp_text
        return soft, cosine_map(vision.to_map(vision.project(frozen), grid), kp_text)

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Soft masks in [0, 1] at the crop's size ``[B, K, H, W]``; a class with synonyms takes the max."""
        embeddings = text.embeddings.to(images.device)
        masks = generate_masks(
            images,
            self.clip.vision.patch_size,
            lambda padded: self.masks_and_kp(padded, embeddings),
            self.pamr,
            self.kp,
        )
        vocab = text.vocabulary
        return max_over_names(masks, vocab.name_to_class, vocab.num_classes)

    # -- training -----------------------------------------------------------------------------
    def train_transform(self) -> TrainTransform:
        c = self.config
        return TrainTransform(
            self.clip.text.tokenizer,
            self.clip.text.context_length,
            c.image_size,
            c.crop_scale,
            c.auto_augment,
            c.color_jitter,
            c.re_prob,
        )

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """TCL's six losses, weighted: ``{"loss": sum, "tcli_loss", "tclf_loss", "area_loss", ...}``."""
        images, ids = batch["image"], batch["text"]
        batch_size, c = images.shape[0], self.config
        if batch_size * world_size() < 2:
            raise ConfigError(
                "TCL contrasts each image with the other texts of the batch: use a global batch >= 2"
            )
        vision = self.clip.vision
        with torch.no_grad():
            tokens, grid = vision.tokens_before_last(images, c.positions)
            text = self.clip.text.encode(ids)
        embedding = self.grounder(tokens, grid)  # V^s, unnormalised [B, D, H/4, W/4]
        hard, soft = self.sim2mask(cosine_map(embedding, gather_with_grad(text)))
        masks = split_pairs(hard, soft, offset=batch_size * rank())
        losses: dict[str, Tensor] = {}  # a term whose weight is 0 is left out, as in TCL
        if c.area_w:
            losses["area_loss"] = c.area_w * area_loss(masks.soft_pos, c.pos_area)
            losses["neg_area_loss"] = c.area_w * area_loss(masks.soft_neg, c.neg_area)
        if c.tv_w:
            losses["tv_img_loss"] = c.tv_w * tv_loss(embedding)
            losses["tv_mask_loss"] = c.tv_w * tv_loss(masks.soft_all)
        if c.tcl_w:
            pooled = masked_pool(embedding, masks.soft_all)
            losses["tclf_loss"] = c.tcl_w * self.feature_loss(pooled, text)
            # the hard mask (straight-through) on the normalised image, through the frozen CLIP
            masked = F.interpolate(masks.pos, images.shape[-2:], mode="nearest") * images
            losses["tcli_loss"] = c.tcl_w * self.image_loss(
                vision.global_embedding(masked, c.positions), text
            )
        if not losses:
            raise ConfigError("every TCL loss weight is 0 (tcl_w, area_w, tv_w): nothing to train")
        total = torch.stack(list(losses.values())).sum()
        return {"loss": total, **{name: value.detach() for name, value in losses.items()}}

    def staged_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Every parameter that trains at some step: the trainable ones now plus the copied block."""
        for name, param in self.named_parameters():
            if name.startswith(self.pretrained_prefixes):
                continue
            if param.requires_grad or name.startswith(STAGED_PREFIX):
                yield name, param

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """TCL's decay rule over :meth:`staged_parameters`. The copied block is listed even while
        frozen, so an optimizer built at step 0 already holds it when :meth:`on_train_step`
        unfreezes it (AdamW skips parameters without gradients)."""
        return decay_groups(self.staged_parameters(), weight_decay)

    def on_train_step(self, step: int) -> None:
        """The decoder-only phase: the copied block is frozen before ``ust_steps`` and trains after.

        Under diagonal attention the block's query and key projections are never read, so they get
        no gradient even then (TCL's packed ``in_proj`` gets zero rows; only weight decay moves
        them there, which changes no output).
        """
        self.grounder.block.requires_grad_(step >= self.config.ust_steps)
