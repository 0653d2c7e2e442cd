"""Running one transformers ``CLIPEncoderLayer`` by hand.

Dense-CLIP methods change the attention of a block, not its weights, so textseg runs every block
from its submodules (``layer_norm1``, ``self_attn.{q,k,v,out}_proj``, ``layer_norm2``, ``mlp``)
instead of through the layer's ``forward``. That keeps one code path for the standard block and
its variants, and it does not depend on how a transformers version wires attention back-ends or
what a layer's ``forward`` returns.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def split_heads(attn: nn.Module, t: Tensor) -> Tensor:
    """``[B, N, C]`` -> ``[B, heads, N, C / heads]``."""
    b, n, c = t.shape
    return t.view(b, n, attn.num_heads, c // attn.num_heads).transpose(1, 2)


def merge_heads(t: Tensor) -> Tensor:
    """``[B, heads, N, d]`` -> ``[B, N, heads * d]``."""
    b, h, n, d = t.shape
    return t.transpose(1, 2).reshape(b, n, h * d)


def qkv(attn: nn.Module, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-head queries, keys and values of the (already layer-normed) tokens ``h``."""
    return (
        split_heads(attn, attn.q_proj(h)),
        split_heads(attn, attn.k_proj(h)),
        split_heads(attn, attn.v_proj(h)),
    )


def attention(attn: nn.Module, h: Tensor, mask: Tensor | None = None) -> Tensor:
    """Standard multi-head attention of ``h`` ``[B, N, C]`` *before* ``out_proj``.

    ``mask`` is additive (``-inf`` blocks a pair), broadcastable to ``[B, heads, N, N]``. The scale
    is ``head_dim ** -0.5`` as in CLIP.
    """
    q, k, v = qkv(attn, h)
    return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def attention_map(attn: nn.Module, h: Tensor, mask: Tensor | None = None) -> Tensor:
    """The attention probabilities ``softmax(s q kᵀ + mask)`` ``[B, heads, N, N]`` of the layer-normed
    tokens ``h`` (what ResCLIP averages over middle blocks; :func:`attention` applies the same map)."""
    q, k, _ = qkv(attn, h)
    logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)
    return (logits if mask is None else logits + mask).softmax(dim=-1)


def standard_layer(layer: nn.Module, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """The block as CLIP runs it (pre-LN): ``x + attn(ln1 x)``, then ``+ mlp(ln2 x)``."""
    x = x + layer.self_attn.out_proj(attention(layer.self_attn, layer.layer_norm1(x), mask))
    return x + layer.mlp(layer.layer_norm2(x))
