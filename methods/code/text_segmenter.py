"""CoDe's text segmenter (``TextDecoder`` in ``models/tcl/decoders.py`` and ``get_text_masks`` in
``models/tcl/codecomposition.py`` officially).

A randomly initialised transformer (2 layers, 8 heads, as wide as the text tower: 512 for
ViT-B/16) reads the frozen text tower's last hidden states (before ``final_layer_norm``) at all
positions — with no attention mask (padding after the end token is attended to), no position
embedding and no final LayerNorm, as OpenAI CLIP's ``Transformer`` is used officially — and its
output is L2-normalised per token. The logit of token ``l`` for noun ``k`` is
``w * cos(token_l, noun_k) + b`` (``w`` 10, ``b`` 0 at first, both learned), and a fixed 0 logit
stands for "not this caption's selected nouns"; the word masks are the softmax over
``{background, noun_1, .., noun_K}`` per token.

Blocks are transformers ``CLIPEncoderLayer`` s (pre-LN, QuickGELU MLP 4x), run by
:func:`textseg.clip.blocks.standard_layer`; their attention is initialised as PyTorch's
``nn.MultiheadAttention`` is (Xavier-uniform over the packed q/k/v matrix, zero biases), the rest
with PyTorch's defaults, as the official module gets them.

One addition: when the text width differs from the joint embedding size (never for CLIP
ViT-B/16, where both are 512; the tiny test CLIP has 64 and 32) a linear map without bias takes
the tokens to the joint space, since the cosine with a noun embedding needs equal sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import CLIPTextConfig
from transformers.models.clip.modeling_clip import CLIPEncoderLayer

from textseg.clip.blocks import standard_layer
from textseg.methods.tcl.masks import normalize


def init_like_multihead_attention(attn: nn.Module) -> None:
    """Initialise a ``CLIPAttention`` as ``nn.MultiheadAttention._reset_parameters`` does."""
    width = attn.q_proj.weight.shape[1]
    packed = torch.empty(3 * width, width)
    nn.init.xavier_uniform_(packed)
    with torch.no_grad():
        for proj, part in zip((attn.q_proj, attn.k_proj, attn.v_proj), packed.chunk(3)):
            proj.weight.copy_(part)
            proj.bias.zero_()
        attn.out_proj.bias.zero_()


class TextSegmenter(nn.Module):
    """``layers`` (the decoder), optional ``projection``, and the logit scale ``w`` and bias ``b``."""

    def __init__(
        self,
        width: int,
        embed_dim: int,
        layers: int = 2,
        heads: int = 8,
        init_w: float = 10.0,
        init_b: float = 0.0,
    ) -> None:
        super().__init__()
        config = CLIPTextConfig(
            hidden_size=width,
            intermediate_size=4 * width,
            num_attention_heads=heads,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        )
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(layers))
        for layer in self.layers:
            init_like_multihead_attention(layer.self_attn)
        self.projection = nn.Linear(width, embed_dim, bias=False) if width != embed_dim else None
        self.w = nn.Parameter(torch.tensor(float(init_w)))
        self.b = nn.Parameter(torch.tensor(float(init_b)))

    def tokens(self, hidden: Tensor) -> Tensor:
        """Unit token embeddings ``[B, L, D]`` from the text tower's last hidden states ``[B, L, W]``."""
        x = hidden
        for layer in self.layers:
            x = standard_layer(layer, x)  # no mask: every position sees every other
        if self.projection is not None:
            x = self.projection(x)
        return normalize(x, -1)

    def forward(self, hidden: Tensor, nouns: Tensor) -> Tensor:
        """Word-mask logits ``[B, K + 1, L]``: class 0 is the fixed zero background logit, class
        ``k + 1`` is noun ``k``. ``nouns`` are unit embeddings ``[K * B, D]`` in the order
        ``k * B + b`` (noun ``k`` of caption ``b``)."""
        tokens = self.tokens(hidden)
        batch = tokens.shape[0]
        per_noun = nouns.view(-1, batch, nouns.shape[-1]).to(tokens.dtype)  # [K, B, D]
        logits = torch.einsum("bld,kbd->kbl", tokens, per_noun) * self.w + self.b
        logits = torch.cat([torch.zeros_like(logits[:1]), logits], dim=0)
        return logits.permute(1, 0, 2)
