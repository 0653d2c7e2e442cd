"""The named variants of CLIP's last vision block that dense methods use.

Every variant is two independent choices, which is what the papers actually change:

* ``mix`` — how tokens are mixed before ``out_proj`` (the attention map, per head);
* ``residual_mlp`` — whether the block keeps its residual connections and MLP, or returns the
  attention branch alone (``out_proj(mix(...))``).

=========  ============================  ============  ==============================================
name       mix                           residual+MLP  used by
=========  ============================  ============  ==============================================
vanilla    softmax(q kᵀ / √d) v          yes           plain CLIP (the global image embedding)
self       v (each token to itself)      yes           official MaskCLIP; TCL's frozen and copied block
value      v (each token to itself)      no            ClearCLIP's "MaskCLIP" (``ignore_residual``)
=========  ============================  ============  ==============================================

``self`` is what official MaskCLIP computes (``z = x + out_proj(v)``, ``z + MLP(ln_2 z)``,
chongzhou96/MaskCLIP ``vit.py`` at 245d31f) and what TCL's diagonal attention mask gives.
``value`` is the value path alone, ``out_proj(v_proj(ln_1 x))``.

To add a variant (SCLIP's ``csa``, ClearCLIP's ``qq``, NACLIP's ``naclip``), write its mixer
and add one :class:`LastBlock` to :data:`LAST_BLOCKS` below. A mixer receives the block's
attention module (``q_proj``, ``k_proj``, ``v_proj``, ``num_heads``), the layer-normed tokens
``[B, 1 + h*w, C]`` (class token first, patches row-major) and the patch grid ``(h, w)``, and
returns the mixed tokens ``[B, 1 + h*w, C]`` before ``out_proj``; use
:func:`textseg.clip.blocks.qkv` and :func:`~textseg.clip.blocks.merge_heads`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from textseg.clip.blocks import attention
from textseg.errors import ConfigError

#: ``(attention module, layer-normed tokens, patch grid (h, w)) -> mixed tokens before out_proj``.
Mixer = Callable[[nn.Module, Tensor, tuple[int, int]], Tensor]


@dataclass(frozen=True)
class LastBlock:
    """One way to run the last vision block (see the module docstring)."""

    name: str
    summary: str
    mix: Mixer
    residual_mlp: bool

    def __call__(self, layer: nn.Module, x: Tensor, grid: tuple[int, int]) -> Tensor:
        """Run ``layer`` (a ``CLIPEncoderLayer``) on tokens ``x`` ``[B, 1 + h*w, C]``."""
        branch = layer.self_attn.out_proj(self.mix(layer.self_attn, layer.layer_norm1(x), grid))
        if not self.residual_mlp:
            return branch
        x = x + branch
        return x + layer.mlp(layer.layer_norm2(x))


def mix_vanilla(attn: nn.Module, h: Tensor, grid: tuple[int, int]) -> Tensor:
    """CLIP's own attention."""
    return attention(attn, h)


def mix_self(attn: nn.Module, h: Tensor, grid: tuple[int, int]) -> Tensor:
    """Each token attends only to itself, so the attention output is its value."""
    return attn.v_proj(h)


VANILLA = LastBlock("vanilla", "CLIP's block unchanged", mix_vanilla, residual_mlp=True)
SELF = LastBlock("self", "attention to itself only; residual and MLP kept (MaskCLIP, TCL)", mix_self, True)
VALUE = LastBlock("value", "value path only: out_proj(v_proj(ln_1 x)); no residual, no MLP", mix_self, False)

#: Every variant by name. Add new ones here.
LAST_BLOCKS: dict[str, LastBlock] = {block.name: block for block in (VANILLA, SELF, VALUE)}


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
