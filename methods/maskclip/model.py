"""MaskCLIP (Zhou, Loy, Dai; ECCV 2022) without key smoothing or prompt denoising.

Per crop: centred zero padding to a multiple of the patch size, CLIP's image tower with the last
block in the configured variant, ``post_layernorm`` + projection on every patch token, cosine with
each class-name embedding, max over a class's names, then the configured score mapping.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.clip import CLIPBackbone, get_last_block, pad_to_multiple, unpad_scores
from textseg.evaluation.pamr import PAMR, TCL_DILATIONS
from textseg.text.synonyms import max_over_names

from .config import MaskCLIPConfig


class MaskCLIP(SegMethod):
    pretrained_prefixes = ("clip.",)
    inference_settings = ("pamr", "score", "score_center", "score_scale", "bg_thresh")

    def __init__(self, config: MaskCLIPConfig) -> None:
        super().__init__(config)
        self.last_block = get_last_block(config.last_block)  # fails early on an unknown name
        self.clip = CLIPBackbone.load(config.clip, config.tokenizer, text_cache=config.text_cache)
        self.configure_inference()

    def configure_inference(self) -> None:
        self.pamr = PAMR(10, TCL_DILATIONS) if self.config.pamr else None

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        embeddings = self.clip.text.encode_classes(vocab.names, vocab.templates, self.config.template_average)
        return TextState(vocab, embeddings)

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        padded, pads = pad_to_multiple(images, self.clip.vision.patch_size)
        cosine = self.clip.vision.cosines(padded, text.embeddings, self.last_block, self.config.positions)
        vocab = text.vocabulary
        scores = self.score(max_over_names(cosine, vocab.name_to_class, vocab.num_classes))
        if self.pamr is not None:
            size = (padded.shape[-2] // 4, padded.shape[-1] // 4)
            scores = F.interpolate(scores, size, mode="bilinear")
            guide = F.interpolate(padded, size, mode="bilinear", align_corners=True)
            scores = self.pamr(guide, scores)
        return unpad_scores(scores, pads, (images.shape[-2], images.shape[-1]))

    def score(self, cosine: Tensor) -> Tensor:
        """Cosines -> the scores ``segment`` returns (and ``bg_thresh`` is compared with)."""
        if self.config.score == "cosine":
            return cosine
        return torch.sigmoid((cosine - self.config.score_center) * self.config.score_scale)
