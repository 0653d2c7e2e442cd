"""Vision foundation models (DINO, DINOv2, SAM's image encoder, MAE) as methods use them.

:class:`VisionFoundationModel` wraps a timm model (``timm.models.VisionTransformer`` or
``VisionTransformerSAM``) and runs it step by step, the way the official code of each family runs
it, so a method gets in one pass what the 2024-25 methods read from these models:

* ``patches`` ``[B, C, h, w]`` — the feature map: for DINO, DINOv2 and MAE the last block's output
  after the final LayerNorm, class token and registers dropped (DINO's
  ``get_intermediate_layers(x)[0][:, 1:]``, DINOv2's ``x_norm_patchtokens``, MAE's
  ``forward_features``); for SAM the neck's output (``image_encoder(x)``, 256 channels);
* ``tokens`` ``[B, P + h*w, C]`` — the same tokens with the ``P`` prefix tokens (class token, then
  registers) first; for SAM the last block's output before the neck (``P = 0``);
* ``q``, ``k``, ``v`` ``[B, heads, P + h*w, head_dim]`` — the last block's queries, keys and values
  per head (``attn.qkv`` of the layer-normed block input, split as the official code splits it,
  unscaled), when asked for with ``qkv=True``.

:class:`VFMFeatures` has the derived tensors of those methods: :meth:`VFMFeatures.cls_attention`
(Talk2DINO: scaled CLS-to-patch logits per head, registers excluded, before any softmax) and
:meth:`VFMFeatures.head_map` (CLIP-DINOiser's DINO value features, FOUND's key features: heads
concatenated back to ``C`` channels, as a map).

Positions are interpolated for any input size as each family's official code does
(:func:`textseg.clip.positions.interpolate_grid`, in float32): DINO and DINOv2 without registers
with the ``+0.1`` scale factor (``positions="scale"``), DINOv2 with registers by size with
antialiasing (its hub models: ``interpolate_offset=0``, ``interpolate_antialias=True``), MAE by
size, SAM with timm's resampling (its official encoder takes 1024x1024 only; at that size nothing is
resampled).
Inputs are normalised images (:attr:`VisionFoundationModel.mean` / ``std``, ImageNet's for every
family here: :meth:`VisionFoundationModel.renormalize` converts from another normalisation, e.g.
CLIP's); a side that is not a multiple of the patch size is floored by the patch convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from textseg.clip.positions import PositionMode, interpolate_grid

#: ImageNet's mean and std, what DINO, DINOv2, MAE and SAM normalise with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Kind = Literal["vit", "sam"]


@dataclass(frozen=True)
class VFMFeatures:
    """One forward pass of a :class:`VisionFoundationModel` (see the module docstring)."""

    patches: Tensor
    tokens: Tensor
    grid: tuple[int, int]
    num_prefix: int
    q: Tensor | None = None
    k: Tensor | None = None
    v: Tensor | None = None

    @property
    def scale(self) -> float:
        """Attention scale ``head_dim ** -0.5`` (0.125 for the ViT-S/B/L releases)."""
        return self._need_qkv().shape[-1] ** -0.5

    def _need_qkv(self) -> Tensor:
        if self.q is None or self.k is None or self.v is None:
            raise ValueError("q, k and v were not computed: call the model with qkv=True")
        return self.q

    def patch_part(self, t: Tensor) -> Tensor:
        """``t`` ``[B, heads, P + N, d]`` without the prefix tokens -> ``[B, heads, N, d]``."""
        return t[:, :, self.num_prefix :]

    def cls_attention(self) -> Tensor:
        """Per-head attention logits of the class token to every patch ``[B, heads, h*w]``:
        ``scale * q_cls · k_patch``, registers and the class token itself left out, no softmax
        (Talk2DINO's ``a_h``, read from the last block's ``attn.qkv``)."""
        q = self._need_qkv()
        if self.num_prefix < 1:
            raise ValueError("this model has no class token")
        assert self.k is not None
        return torch.einsum("bhd,bhnd->bhn", q[:, :, 0] * self.scale, self.patch_part(self.k))

    def head_map(self, which: Literal["q", "k", "v"]) -> Tensor:
        """The last block's ``which`` of the patch tokens with heads concatenated, as ``[B, C, h, w]``
        (CLIP-DINOiser's DINO value features, FOUND's key features; not normalised)."""
        self._need_qkv()
        t = self.patch_part(getattr(self, which))
        b, heads, _, d = t.shape
        return t.permute(0, 1, 3, 2).reshape(b, heads * d, *self.grid)


class VisionFoundationModel(nn.Module):
    """A frozen timm ViT (DINO, DINOv2, MAE) or SAM image encoder; see the module docstring.

    ``spelling`` is what it was loaded from (what records name), ``family`` one of ``dino``,
    ``dinov2``, ``mae``, ``sam`` or ``timm``.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        spelling: str,
        family: str,
        kind: Kind = "vit",
        positions: PositionMode = "scale",
        antialias: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        self.model = model
        self.spelling = spelling
        self.family = family
        self.kind = kind
        self.positions = positions
        self.antialias = antialias
        self.mean = mean
        self.std = std

    # -- shape facts --------------------------------------------------------------------------
    @property
    def patch_size(self) -> int:
        return int(self.model.patch_embed.proj.kernel_size[0])

    @property
    def width(self) -> int:
        """Channels of the tokens (and of ``patches``, except for SAM, whose neck has its own)."""
        return int(self.model.embed_dim)

    @property
    def num_heads(self) -> int:
        return int(self.model.blocks[-1].attn.num_heads)

    @property
    def num_prefix(self) -> int:
        """Tokens before the patches: the class token and registers (SAM: 0)."""
        return 0 if self.kind == "sam" else int(self.model.num_prefix_tokens)

    @property
    def num_registers(self) -> int:
        return 0 if self.kind == "sam" else int(getattr(self.model, "num_reg_tokens", 0))

    @property
    def out_channels(self) -> int:
        """Channels of ``patches``."""
        if self.kind == "sam":
            return int(self.model.neck[-2].out_channels)  # conv, LayerNorm2d
        return self.width

    def renormalize(self, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
        """Images normalised with ``mean``/``std`` (e.g. CLIP's) -> normalised with this model's
        (ProxyCLIP: undo CLIP's normalisation, apply ImageNet's). Both on the 0-1 scale: CLIP's
        ``(0.4815, 0.4578, 0.4082)``, not the x255 constants of :mod:`textseg.evaluation.protocol`
        (the same normalised images either way, but mixing the scales is silently wrong)."""

        def column(values: tuple[float, ...]) -> Tensor:
            return torch.tensor(values, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)

        rgb = images * column(std) + column(mean)
        return (rgb - column(self.mean)) / column(self.std)

    # -- the pass -------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, images: Tensor, qkv: bool = False) -> VFMFeatures:
        """:class:`VFMFeatures` of normalised ``images`` ``[B, 3, H, W]``; ``qkv`` also returns the
        last block's per-head queries, keys and values."""
        if min(images.shape[-2:]) < self.patch_size:
            raise ValueError(
                f"images of {tuple(images.shape[-2:])} are smaller than one {self.patch_size}px patch"
            )
        images = images.to(self.model.patch_embed.proj.weight.dtype)
        if self.kind == "sam":
            return self._sam(images, qkv)
        return self._vit(images, qkv)

    def patch_features(self, images: Tensor) -> Tensor:
        """The feature map ``[B, C, h, w]`` alone (see ``patches`` in the module docstring)."""
        return self(images).patches

    def _split(self, attn: nn.Module, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``attn.qkv`` of layer-normed tokens ``[B, T, C]`` -> per-head q, k, v ``[B, heads, T, d]``."""
        b, t, _ = h.shape
        q, k, v = attn.qkv(h).reshape(b, t, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return attn.q_norm(q), attn.k_norm(k), v

    def _vit(self, images: Tensor, qkv: bool) -> VFMFeatures:
        m = self.model
        x = m.patch_embed.proj(images)
        grid = (x.shape[-2], x.shape[-1])
        x = m.patch_embed.norm(x.flatten(2).transpose(1, 2))
        prefix = [t.expand(x.shape[0], -1, -1) for t in (m.cls_token, m.reg_token) if t is not None]
        table = m.pos_embed[0]
        if m.no_embed_class:  # DINOv2 with registers: positions cover the patches only
            x = x + interpolate_grid(table, grid, self.positions, self.antialias).to(x.dtype)
            x = torch.cat([*prefix, x], dim=1)
        else:  # positions cover the class token (first row) and the patches
            n = m.num_prefix_tokens
            table = torch.cat([table[:n], interpolate_grid(table[n:], grid, self.positions, self.antialias)])
            x = torch.cat([*prefix, x], dim=1) + table.to(x.dtype)
        x = m.norm_pre(x)
        for block in m.blocks[:-1]:
            x = block(x)
        last = m.blocks[-1]
        q = k = v = None
        if qkv:
            q, k, v = self._split(last.attn, last.norm1(x))
        tokens = m.norm(last(x))
        b, _, c = tokens.shape
        patches = tokens[:, m.num_prefix_tokens :].transpose(1, 2).reshape(b, c, *grid)
        return VFMFeatures(patches, tokens, grid, m.num_prefix_tokens, q, k, v)

    def _sam(self, images: Tensor, qkv: bool) -> VFMFeatures:
        from timm.layers import resample_abs_pos_embed_nhwc

        m = self.model
        x = m.patch_embed(images)  # [B, h, w, C]
        grid = (x.shape[1], x.shape[2])
        if m.pos_embed is not None:
            x = x + resample_abs_pos_embed_nhwc(m.pos_embed, grid)
        x = m.norm_pre(x)
        for block in m.blocks[:-1]:
            x = block(x)
        last = m.blocks[-1]
        q = k = v = None
        if qkv:
            if last.window_size > 0:
                raise ValueError(
                    "the last block of this SAM encoder attends in windows; q/k/v are per window"
                )
            h = last.norm1(x)
            q, k, v = self._split(last.attn, h.reshape(h.shape[0], -1, h.shape[-1]))
        x = last(x)
        patches = m.neck(x.permute(0, 3, 1, 2))
        return VFMFeatures(patches, x.reshape(x.shape[0], -1, x.shape[-1]), grid, 0, q, k, v)
