"""The named variants of CLIP's last vision block that dense methods use.

Every variant is two independent choices, which is what the papers actually change:

* ``mix`` — how tokens are mixed before ``out_proj`` (the attention map, per head);
* ``residual_mlp`` — whether the block keeps its residual connections and MLP, or returns the
  attention branch alone (``out_proj(mix(...))``).

=========  ==============================================  ============  ===============================
name       mix (per head, s = head_dim ** -0.5)             residual+MLP  used by
=========  ==============================================  ============  ===============================
vanilla    softmax(s q kᵀ) v                               yes           plain CLIP (the image embedding)
self       v (each token to itself)                        yes           official MaskCLIP; TCL's blocks
value      v (each token to itself)                        no            ClearCLIP's "MaskCLIP"
csa        (softmax(s q qᵀ) + softmax(s k kᵀ)) v           yes           SCLIP
qq         softmax(s q qᵀ) v                               no            ClearCLIP
naclip     softmax(s k kᵀ + Ω) v, Ω Gaussian on the grid   no            NACLIP
=========  ==============================================  ============  ===============================

``self`` is what official MaskCLIP computes (``z = x + out_proj(v)``, ``z + MLP(ln_2 z)``,
chongzhou96/MaskCLIP ``vit.py`` at 245d31f) and what TCL's diagonal attention mask gives.
``value`` is the value path alone, ``out_proj(v_proj(ln_1 x))``. ``csa`` is SCLIP's correlative
self-attention (wangf3014/SCLIP ``clip/model.py::custom_attn`` with ``csa=True``): two separately
softmaxed maps added, not renormalised, so each row sums to 2. ``qq`` is ClearCLIP's
(mc-lan/ClearCLIP ``open_clip/transformer.py::custom_attn``, ``model_type='ClearCLIP'``, with its
default ``ignore_residual=True``). ``naclip`` is NACLIP's neighbourhood attention
(sinahmr/NACLIP ``clip/model.py``, ``attn_strategy='naclip'``, ``arch='reduced'``): key-key
similarity plus ``Ω_ij = exp(-|p_i - p_j|² / (2 σ²))`` over the patch positions, the same for every
head, 0 in the class token's row and column; ``σ`` is the option ``gaussian_std`` (5 by default).

:meth:`LastBlock.configured` switches the residual and MLP on or off (ClearCLIP's
``ignore_residual=False``, NACLIP's ``arch='vanilla'``) and sets a variant's options.

To add a variant, write its mixer and add one :class:`LastBlock` to :data:`LAST_BLOCKS` below. A
mixer receives the block's attention module (``q_proj``, ``k_proj``, ``v_proj``, ``num_heads``),
the layer-normed tokens ``[B, 1 + h*w, C]`` (class token first, patches row-major), the patch grid
``(h, w)`` and the variant's options as keywords, and returns the mixed tokens ``[B, 1 + h*w, C]``
before ``out_proj``; use :func:`textseg.clip.blocks.qkv` and :func:`~textseg.clip.blocks.merge_heads`.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.clip.blocks import attention, merge_heads, qkv
from textseg.errors import ConfigError

#: ``(attention module, layer-normed tokens, patch grid (h, w), **options) -> mixed tokens before out_proj``.
Mixer = Callable[..., Tensor]


@dataclass(frozen=True)
class LastBlock:
    """One way to run the last vision block (see the module docstring).

    ``options`` are the mixer's keyword options with their values, as ``(name, value)`` pairs.
    """

    name: str
    summary: str
    mix: Mixer
    residual_mlp: bool
    options: tuple[tuple[str, float], ...] = ()

    def __call__(self, layer: nn.Module, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Run ``layer`` (a ``CLIPEncoderLayer``) on tokens ``x`` ``[B, 1 + h*w, C]``."""
        mixed = self.mix(layer.self_attn, layer.layer_norm1(x), grid, **dict(self.options))
        branch = layer.self_attn.out_proj(mixed)
        if not self.residual_mlp:
            return branch
        x = x + branch
        return x + layer.mlp(layer.layer_norm2(x))

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.options)

    def configured(self, residual_mlp: bool | None = None, **options: float) -> LastBlock:
        """This variant with the residual and MLP kept or dropped (None: as the variant has it) and
        options changed; an option the variant does not have is an error."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            have = ", ".join(self.option_names) or "none"
            raise ConfigError(
                f"last-block variant {self.name!r} has no option {unknown[0]!r} (options: {have})"
            )
        return dataclasses.replace(
            self,
            residual_mlp=self.residual_mlp if residual_mlp is None else residual_mlp,
            options=tuple((name, float(options.get(name, value))) for name, value in self.options),
        )


def mix_vanilla(attn: nn.Module, h: Tensor, grid: tuple[int, int]) -> Tensor:
    """CLIP's own attention."""
    return attention(attn, h)


def mix_self(attn: nn.Module, h: Tensor, grid: tuple[int, int]) -> Tensor:
    """Each token attends only to itself, so the attention output is its value."""
    return attn.v_proj(h)


def mix_csa(attn: nn.Module, h: Tensor, grid: tuple[int, int]) -> Tensor:
    """SCLIP: ``(softmax(s q qᵀ) + softmax(s k kᵀ)) v``, written as the sum of two attentions."""
    q, k, v = qkv(attn, h)
    return merge_heads(F.scaled_dot_product_attention(q, q, v) + F.scaled_dot_product_attention(k, k, v))


def mix_qq(attn: nn.Module, h: Tensor, grid: tuple[int, int]) -> Tensor:
    """ClearCLIP: query-query attention, ``softmax(s q qᵀ) v``."""
    q, _, v = qkv(attn, h)
    return merge_heads(F.scaled_dot_product_attention(q, q, v))


def gaussian_bias(grid: tuple[int, int], std: float, device: torch.device | None = None) -> Tensor:
    """NACLIP's ``Ω`` ``[1 + h*w, 1 + h*w]``: ``exp(-d² / (2 std²))`` between patch positions, 0 for
    the class token (first row and column). Unnormalised: 1 on the diagonal."""
    h, w = grid
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    squared = (rows[:, None] - rows[None]) ** 2 + (cols[:, None] - cols[None]) ** 2
    return F.pad(torch.exp(-squared / (2 * std**2)), (1, 0, 1, 0))


def mix_neighbour(attn: nn.Module, h: Tensor, grid: tuple[int, int], gaussian_std: float = 5.0) -> Tensor:
    """NACLIP: ``softmax(s k kᵀ + Ω) v`` with the Gaussian neighbourhood bias ``Ω`` added to the logits."""
    if gaussian_std <= 0:
        raise ConfigError(f"gaussian_std must be positive, got {gaussian_std}")
    _, k, v = qkv(attn, h)
    bias = gaussian_bias(grid, gaussian_std, h.device).to(k.dtype)
    return merge_heads(F.scaled_dot_product_attention(k, k, v, attn_mask=bias))


VANILLA = LastBlock("vanilla", "CLIP's block unchanged", mix_vanilla, residual_mlp=True)
SELF = LastBlock("self", "attention to itself only; residual and MLP kept (MaskCLIP, TCL)", mix_self, True)
VALUE = LastBlock("value", "value path only: out_proj(v_proj(ln_1 x)); no residual, no MLP", mix_self, False)
CSA = LastBlock("csa", "SCLIP's correlative self-attention q-q + k-k; residual and MLP kept", mix_csa, True)
QQ = LastBlock("qq", "ClearCLIP: q-q attention; no residual, no MLP", mix_qq, False)
NACLIP = LastBlock(
    "naclip",
    "NACLIP: k-k attention plus a Gaussian neighbourhood bias; no residual, no MLP",
    mix_neighbour,
    False,
    options=(("gaussian_std", 5.0),),
)

#: Every variant by name. Add new ones here.
LAST_BLOCKS: dict[str, LastBlock] = {block.name: block for block in (VANILLA, SELF, VALUE, CSA, QQ, NACLIP)}


def get_last_block(variant: str | LastBlock) -> LastBlock:
    """The variant called ``variant`` (a :class:`LastBlock` is returned as is)."""
    if isinstance(variant, LastBlock):
        return variant
    try:
        return LAST_BLOCKS[variant]
    except KeyError:
        close = difflib.get_close_matches(variant, list(LAST_BLOCKS), n=2, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown last-block variant {variant!r}.{hint} Known: {', '.join(LAST_BLOCKS)}"
        ) from None
