"""Training-free segmentation with a dense CLIP, scored the way the SCLIP family scores it.

SCLIP, ClearCLIP and NACLIP share one inference pipeline (ClearCLIP's and NACLIP's repositories
grew from SCLIP's) and differ in CLIP's last block and a few numbers. :class:`DenseCLIP` is that
pipeline; each method is a :class:`DenseCLIPConfig` with its own defaults, a protocol
(:func:`dense_clip_protocol`) and presets (:func:`dense_clip_spec`).

Per window (:meth:`DenseCLIP.segment`): optional centred zero padding to a multiple of the patch
size (ClearCLIP), CLIP's image tower with the last block in the configured variant, positions
interpolated as ``positions`` says (``scale``: the family's ``+0.1`` scale factor),
``post_layernorm`` and the projection on every patch, L2 normalisation, and the cosine with every
*name* (a class's synonyms are separate queries). One channel per name, raw cosines.

On the whole image (:meth:`DenseCLIP.postprocess`), after the harness has averaged the windows and
upsampled the logits bilinearly to the label's size, in the official order:

1. PAMR (``pamr``) on the raw cosines at that size, guided by the normalised input resized
   bilinearly to it (NACLIP's default; SCLIP's ``pamr_steps``, off in its configs);
2. ``logit_scale`` times the cosines, softmax over *all* names;
3. the maximum over each class's names;
4. ``area_thd`` (SCLIP on VOC21): a foreground class that is the argmax on at most ``area_thd`` of
   the pixels predicted as foreground gets probability 0 everywhere.

Background is the harness's job: on benchmarks whose class 0 is background (its names are scored as
text), channel 0 becomes ``max(channel 0, bg_thresh)`` before the argmax. With ``bg_thresh`` = the
papers' ``prob_thd`` this labels background exactly the pixels whose highest probability is below
``prob_thd``, the official rule; the two differ only where the highest probability *equals*
``prob_thd`` (the official code keeps the class, the argmax takes background).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.api import MethodSpec, Preset, SegMethod, TextState, Vocabulary
from textseg.clip.backbone import OPENAI_VIT_B16, CLIPBackbone
from textseg.clip.last_block import get_last_block
from textseg.clip.loading import DEFAULT_CLIP
from textseg.clip.padding import pad_to_multiple, unpad_scores
from textseg.config import Positive, Probability
from textseg.errors import ConfigError
from textseg.evaluation.pamr import NACLIP_DILATIONS, PAMR
from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD, Protocol
from textseg.text.synonyms import max_over_names


@dataclass(frozen=True)
class DenseCLIPConfig:
    """Settings of :class:`DenseCLIP`; each method subclasses it with its official defaults.

    ``clip``: any CLIP spelling (hub id, folder, OpenAI ``.pt`` file, ``open_clip:ARCH/TAG``, ``tiny``;
    see :mod:`textseg.clip.loading`); ``tokenizer``: overrides where the tokenizer comes from. ``last_block``: a :data:`textseg.clip.LAST_BLOCKS`
    variant; ``residual_mlp`` keeps (True) or drops (False) its residual and MLP, None as the
    variant has it; ``gaussian_std``: σ of the ``naclip`` variant's neighbourhood bias (ignored by
    variants without it). ``positions``: ``scale`` (the family's) or ``size`` (TCL's). ``pad``: pad
    each window to a multiple of the patch size, centred (ClearCLIP), instead of letting the patch
    convolution drop the last pixels (SCLIP, NACLIP). ``template_average``: ``unit`` (normalise each
    prompt, average, normalise: the family's) or ``raw``.

    ``logit_scale``: multiplies the cosines before the softmax over names. ``bg_thresh``: the
    papers' ``prob_thd``, used on benchmarks whose class 0 is background. ``area_thd``: SCLIP's
    small-class suppression (None: off; it treats class 0 as background). ``pamr``: refine the
    full-size cosines with PAMR(``pamr_steps``, ``pamr_dilations``).
    """

    clip: str = DEFAULT_CLIP
    tokenizer: str | None = None
    last_block: str = "vanilla"
    residual_mlp: bool | None = None
    gaussian_std: Positive = 5.0
    positions: Literal["size", "scale"] = "scale"
    pad: bool = False
    template_average: Literal["raw", "unit"] = "unit"
    logit_scale: Positive = 40.0
    bg_thresh: Probability = 0.0
    area_thd: Probability | None = None
    pamr: bool = False
    pamr_steps: int = 10
    pamr_dilations: tuple[int, ...] = NACLIP_DILATIONS
    text_cache: bool = True


def suppress_small_classes(probs: Tensor, area_thd: float) -> Tensor:
    """SCLIP's area threshold on ``probs`` ``[B, K, H, W]`` (class 0 = background).

    Per image, ``n_c`` counts the pixels whose argmax is ``c``; every foreground class with
    ``n_c <= area_thd * Σ_{c>=1} n_c`` has its probabilities multiplied by 0 (background is kept).
    """
    batch, classes = probs.shape[:2]
    offsets = torch.arange(batch, device=probs.device).view(batch, 1, 1) * classes
    counts = torch.bincount((probs.argmax(1) + offsets).flatten(), minlength=batch * classes)
    foreground = counts.view(batch, classes)[:, 1:]
    keep = foreground > area_thd * foreground.sum(1, keepdim=True)
    keep = torch.cat([torch.ones_like(keep[:, :1]), keep], dim=1)
    return probs * keep.to(probs.dtype).view(batch, classes, 1, 1)


class DenseCLIP(SegMethod):
    """SCLIP-family segmentation: per-name cosines per window, softmax and synonym max per image."""

    pretrained_prefixes = ("clip.",)
    scores_per_name = True
    inference_settings = ("logit_scale", "bg_thresh", "area_thd", "pamr", "pamr_steps", "pamr_dilations")

    def __init__(self, config: DenseCLIPConfig) -> None:
        super().__init__(config)
        block = get_last_block(config.last_block)
        options = {"gaussian_std": config.gaussian_std} if "gaussian_std" in block.option_names else {}
        self.last_block = block.configured(config.residual_mlp, **options)
        if config.area_thd is not None and not 0 <= config.area_thd < 1:
            raise ConfigError(f"area_thd must be in [0, 1) or None, got {config.area_thd}")
        self.configure_inference()
        self.clip = CLIPBackbone.load(config.clip, config.tokenizer, text_cache=config.text_cache)

    def configure_inference(self) -> None:
        self.pamr = PAMR(self.config.pamr_steps, self.config.pamr_dilations) if self.config.pamr else None

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        embeddings = self.clip.text.encode_classes(vocab.names, vocab.templates, self.config.template_average)
        return TextState(vocab, embeddings)

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Raw cosines ``[B, names, h, w]`` at the patch grid (at the window's size when padded)."""
        if not self.config.pad:
            return self.clip.vision.cosines(images, text.embeddings, self.last_block, self.config.positions)
        padded, pads = pad_to_multiple(images, self.clip.vision.patch_size)
        cosines = self.clip.vision.cosines(padded, text.embeddings, self.last_block, self.config.positions)
        return unpad_scores(cosines, pads, (images.shape[-2], images.shape[-1]))

    @torch.no_grad()
    def postprocess(self, scores: Tensor, images: Tensor, text: TextState) -> Tensor:
        """Full-size cosines per name -> probabilities per class (see the module docstring)."""
        if self.pamr is not None:
            guide = F.interpolate(images.float(), scores.shape[-2:], mode="bilinear", align_corners=False)
            scores = self.pamr(guide, scores)
        probs = (scores.float() * self.config.logit_scale).softmax(dim=1)
        vocab = text.vocabulary
        probs = max_over_names(probs, vocab.name_to_class, vocab.num_classes)
        if self.config.area_thd is not None:
            probs = suppress_small_classes(probs, self.config.area_thd)
        return probs


def dense_clip_protocol(**settings: Any) -> Protocol:
    """A protocol of the SCLIP family: what all three repositories share (CLIP's mean and std, the 80
    ImageNet templates, background names scored as text) plus ``settings`` (name, summary, resize,
    windows, name files, per-benchmark overrides). Version 2: normalisation exact (version 1 was
    1 ulp off on some values, see :mod:`textseg.evaluation.preprocess`)."""
    shared: dict[str, Any] = {
        "version": "2",
        "mean": CLIP_MEAN,
        "std": CLIP_STD,
        "templates": "openai80",
        "background_query": True,
    }
    return Protocol(**{**shared, **settings})


def dense_clip_spec(
    *,
    name: str,
    summary: str,
    paper: str,
    license: str,
    config_cls: type[DenseCLIPConfig],
    protocol: str,
    recipe: str,
    per_benchmark: Mapping[str, Mapping[str, Any]],
    variants: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
) -> MethodSpec:
    """The :class:`MethodSpec` of a :class:`DenseCLIP` method.

    Presets: ``paper`` (``recipe``: the official setup, with ``per_benchmark`` model settings under
    ``protocol``), ``tiny`` (the same on a tiny random CLIP, for tests) and ``variants`` (preset name
    -> summary and model settings, on top of ``paper``). ``--weights`` accepts CLIP weights
    (transformers or OpenAI layout) and ``openai``, OpenAI's own ViT-B/16 file.
    """

    def preset(text: str, model: Mapping[str, Any]) -> Preset:
        return Preset(text, model=model, protocol=protocol, benchmarks=per_benchmark)

    presets = {
        "paper": preset(recipe, {}),
        "tiny": preset("a tiny random CLIP with the paper settings, for tests", {"clip": "tiny"}),
    }
    presets.update({key: preset(text, model) for key, (text, model) in (variants or {}).items()})
    return MethodSpec(
        name=name,
        summary=summary,
        paper=paper,
        config_cls=config_cls,
        build=DenseCLIP,
        presets=presets,
        checkpoints={"openai": OPENAI_VIT_B16},
        weights_setting="clip",
        license=license,
    )
