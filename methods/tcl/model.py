"""TCL (Cha, Mun, Roh; CVPR 2023) as a :class:`textseg.api.SegMethod`.

A frozen CLIP (image and text towers), the trainable :class:`Grounder`, :class:`Sim2Mask` and the
two contrastive losses' temperatures. Official code: kakaobrain/tcl ``models/tcl/tcl.py``
(``TCL.forward``, ``generate_masks``, ``set_train``) and ``utils/optimizer.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
from textseg.methods.tcl.inference import KpBranch, generate_masks, per_window
from textseg.methods.tcl.losses import ExtendedInfoNCE, InfoNCE, area_loss, masked_pool, tv_loss
from textseg.methods.tcl.masks import PairMasks, Sim2Mask, cosine_map, split_pairs
from textseg.methods.tcl.transform import TrainTransform
from textseg.text.synonyms import max_over_names
from textseg.training.optim import decay_groups

#: The parameters frozen during the decoder-only ("UST") phase: the copied last block.
STAGED_PREFIX = "grounder.block."


class TCL(SegMethod):
    """State-dict layout: ``clip.*`` (frozen, pretrained; never saved), ``grounder.{block,decoder,
    post_layernorm,projection}.*``, ``sim2mask.{w,b}``, ``image_loss.logit_scale`` (TCL's
    ``tcli_loss``) and ``feature_loss.logit_scale`` (``tclf_loss``)."""

    inference_settings = (
        "pamr",
        "pamr_iterations",
        "pamr_dilations",
        "kp_w",
        "kp_center",
        "kp_scale",
        "bg_thresh",
    )

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
        self.configure_inference()

    def configure_inference(self) -> None:
        c = self.config
        self.pamr = PAMR(c.pamr_iterations, c.pamr_dilations) if c.pamr else None
        self.kp = KpBranch(c.kp_w, c.kp_center, c.kp_scale) if c.kp_w > 0 else None

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
        with ``kp_text`` (default: ``text``; CoDe embeds the two differently). The backbone runs on
        the batch; the text-dependent rest :func:`per_window`, so each crop's result is the same in
        any batch."""
        vision = self.clip.vision
        tokens, grid = vision.tokens_before_last(padded, self.config.positions)
        soft = per_window(
            lambda grounded: self.sim2mask(cosine_map(grounded, text), deterministic=True)[1],
            self.grounder(tokens, grid),
        )
        if self.kp is None:
            return soft, None
        frozen = vision.run_last(tokens, grid, self.config.last_block)
        kp_text = text if kp_text is None else kp_text
        return soft, per_window(
            lambda dense: cosine_map(dense, kp_text), vision.to_map(vision.project(frozen), grid)
        )

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Soft masks in [0, 1] at the crop's size ``[B, K, H, W]``; a class with synonyms takes the max.

        The kp branch uses ``text.extras["kp"]`` when the vocabulary was encoded with separate kp
        embeddings (CoDe), else the same embeddings as the grounder (TCL).
        """
        embeddings = text.embeddings.to(images.device)
        kp_text = text.extras.get("kp")
        kp_text = None if kp_text is None else kp_text.to(images.device)
        masks = generate_masks(
            images,
            self.clip.vision.patch_size,
            lambda padded: self.masks_and_kp(padded, embeddings, kp_text),
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
        if images.shape[0] * world_size() < 2:
            raise ConfigError(
                "TCL contrasts each image with the other texts of the batch: use a global batch >= 2"
            )
        vision = self.clip.vision
        with torch.no_grad():
            tokens, grid = vision.tokens_before_last(images, self.config.positions)
            text = self.clip.text.encode(ids)
        embedding = self.grounder(tokens, grid)  # V^s, unnormalised [B, D, H/4, W/4]
        masks = self.pair_masks(embedding, text)
        highlighted = self.highlighted_embedding(images, masks.pos) if self.config.tcl_w else None
        losses = self.grounding_losses(embedding, text, masks, highlighted)
        if not losses:
            raise ConfigError("every TCL loss weight is 0 (tcl_w, area_w, tv_w): nothing to train")
        total = torch.stack(list(losses.values())).sum()
        return {"loss": total, **{name: value.detach() for name, value in losses.items()}}

    def pair_masks(self, embedding: Tensor, text: Tensor) -> PairMasks:
        """Masks of each map ``[B, D, H, W]`` with every text of the global batch; map ``b`` is
        paired with local text ``b`` (CoDe passes each image once per noun, so the same image's
        other noun is a negative)."""
        hard, soft = self.sim2mask(cosine_map(embedding, gather_with_grad(text)))
        return split_pairs(hard, soft, offset=embedding.shape[0] * rank())

    def highlighted_embedding(self, images: Tensor, hard: Tensor, background: Tensor | None = None) -> Tensor:
        """The frozen CLIP's image embedding ``[B, D]`` of ``hard * image + (1 - hard) * background``.

        ``hard`` is the straight-through mask ``[B, 1, h, w]``, upsampled by nearest; TCL's background
        is 0 (the mean colour in normalised space), CoDe's the learned region prompt, resized
        bilinearly to the image size.
        """
        size = images.shape[-2:]
        mask = F.interpolate(hard, size, mode="nearest")
        highlighted = mask * images
        if background is not None:
            highlighted = highlighted + (1 - mask) * F.interpolate(background, size, mode="bilinear")
        return self.clip.vision.global_embedding(highlighted, self.config.positions)

    def grounding_losses(
        self, embedding: Tensor, text: Tensor, masks: PairMasks, highlighted: Tensor | None
    ) -> dict[str, Tensor]:
        """The weighted image-side losses; a term whose weight is 0 is left out, as in TCL.

        Area (``area_w`` for the paired mask's prior ``pos_area``; ``neg_area_w``, default
        ``area_w``, for the others' prior ``neg_area``), TV of ``embedding`` and of the soft masks
        (``tv_w``), and with ``tcl_w`` the feature-level loss on ``embedding`` pooled under the soft
        masks and the image-level loss on ``highlighted`` (see :meth:`highlighted_embedding`).
        """
        c = self.config
        neg_area_w = c.area_w if c.neg_area_w is None else c.neg_area_w
        losses: dict[str, Tensor] = {}
        if c.area_w:
            losses["area_loss"] = c.area_w * area_loss(masks.soft_pos, c.pos_area)
        if neg_area_w:
            losses["neg_area_loss"] = neg_area_w * area_loss(masks.soft_neg, c.neg_area)
        if c.tv_w:
            losses["tv_img_loss"] = c.tv_w * tv_loss(embedding)
            losses["tv_mask_loss"] = c.tv_w * tv_loss(masks.soft_all)
        if c.tcl_w:
            if highlighted is None:
                raise ValueError("tcl_w is set: the image-level loss needs the highlighted embedding")
            losses["tclf_loss"] = c.tcl_w * self.feature_loss(masked_pool(embedding, masks.soft_all), text)
            losses["tcli_loss"] = c.tcl_w * self.image_loss(highlighted, text)
        return losses

    def staged_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Every parameter that trains at some step: the trainable ones now plus the copied block."""
        for name, param in self.named_parameters():
            if name.startswith(self.pretrained_prefixes):
                continue
            if param.requires_grad or name.startswith(STAGED_PREFIX):
                yield name, param

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """TCL's decay rule (``utils/optimizer.py``: no decay for 1-D parameters and ``.bias``; 0-dim
        ones such as gates, ``sim2mask.w/b`` and logit scales *are* decayed; :func:`decay_groups`)
        over :meth:`staged_parameters`. The copied block is listed even while
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
