"""ProxyCLIP: CLIP's values aggregated with a vision foundation model's attention (mc-lan/ProxyCLIP
``proxyclip_segmentor.py`` and ``open_clip/transformer.py`` at e7b767f).

Per window (:meth:`ProxyCLIP.segment`):

1. the window is zero-padded, centred, to a multiple of 56 (``forward_slide``, ``:218-223``);
2. the proxy (DINO, DINOv2, SAM's encoder, MAE) sees it in ImageNet's normalisation (SAM and MAE:
   resized bilinearly to ``vfm_size`` first) and gives its patch features ``F`` ``[C, I, J]``
   (``forward_feature``, ``:113-166``);
3. :func:`proxy_attention`: ``S = F̂ᵀF̂`` (cosines of the L2-normalised features),
   ``A = softmax(γ (S - β mean S))`` over each row with the negative entries masked, one map for
   every head (``custom_attn``, ``transformer.py:560-587``);
4. CLIP's blocks ``1 .. L-1`` unchanged; of the last block only the values of its layer-normed
   input are used: per head, the patch values laid out on CLIP's grid are resized bilinearly to the
   proxy's grid ``I x J`` and aggregated with ``A``; ``out_proj``, no residual, no MLP
   (:func:`proxy_values`); then ``post_layernorm`` and the projection;
5. cosines with every name on the proxy's grid; with padding, upsampled to the padded window and
   cropped (``:181-182``, ``:229-231``).

The whole-image steps (window average, resize to the label, × ``logit_scale``, softmax over names,
synonym max, ``prob_thd``) are :class:`textseg.clip.segmentor.DenseCLIP`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import TextState
from textseg.backbones import load_vfm
from textseg.clip.blocks import merge_heads, qkv
from textseg.clip.padding import pad_to_multiple, unpad_scores
from textseg.clip.segmentor import DenseCLIP
from textseg.errors import ConfigError
from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD

from .config import ProxyCLIPConfig

#: What the official code undoes before the proxy (``UnNormalize`` at ``proxyclip_segmentor.py:79``):
#: OpenAI's CLIP mean and std on the 0-1 scale. The input was normalised with the ×255 values
#: (``CLIP_MEAN``/``CLIP_STD`` of :mod:`textseg.evaluation.protocol`, e.g. 68.501 / 255 = 0.2686314),
#: so the pixels it gives back differ from the originals by up to 4e-6 (0-1 scale); the official
#: proxy sees these, and so does textseg's. (Passing the ×255 constants to ``renormalize`` would be
#: wrong: the VFM's own mean and std are on the 0-1 scale.)
UNNORMALIZE_MEAN = (0.48145466, 0.4578275, 0.40821073)
UNNORMALIZE_STD = (0.26862954, 0.26130258, 0.27577711)


def proxy_attention(features: Tensor, beta: float, gamma: float) -> Tensor:
    """ProxyCLIP's attention ``[B, I*J, I*J]`` from proxy features ``[B, C, I, J]``.

    ``S`` = cosine similarity of the patch features (L2-normalised over channels);
    ``S' = γ (S - β mean(S))`` with the mean over the whole ``IJ x IJ`` map of the image (the
    official mean is over the whole batch, which is one image there); entries with ``S' < 0`` are
    masked (``-inf``) and each row is softmaxed.

    A row whose every entry would be masked (only when ``β mean(S) > S_ii = 1``: a nearly uniform
    window, e.g. a blank one) is NaN in the official code; here it is left unmasked
    (``softmax(S'_i)``). Every other row is the official one.
    """
    unit = F.normalize(features.flatten(2), dim=1)
    similarity = unit.transpose(1, 2) @ unit
    similarity = (similarity - similarity.mean(dim=(1, 2), keepdim=True) * beta) * gamma
    masked = similarity < 0
    masked &= ~masked.all(dim=-1, keepdim=True)
    return similarity.masked_fill(masked, float("-inf")).softmax(dim=-1)


def proxy_values(
    layer: nn.Module, x: Tensor, grid: tuple[int, int], attention: Tensor, proxy_grid: tuple[int, int]
) -> Tensor:
    """The last block's output ``[B, I*J, C]`` under ProxyCLIP: ``out_proj(A · V↑)`` where ``V↑`` are the
    per-head values of ``layer_norm1(x)`` (``x``: the block's input ``[B, 1 + h*w, C]``, class token
    first; ``grid`` = ``(h, w)``) without the class token, resized bilinearly from ``grid`` to
    ``proxy_grid``, and ``A`` = :func:`proxy_attention` (the same for every head)."""
    _, _, v = qkv(layer.self_attn, layer.layer_norm1(x))
    batch, heads, _, dim = v.shape
    maps = v[:, :, 1:].transpose(2, 3).reshape(batch * heads, dim, *grid)
    maps = F.interpolate(maps, size=proxy_grid, mode="bilinear", align_corners=False)
    values = maps.flatten(2).transpose(1, 2).reshape(batch, heads, -1, dim)
    return layer.self_attn.out_proj(merge_heads(attention[:, None].to(values.dtype) @ values))


class ProxyCLIP(DenseCLIP):
    """ProxyCLIP's dense features in the SCLIP family's pipeline (windows, softmax over names, ``prob_thd``)."""

    pretrained_prefixes = ("clip.", "vfm.")
    #: The proxy's pixels are recovered by undoing CLIP's normalisation (``UNNORMALIZE_*``), so a
    #: protocol that normalises otherwise (e.g. ``tcl``'s ImageNet statistics) is refused.
    input_normalisation = (CLIP_MEAN, CLIP_STD)

    def __init__(self, config: ProxyCLIPConfig) -> None:
        unused = [
            name
            for name in ("last_block", "residual_mlp", "gaussian_std")
            if getattr(config, name) != getattr(ProxyCLIPConfig, name)
        ]
        if unused:
            raise ConfigError(
                f"proxyclip has no setting {unused[0]!r}: ProxyCLIP replaces CLIP's last block by its "
                "proxy attention"
            )
        if config.pad_multiple < 1:
            raise ConfigError(f"proxyclip pad_multiple must be at least 1, got {config.pad_multiple}")
        if config.vfm_size is not None and config.vfm_size < 1:
            raise ConfigError(f"proxyclip vfm_size must be a positive size or None, got {config.vfm_size}")
        super().__init__(config)
        self.vfm = load_vfm(config.vfm)
        if self.vfm.kind == "sam" and config.vfm_size is None:
            raise ConfigError(
                f"proxyclip with {config.vfm}: SAM's encoder takes square inputs of its training size; "
                "set vfm_size (1024 for the released SAM encoders, as the official code resizes every window)"
            )
        if config.vfm_size is not None and config.vfm_size < self.vfm.patch_size:
            raise ConfigError(
                f"proxyclip vfm_size={config.vfm_size} is smaller than one {self.vfm.patch_size}px patch "
                f"of {config.vfm}"
            )

    def proxy_features(self, images: Tensor) -> Tensor:
        """The proxy's patch features ``[B, C, I, J]`` of CLIP-normalised ``images``."""
        inputs = self.vfm.renormalize(images.float(), UNNORMALIZE_MEAN, UNNORMALIZE_STD)
        size = self.config.vfm_size
        if size is not None:
            inputs = F.interpolate(inputs, size=(size, size), mode="bilinear", align_corners=False)
        return self.vfm(inputs).patches

    def features(self, images: Tensor) -> Tensor:
        """ProxyCLIP's projected patch features ``[B, D, I, J]`` (unnormalised) on the proxy's grid."""
        config: ProxyCLIPConfig = self.config
        proxy = self.proxy_features(images)
        proxy_grid = (proxy.shape[-2], proxy.shape[-1])
        vision = self.clip.vision
        x, grid = vision.tokens_before_last(images, config.positions)
        attention = proxy_attention(proxy.float(), config.beta, config.gamma)
        tokens = proxy_values(vision.last_layer, x, grid, attention, proxy_grid)
        return vision.project(tokens).transpose(1, 2).unflatten(2, proxy_grid)

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Raw cosines ``[B, names, I, J]`` on the proxy's grid (at the window's size when padded)."""
        config: ProxyCLIPConfig = self.config
        padded, pads = pad_to_multiple(images, config.pad_multiple) if config.pad else (images, (0, 0, 0, 0))
        features = F.normalize(self.features(padded), dim=1)
        cosines = torch.einsum("bchw,nc->bnhw", features, text.embeddings.to(features))
        size = (images.shape[-2], images.shape[-1])
        if not any(pads) and (cosines.shape[-2] > size[0] or cosines.shape[-1] > size[1]):
            # a proxy grid finer than the window (SAM on a small window): resized to it, as officially
            cosines = F.interpolate(cosines, size=size, mode="bilinear", align_corners=False)
        return unpad_scores(cosines, pads, size)
