"""An independent CLIP forward in OpenAI's original layout, written from the published formulas.

It reads an OpenAI-named state dict directly (packed ``in_proj``, ``c_fc``/``c_proj``, ``x @ proj``)
and shares no code with ``textseg.clip``: the conversion tests compare textseg's transformers-based
towers against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _ln(x: Tensor, s: dict[str, Tensor], name: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], s[f"{name}.weight"], s[f"{name}.bias"], eps=1e-5)


def _block(x: Tensor, s: dict[str, Tensor], p: str, heads: int, mask: Tensor | None) -> Tensor:
    n, length, width = x.shape
    y = _ln(x, s, f"{p}.ln_1") @ s[f"{p}.attn.in_proj_weight"].t() + s[f"{p}.attn.in_proj_bias"]
    q, k, v = (t.reshape(n, length, heads, width // heads).transpose(1, 2) for t in y.split(width, dim=-1))
    logits = (q * (width // heads) ** -0.5) @ k.transpose(-1, -2)
    if mask is not None:
        logits = logits + mask
    att = (logits.softmax(-1) @ v).transpose(1, 2).reshape(n, length, width)
    x = x + att @ s[f"{p}.attn.out_proj.weight"].t() + s[f"{p}.attn.out_proj.bias"]
    h = _ln(x, s, f"{p}.ln_2") @ s[f"{p}.mlp.c_fc.weight"].t() + s[f"{p}.mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + h @ s[f"{p}.mlp.c_proj.weight"].t() + s[f"{p}.mlp.c_proj.bias"]


def _layers(s: dict[str, Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in s if k.startswith(prefix)})


def encode_image(s: dict[str, Tensor], images: Tensor, heads: int) -> Tensor:
    """OpenAI ``CLIP.encode_image`` for a ViT at its training resolution."""
    conv = s["visual.conv1.weight"]
    x = F.conv2d(images, conv, stride=conv.shape[-1]).flatten(2).transpose(1, 2)
    cls = s["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + s["visual.positional_embedding"]
    x = _ln(x, s, "visual.ln_pre")
    for i in range(_layers(s, "visual.transformer.resblocks.")):
        x = _block(x, s, f"visual.transformer.resblocks.{i}", heads, None)
    return _ln(x[:, 0], s, "visual.ln_post") @ s["visual.proj"]


def encode_text(s: dict[str, Tensor], ids: Tensor, heads: int) -> Tensor:
    """OpenAI ``CLIP.encode_text``: causal blocks, ``ln_final``, the end token (the largest id), projection."""
    length = ids.shape[1]
    x = s["token_embedding.weight"][ids] + s["positional_embedding"][:length]
    mask = torch.full((length, length), float("-inf")).triu(1)
    for i in range(_layers(s, "transformer.resblocks.")):
        x = _block(x, s, f"transformer.resblocks.{i}", heads, mask)
    x = _ln(x, s, "ln_final")
    return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ s["text_projection"]


def random_openai_state(
    width: int = 128,
    layers: int = 2,
    patch: int = 16,
    grid: int = 4,
    text_width: int = 128,
    vocab: int = 814,
    context: int = 77,
    embed_dim: int = 48,
    seed: int = 0,
) -> dict[str, Tensor]:
    """A random ViT CLIP state dict with OpenAI's names and shapes (head width 64, as OpenAI's)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.05) -> Tensor:
        return torch.randn(*shape, generator=g) * scale

    s: dict[str, Tensor] = {}

    def tower(prefix: str, w: int) -> None:
        for i in range(layers):
            p = f"{prefix}{i}."
            s[p + "attn.in_proj_weight"] = rand(3 * w, w)
            s[p + "attn.in_proj_bias"] = rand(3 * w)
            s[p + "attn.out_proj.weight"] = rand(w, w)
            s[p + "attn.out_proj.bias"] = rand(w)
            for ln in ("ln_1", "ln_2"):
                s[p + f"{ln}.weight"] = 1 + rand(w)
                s[p + f"{ln}.bias"] = rand(w)
            s[p + "mlp.c_fc.weight"] = rand(4 * w, w)
            s[p + "mlp.c_fc.bias"] = rand(4 * w)
            s[p + "mlp.c_proj.weight"] = rand(w, 4 * w)
            s[p + "mlp.c_proj.bias"] = rand(w)

    s["visual.conv1.weight"] = rand(width, 3, patch, patch)
    s["visual.class_embedding"] = rand(width, scale=0.5)
    s["visual.positional_embedding"] = rand(grid * grid + 1, width, scale=0.5)
    for ln in ("ln_pre", "ln_post"):
        s[f"visual.{ln}.weight"] = 1 + rand(width)
        s[f"visual.{ln}.bias"] = rand(width)
    s["visual.proj"] = rand(width, embed_dim)
    tower("visual.transformer.resblocks.", width)
    s["token_embedding.weight"] = rand(vocab, text_width, scale=0.5)
    s["positional_embedding"] = rand(context, text_width, scale=0.5)
    tower("transformer.resblocks.", text_width)
    s["ln_final.weight"] = 1 + rand(text_width)
    s["ln_final.bias"] = rand(text_width)
    s["text_projection"] = rand(text_width, embed_dim)
    s["logit_scale"] = torch.tensor(4.6052)
    return s
