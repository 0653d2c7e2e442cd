"""CoDe (Wu et al., CVPR 2024) as a :class:`textseg.api.SegMethod`, built on TCL's.

The image segmenter, its masks, the image-side losses, the decoder-only phase, the optimizer's
decay rule and the inference pipeline are TCL's (this class extends
:class:`~textseg.methods.tcl.model.TCL`). CoDe adds the noun prompt, the text segmenter, the
region and word prompts and three losses. Official code: 072jiajia/Image-Text-Co-Decomposition
``models/tcl/{codecomposition,noun_decomposition,prompter,decoders}.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from textseg.api import TextState, Vocabulary
from textseg.errors import ConfigError
from textseg.methods.code.config import CoDeConfig
from textseg.methods.code.losses import knowledge_guided_loss, word_segmentation_loss
from textseg.methods.code.prompts import NounPrompt, highlight_words
from textseg.methods.code.text_segmenter import TextSegmenter
from textseg.methods.code.transform import CoDeTransform
from textseg.methods.tcl.losses import InfoNCE
from textseg.methods.tcl.masks import normalize
from textseg.methods.tcl.model import TCL
from textseg.text.nouns import noun_extractor
from textseg.text.templates import get_templates

#: TCL's loss names -> CoDe's (the same computations on the noun-prompted masks).
_RENAMED = {"tclf_loss": "hlf_noun_loss", "tcli_loss": "hli_noun_loss"}


class CoDe(TCL):
    """State-dict layout: TCL's (``clip.*`` frozen and never saved, ``grounder.*``, ``sim2mask.*``,
    ``image_loss.logit_scale`` = official ``tcli_loss``, ``feature_loss.logit_scale`` = ``tclf_loss``)
    plus ``noun_prompt.ctx``, ``text_segmenter.{layers.*, w, b}`` (``text_decoder.*``,
    ``text_mask_w/b``), ``word_prompt`` ``[77, W]`` (``bg_text``), ``region_prompt``
    ``[1, 3, S, S]`` (``learnable_image_bg``) and ``region_word_loss.logit_scale`` (``hcl_loss``)."""

    config: CoDeConfig

    def __init__(self, config: CoDeConfig) -> None:
        super().__init__(config)
        text = self.clip.text
        width = text.token_embedding.embedding_dim
        self.noun_prompt = NounPrompt(text, config.n_ctx, config.ctx_init)
        self.text_segmenter = TextSegmenter(
            width,
            text.embed_dim,
            config.text_decoder_layers,
            config.text_decoder_heads,
            config.text_mask_w,
            config.text_mask_b,
        )
        size = config.region_prompt_size
        self.region_prompt = nn.Parameter(
            torch.zeros(1, 3, size, size), requires_grad=config.learn_region_prompt
        )
        self.word_prompt = nn.Parameter(
            torch.zeros(text.context_length, width), requires_grad=config.learn_word_prompt
        )
        self.region_word_loss = InfoNCE(config.temperature, config.max_logit_scale)

    # -- inference ----------------------------------------------------------------------------
    def encode_nouns(self, names: Sequence[str], batch_size: int = 256) -> Tensor:
        """Unit embeddings ``[N, D]`` of raw names (or nouns) after the learned context; no template."""
        tower = self.clip.text
        length = self.noun_prompt.noun_length(tower)
        return torch.cat(
            [
                self.noun_prompt(tower, tower.tokenize(names[i : i + batch_size], length))
                for i in range(0, len(names), batch_size)
            ]
        )

    @torch.no_grad()
    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        """Per name: the prompt-learned embedding (the mask branch) and, in ``extras["kp"]``, the
        vocabulary's templates averaged after normalising each (the kp branch)."""
        names = list(vocab.names)
        kp = self.clip.text.encode_classes(names, vocab.templates, self.config.text_average)
        return TextState(vocab, self.encode_nouns(names).float(), {"kp": kp})

    # -- training -----------------------------------------------------------------------------
    def train_transform(self) -> CoDeTransform:
        c = self.config
        return CoDeTransform(
            super().train_transform(),
            noun_extractor(c.nouns),
            c.num_nouns,
            self.noun_prompt.noun_length(self.clip.text),
            get_templates(c.kg_templates),
        )

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """CoDe's nine losses, weighted: ``{"loss": sum, "kg_loss", "hlf_noun_loss", "tv_img_loss",
        "tv_mask_loss", "area_loss", "neg_area_loss", "hli_noun_loss", "tseg_loss", "hcl_loss"}``.

        Each image is paired with each of its ``K`` nouns: pairs are ordered ``k * B + b`` (noun
        ``k`` of sample ``b``), so the same image's other noun is among the negatives.
        """
        c = self.config
        images, ids, labels = batch["image"], batch["text"], batch["word_labels"]
        batch_size, num_nouns = batch["nouns"].shape[:2]
        noun_ids = batch["nouns"].transpose(0, 1).reshape(num_nouns * batch_size, -1)
        kg_ids = batch["kg_text"].transpose(0, 1).reshape(num_nouns * batch_size, -1)
        vision, tower = self.clip.vision, self.clip.text
        with torch.no_grad():
            tokens, grid = vision.tokens_before_last(images, c.positions)
            hidden = tower.hidden_states(ids)
            words = tower.token_embedding(ids)
            eot = tower.eot_positions(ids)
            reference = normalize(tower.encode(kg_ids), -1)
        # the decoded map, L2-normalised per pixel, once per noun
        decoded = normalize(self.grounder(tokens, grid), 1).repeat(num_nouns, 1, 1, 1)
        images = images.repeat(num_nouns, 1, 1, 1)
        nouns = self.noun_prompt(tower, noun_ids)  # [K*B, D], unit
        masks = self.pair_masks(decoded, nouns)
        region = None
        if c.tcl_w or c.hcl_w:  # the highlighted region through the frozen CLIP
            region = self.highlighted_embedding(images, masks.pos, self.region_prompt)
        losses: dict[str, Tensor] = {}  # a term whose weight is 0 is left out
        if c.kg_w:
            losses["kg_loss"] = c.kg_w * knowledge_guided_loss(nouns, reference)
        for name, value in self.grounding_losses(decoded, nouns, masks, region).items():
            losses[_RENAMED.get(name, name)] = value
        word_logits = self.text_segmenter(hidden, nouns)  # [B, K+1, L]
        if c.tseg_w:
            losses["tseg_loss"] = c.tseg_w * word_segmentation_loss(word_logits, labels, c.tseg_other_weight)
        if c.hcl_w:
            word_masks = word_logits.softmax(dim=1)[:, 1:].transpose(0, 1).reshape(num_nouns * batch_size, -1)
            eot = eot.repeat(num_nouns)
            highlighted = highlight_words(words.repeat(num_nouns, 1, 1), word_masks, eot, self.word_prompt)
            words_emb = tower.encode_embeddings(highlighted, eot)
            losses["hcl_loss"] = c.hcl_w * self.region_word_loss(region, words_emb)
        if not losses:
            raise ConfigError("every CoDe loss weight is 0: nothing to train")
        total = torch.stack(list(losses.values())).sum()
        return {"loss": total, **{name: value.detach() for name, value in losses.items()}}
