"""CLIP-DINOiser (Wysoczańska et al., ECCV 2024): MaskCLIP features pooled by patch correlations that
a light head predicts from CLIP's own middle features, and a background head; both heads were
trained to mimic DINO's correlations and FOUND's background masks (see README.md).

Per crop (images in [0, 1], as the official pipeline feeds them):

1. zero (black) padding on the right and bottom to a multiple of the patch size, then CLIP's
   mean/std (``clip_dinoiser.py::make_input_divisible``, ``maskclip.py::OPENAI_NORMALIZE``);
2. one pass of CLIP's image tower: the ``ln_2`` output of block ``head_block`` (the heads' input
   ``X``), and MaskCLIP's dense features ``F`` (last block attending to itself, residual and MLP
   kept, ``ln_post`` and projection; :func:`textseg.clip.vision.VisionTower.dense`);
3. :meth:`CLIPDINOiser.heads`: correlations ``C = PᵀP`` of the L2-normalised correlation-head
   output ``P = conv3x3(X)``, and background logits ``b = conv1x1(X / |X|)``;
4. :func:`pool_by_correlation`: ``F'_n = Σ_m C̃_nm F_m / (Σ_m C̃_nm + 1e-6)``, ``C̃ = C`` where
   ``C >= gamma``, else 0;
5. ``softmax(logit_scale · cos(F', t_k))`` over the classes, and :func:`found_background`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import ImageTextSample, SegMethod, TextState, Vocabulary
from textseg.backbones import IMAGENET_MEAN, IMAGENET_STD, CLIPBackbone, VisionFoundationModel, load_vfm
from textseg.clip.blocks import attention
from textseg.errors import ConfigError, WeightsError
from textseg.text.synonyms import max_over_names

from .config import FOUND_DECODER_SHA256, FOUND_DECODER_URL, CLIPDINOiserConfig
from .transform import CLIPDINOiserTrainTransform

#: CLIP's mean and std for images in [0, 1] (``maskclip.py::OPENAI_NORMALIZE``; OpenCLIP's LAION
#: models use the same statistics).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """``(images - mean) / std`` per channel, as ``torchvision.transforms.Normalize`` computes it."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


def pad_bottom_right(images: Tensor, multiple: int) -> Tensor:
    """Zeros on the right and bottom up to multiples of ``multiple`` (``make_input_divisible``)."""
    pad_w, pad_h = -images.shape[-1] % multiple, -images.shape[-2] % multiple
    return F.pad(images, (0, pad_w, 0, pad_h)) if pad_w or pad_h else images


def unit(x: Tensor, dim: int = 1) -> Tensor:
    """``x / |x|`` along ``dim``, without an epsilon (the official code divides by the norm)."""
    return x / x.norm(dim=dim, keepdim=True)


def pool_by_correlation(features: Tensor, correlations: Tensor, gamma: float) -> Tensor:
    """``features`` ``[B, D, h, w]`` pooled with ``correlations`` ``[B, h*w, h*w]`` (row ``n``: patch ``n``
    with every patch ``m``, row-major): ``F'_n = Σ_m C̃_nm F_m / (Σ_m C̃_nm + 1e-6)`` with
    ``C̃ = C · [C >= gamma]`` (``compute_weighted_pool``, after ``corrs[corrs < gamma] = 0``)."""
    kept = correlations.masked_fill(correlations < gamma, 0.0)
    pooled = torch.einsum("bnm,bdm->bdn", kept, features.flatten(2))
    return (pooled / (kept.sum(-1)[:, None] + 1e-6)).view_as(features)


def found_background(probs: Tensor, background_logits: Tensor, delta: float) -> Tensor:
    """Class 0 of ``probs`` ``[B, K, h, w]`` set to 1 where the best probability is below ``delta``
    and the background head's ``sigmoid`` ``[B, 1, h, w]`` is not above 0.5 (the official
    ``apply_found`` branch); the other classes keep their probabilities."""
    uncertain = probs.max(dim=1).values < delta
    background = ~(torch.sigmoid(background_logits[:, 0]) > 0.5)
    out = probs.clone()
    out[:, 0] = torch.where(uncertain & background, torch.ones_like(out[:, 0]), out[:, 0])
    return out


def correlation_targets(values: Tensor, gamma: float) -> Tensor:
    """DINO's targets ``[B, h*w, h*w]``: 1 where the cosine of two patches' value features
    ``[B, C, h, w]`` is at least ``gamma`` (``get_dino_corrs`` thresholded, then ``> 0``)."""
    feats = unit(values.flatten(2))
    cosines = feats.transpose(1, 2) @ feats
    return (cosines.masked_fill(cosines < gamma, 0.0) > 0).float()


@dataclass
class Teachers:
    """DINO (correlation targets) and FOUND (background targets), used only to train the heads.

    Held outside the module tree: never saved, never moved by ``.to()`` (moved per call instead)."""

    dino: VisionFoundationModel
    found: VisionFoundationModel
    found_decoder: nn.Conv2d

    def to(self, device: torch.device) -> Teachers:
        self.dino.to(device)
        self.found.to(device)
        self.found_decoder.to(device)
        return self

    @torch.no_grad()
    def correlations(self, images: Tensor, gamma: float) -> Tensor:
        """Targets ``[B, h*w, h*w]`` for images in [0, 1] padded to the CLIP grid."""
        out = self.dino(normalize(images, IMAGENET_MEAN, IMAGENET_STD), qkv=True)
        return correlation_targets(out.head_map("v"), gamma)

    @torch.no_grad()
    def background(self, images: Tensor, grid: tuple[int, int]) -> Tensor:
        """FOUND's foreground mask ``[B, 1, h, w]`` (1 = object) on the CLIP grid: sigmoid of the
        decoder on DINO-S/8 keys, resized bilinearly without antialiasing (torchvision 0.13's tensor
        ``resize``, the official environment), then ``> 0.5``."""
        x = pad_bottom_right(normalize(images, IMAGENET_MEAN, IMAGENET_STD), self.found.patch_size)
        keys = self.found(x, qkv=True).head_map("k")
        soft = torch.sigmoid(self.found_decoder(keys.float()))
        soft = F.interpolate(soft, size=grid, mode="bilinear", align_corners=False, antialias=False)
        return (soft > 0.5).float()


def load_found_decoder(source: str, channels: int) -> nn.Conv2d:
    """FOUND's 1x1 decoder from ``source``: its release URL (downloaded once and verified), a file
    holding ``{"decoder": {"weight", "bias"}}`` (read without running pickled code), or ``random``."""
    decoder = nn.Conv2d(channels, 1, 1)
    if source == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            decoder.reset_parameters()
        return decoder.requires_grad_(False)
    from textseg import safe_pickle
    from textseg.paths import cache_dir

    if source == FOUND_DECODER_URL:
        from textseg.download import download

        path = download(
            source,
            cache_dir() / "weights" / "clipdinoiser" / "found_decoder_weights.pt",
            sha256=FOUND_DECODER_SHA256,
            desc="FOUND decoder weights",
        )
    else:
        path = Path(source).expanduser()
    try:
        value = safe_pickle.load(path).value
    except safe_pickle.UnreadableFileError as exc:
        raise WeightsError(f"found_decoder={source}: {exc}") from exc
    state = value.get("decoder", value) if isinstance(value, Mapping) else None
    if not isinstance(state, Mapping) or set(state) != {"weight", "bias"}:
        raise WeightsError(
            f"found_decoder={source}: {path} does not hold FOUND's decoder ({{'decoder': {{weight, bias}}}}, "
            "valeoai/FOUND data/weights/decoder_weights.pt)"
        )
    try:
        decoder.load_state_dict(dict(state))
    except RuntimeError as exc:
        raise WeightsError(
            f"found_decoder={source}: does not fit a {channels}-channel FOUND model: {exc}"
        ) from exc
    return decoder.requires_grad_(False)


class CLIPDINOiser(SegMethod):
    """See the module docstring. State: ``clip.*`` (pretrained, never saved), ``correlation_head.*``
    and ``background_head.*`` (the official ``obj_proj`` and ``bkg_decoder``)."""

    pretrained_prefixes = ("clip.",)
    scores_background = True
    #: Pixels / 255 (the model applies CLIP's mean/std itself): other protocols are refused.
    input_normalisation = ((0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
    inference_settings = ("gamma", "delta", "logit_scale", "found")

    def __init__(self, config: CLIPDINOiserConfig) -> None:
        super().__init__(config)
        self.clip = CLIPBackbone.load(config.clip, config.tokenizer, text_cache=config.text_cache)
        depth = len(self.clip.vision.layers)
        if not -depth <= config.head_block < depth - 1 or config.head_block == -1:
            raise ConfigError(
                f"head_block={config.head_block}: the heads read a block before the last of this CLIP's "
                f"{depth} (from {-depth} to {depth - 2}, or -2; official -3)"
            )
        if config.head_kernel < 1 or config.head_kernel % 2 == 0 or config.head_dim < 1:
            raise ConfigError(
                f"head_kernel={config.head_kernel}, head_dim={config.head_dim}: the kernel must be an odd "
                "positive size (official 3) and head_dim positive (official 256)"
            )
        width = self.clip.vision.width
        self.correlation_head = nn.Conv2d(
            width,
            config.head_dim,
            config.head_kernel,
            padding=config.head_kernel // 2,
            padding_mode="replicate",
        )
        self.background_head = nn.Conv2d(width, 1, 1)
        self.teachers: Teachers | None = None

    # -- features -------------------------------------------------------------------------------
    def clip_features(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """MaskCLIP's features ``[B, D, h, w]`` (unnormalised) and the heads' input ``X`` ``[B, C, h, w]``
        (block ``head_block``'s ``ln_2`` output) of images in [0, 1] whose sides are multiples of the
        patch size."""
        vision = self.clip.vision
        tokens, grid = vision.embed(normalize(images, CLIP_MEAN, CLIP_STD), "size")
        index = self.config.head_block % len(vision.layers)
        tokens = vision.run_blocks(tokens, 0, index)
        layer = vision.layers[index]
        tokens = tokens + layer.self_attn.out_proj(attention(layer.self_attn, layer.layer_norm1(tokens)))
        head_input = layer.layer_norm2(tokens)
        tokens = vision.run_blocks(tokens + layer.mlp(head_input), index + 1, len(vision.layers) - 1)
        dense = vision.project(vision.run_last(tokens, grid, "self"))
        return vision.to_map(dense, grid), vision.to_map(head_input, grid)

    def heads(self, head_input: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted correlations ``[B, h*w, h*w]`` (cosines of the correlation head's outputs) and
        background logits ``[B, 1, h, w]`` (``forward_pass``)."""
        projected = unit(self.correlation_head(head_input).flatten(2))
        correlations = projected.transpose(1, 2) @ projected
        return correlations, self.background_head(unit(head_input))

    # -- inference ------------------------------------------------------------------------------
    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        # MaskClipHead._embed_label: every prompt normalised, averaged, normalised again.
        return TextState(vocab, self.clip.text.encode_classes(vocab.names, vocab.templates, "unit"))

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Class probabilities ``[B, K, h', w']`` on the grid of the padded crop (the harness resizes
        them onto the crop, as the official ``encode_decode`` does)."""
        padded = pad_bottom_right(images, self.clip.vision.patch_size)
        features, head_input = self.clip_features(padded)
        correlations, background = self.heads(head_input)
        pooled = unit(pool_by_correlation(features, correlations, self.config.gamma))
        cosines = torch.einsum("bchw,nc->bnhw", pooled, text.embeddings.to(pooled))
        vocab = text.vocabulary
        probs = max_over_names(
            (cosines * self.config.logit_scale).softmax(dim=1), vocab.name_to_class, vocab.num_classes
        )
        if self.config.found and vocab.background_query:
            probs = found_background(probs, background, self.config.delta)
        return probs

    def background_threshold(self) -> float:
        """0: never used. CLIP-DINOiser has no background threshold; background is its text query plus
        the FOUND rule (``scores_background``), and a constant 0 channel could never win the argmax."""
        return 0.0

    def postprocess(self, scores: Tensor, images: Tensor, text: TextState) -> Tensor:
        """mmseg 0.x ``EncoderDecoder.inference``: a softmax over the merged, resized probabilities."""
        return scores.softmax(dim=1)

    # -- training -------------------------------------------------------------------------------
    def train_transform(self) -> Callable[[ImageTextSample], dict[str, Tensor]]:
        return CLIPDINOiserTrainTransform(self.config.train_size, self.config.brightness)

    def load_teachers(self) -> Teachers:
        """DINO and FOUND, loaded once (at the first training step) and moved to the heads' device."""
        if self.teachers is None:
            c = self.config
            dino, found = load_vfm(c.vfm), load_vfm(c.found_vfm)
            if dino.patch_size != self.clip.vision.patch_size:
                raise ConfigError(
                    f"vfm={c.vfm}: its {dino.patch_size}px patches give another grid than CLIP's "
                    f"{self.clip.vision.patch_size}px ones; the correlation targets need the same grid"
                )
            self.teachers = Teachers(dino, found, load_found_decoder(c.found_decoder, found.width))
        return self.teachers.to(self.device)

    def training_step(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """``{"loss", "correlation", "background"}``: binary cross-entropies of the predicted
        correlations (negatives zeroed, used as logits) against DINO's, and of the background logits
        against FOUND's mask (``train.py::do_train``)."""
        images = pad_bottom_right(batch["image"], self.clip.vision.patch_size)
        teachers = self.load_teachers()
        with torch.no_grad():
            _, head_input = self.clip_features(images)
        correlations, background = self.heads(head_input)
        grid = (background.shape[-2], background.shape[-1])
        correlation_loss = F.binary_cross_entropy_with_logits(
            correlations.masked_fill(correlations < 0, 0.0).float(),
            teachers.correlations(images, self.config.gamma),
        )
        background_loss = F.binary_cross_entropy_with_logits(
            background.float(), teachers.background(images, grid)
        )
        loss = correlation_loss + background_loss
        return {
            "loss": loss,
            "correlation": correlation_loss.detach(),
            "background": background_loss.detach(),
        }

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The official two groups: the correlation head at ``train.lr``, the background head at
        ``background_lr``; weight decay on every parameter (torch's AdamW default)."""
        return [
            {"params": list(self.correlation_head.parameters()), "weight_decay": weight_decay},
            {
                "params": list(self.background_head.parameters()),
                "lr": self.config.background_lr,
                "weight_decay": weight_decay,
            },
        ]
