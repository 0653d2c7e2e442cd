"""Talk2DINO (Barsellotti, Bianchi et al., ICCV 2025) as a :class:`textseg.api.SegMethod`.

Two frozen backbones from :mod:`textseg.backbones` — a CLIP (its text tower only) and DINOv2 —
and one learned module, :class:`TextProjection`, mapping CLIP's text embedding into DINOv2's patch
space. Written from the official code (lorebianchi98/Talk2DINO ``src/model.py``, ``train.py``,
``src/open_vocabulary_segmentation/models/dinotext/{dinotext,masker}.py``); the distinctive steps
are in :mod:`.alignment`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.backbones import VFMFeatures, load_clip_backbone, load_vfm
from textseg.errors import ConfigError
from textseg.evaluation.pamr import PAMR
from textseg.evaluation.protocol import IMAGENET_MEAN, IMAGENET_STD
from textseg.methods.talk2dino.alignment import alignment_loss, clean_background, head_embeddings
from textseg.methods.talk2dino.config import Talk2DINOConfig
from textseg.methods.talk2dino.transform import Talk2DINOTrainTransform
from textseg.text.synonyms import max_over_names

#: Prompts encoded per text-tower call in ``encode_vocabulary``.
TEXT_CHUNK = 256

_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


class TextProjection(nn.Module):
    """The official ``ProjectionLayer`` with ``hidden_layer`` set: ``linear_layer`` (CLIP -> DINOv2
    width), then for each of ``hidden_layers``: the activation, a Linear width -> width. Key names
    are the official ones, so a released file loads under ``proj.``."""

    def __init__(self, clip_dim: int, dino_dim: int, hidden_layers: int, activation: str) -> None:
        super().__init__()
        self.linear_layer = nn.Linear(clip_dim, dino_dim)
        self.hidden_layers = nn.ModuleList(nn.Linear(dino_dim, dino_dim) for _ in range(hidden_layers))
        self.act = _ACTIVATIONS[activation]() if activation != "none" else nn.Identity()

    def forward(self, text: Tensor) -> Tensor:
        x = self.linear_layer(text.float())
        for layer in self.hidden_layers:
            x = layer(self.act(x))
        return x


def _check(config: Talk2DINOConfig) -> None:
    if config.hidden_layers < 0 or config.attn_scale <= 0 or config.temperature <= 0:
        raise ConfigError(
            f"talk2dino: hidden_layers must be >= 0, attn_scale and temperature positive; got "
            f"{config.hidden_layers}, {config.attn_scale}, {config.temperature}"
        )
    if config.bg_clean_weight < 0 or config.resize_dim < 1 or config.train_size < 1:
        raise ConfigError("talk2dino: bg_clean_weight must be >= 0, resize_dim and train_size positive")


class Talk2DINO(SegMethod):
    """State dict: ``proj.*`` (trained; the official key names under ``proj.``), ``clip.*`` and
    ``vfm.*`` (frozen, pretrained: left out of checkpoints)."""

    pretrained_prefixes = ("clip.", "vfm.")
    #: PAMR reads the windows back in RGB by undoing ImageNet's statistics (:func:`pixels`), so a
    #: protocol that normalises otherwise is refused.
    input_normalisation = (IMAGENET_MEAN, IMAGENET_STD)
    inference_settings = (
        "resize_dim",
        "bg_clean",
        "bg_clean_weight",
        "pamr",
        "pamr_iterations",
        "pamr_dilations",
        "bg_thresh",
    )

    def __init__(self, config: Talk2DINOConfig) -> None:
        super().__init__(config)
        _check(config)
        self.clip = load_clip_backbone(config.clip)
        self.vfm = load_vfm(config.vfm)
        if self.vfm.num_prefix < 1:
            raise ConfigError(f"talk2dino: {config.vfm} has no class token, whose attention Talk2DINO reads")
        self.proj = TextProjection(
            self.clip.text.embed_dim, self.vfm.out_channels, config.hidden_layers, config.activation
        )
        self.configure_inference()

    def configure_inference(self) -> None:
        c = self.config
        self.pamr = PAMR(c.pamr_iterations, c.pamr_dilations) if c.pamr else None

    def train(self, mode: bool = True) -> Talk2DINO:
        """The backbones stay in eval mode: they are frozen feature extractors."""
        super().train(mode)
        self.clip.eval()
        self.vfm.eval()
        return self

    # -- features -------------------------------------------------------------------------------
    def attention_logits(self, features: VFMFeatures) -> Tensor:
        """CLS-to-patch logits per head ``[B, H, h*w]`` at the official fixed scale ``attn_scale``."""
        return features.cls_attention() * (self.config.attn_scale / features.scale)

    @torch.no_grad()
    def embed_captions(self, ids: Tensor) -> Tensor:
        """CLIP's projected end-of-text embeddings ``[N, 512]`` of token ids (not normalised)."""
        return self.clip.text.encode(ids).float()

    # -- inference --------------------------------------------------------------------------------
    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        """One embedding per name: CLIP embeddings averaged over the templates *in CLIP space*, then
        projected and normalised (``build_text_embedding``)."""
        prompts = [template.format(name) for name in vocab.names for template in vocab.templates]
        ids = self.clip.text.tokenize(prompts, self.config.context_length)
        embedded = torch.cat([self.embed_captions(chunk) for chunk in ids.split(TEXT_CHUNK)])
        per_name = embedded.view(len(vocab.names), len(vocab.templates), -1).mean(dim=1)
        with torch.no_grad():
            return TextState(vocab, F.normalize(self.proj(per_name), dim=-1))

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Scores ``[B, K, H, W]`` at the window's size (``generate_masks``)."""
        size = images.shape[-2:]
        square = (self.config.resize_dim, self.config.resize_dim)
        # Official: T.Resize((448, 448)) on the window (torchvision 0.16: no antialiasing for tensors);
        # resizing before or after the per-channel normalisation is the same.
        x = images if size == square else F.interpolate(images, square, mode="bilinear", align_corners=False)
        features = self.vfm(x, qkv=True)
        names = text.embeddings.to(features.patches.dtype)
        scores = torch.einsum("bchw,nc->bnhw", F.normalize(features.patches, dim=1), names).sigmoid()
        if self.config.bg_clean:
            logits = self.attention_logits(features)
            scores = clean_background(scores, features.patches, logits, names, self.config.bg_clean_weight)
        scores = F.interpolate(scores, size, mode="bilinear", align_corners=True)
        if self.pamr is not None:  # window by window: the affinities of a batch at full size are large
            rgb = pixels(images)
            scores = torch.cat([self.pamr(rgb[i : i + 1], scores[i : i + 1]) for i in range(len(scores))])
        vocab = text.vocabulary
        return max_over_names(scores, vocab.name_to_class, vocab.num_classes)

    # -- training ----------------------------------------------------------------------------------
    def train_transform(self) -> Talk2DINOTrainTransform:
        return Talk2DINOTrainTransform(
            self.clip.text.tokenizer, self.config.context_length, self.config.train_size
        )

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """``{"loss", "selected_head_mean"}``: the alignment loss of the batch's captions with their
        images' head embeddings; the backbones run without gradient."""
        images, ids = batch["image"], batch["text"]  # [B, 3, S, S], [B, L]
        with torch.no_grad():
            captions = self.embed_captions(ids)
            features = self.vfm(images, qkv=True)
            tokens = features.patches.flatten(2).transpose(1, 2)
            heads = head_embeddings(tokens, self.attention_logits(features))
        loss, index = alignment_loss(self.proj(captions), heads, self.config.logit_scale)
        return {"loss": loss, "selected_head_mean": index.float().mean()}


def pixels(images: Tensor) -> Tensor:
    """The windows back in 0-255 RGB, what the official PAMR reads (the protocol normalises with
    ImageNet's statistics in 0-255 units, :data:`textseg.evaluation.protocol.IMAGENET_MEAN`)."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return images * std + mean
