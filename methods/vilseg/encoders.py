"""ViL-Seg's two towers: a timm ViT with a projection into the joint space, and CLIP's text transformer.

The image tower is timm's ``VisionTransformer`` in its CLIP arrangement (a LayerNorm before the
blocks, no patch-embedding bias, LayerNorm eps 1e-5, QuickGELU for OpenAI weights), so it can
start from scratch or from CLIP's vision tower through :func:`hf_clip_vision_to_timm`. It takes
any image size: positional embeddings are interpolated and inputs padded to whole patches.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig

from textseg.errors import WeightsError

#: transformers' activation names -> timm's
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}


def build_vit(
    width: int,
    depth: int,
    heads: int,
    patch_size: int,
    image_size: int,
    mlp_ratio: float,
    act: str,
    eps: float,
) -> VisionTransformer:
    """A CLIP-arranged timm ViT without a classifier: ``forward_features`` gives normalised tokens."""
    if act not in _ACTIVATIONS:
        raise WeightsError(
            f"CLIP vision activation {act!r} has no timm equivalent ({', '.join(_ACTIVATIONS)})"
        )
    return VisionTransformer(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=width,
        depth=depth,
        num_heads=heads,
        mlp_ratio=mlp_ratio,
        qkv_bias=True,
        pre_norm=True,
        num_classes=0,
        global_pool="token",
        dynamic_img_size=True,
        dynamic_img_pad=True,
        norm_layer=partial(nn.LayerNorm, eps=eps),
        act_layer=_ACTIVATIONS[act],
    )


def vit_from_clip_config(config: CLIPVisionConfig) -> VisionTransformer:
    """A timm ViT with exactly the shape of a transformers CLIP vision tower."""
    return build_vit(
        width=config.hidden_size,
        depth=config.num_hidden_layers,
        heads=config.num_attention_heads,
        patch_size=config.patch_size,
        image_size=config.image_size,
        mlp_ratio=config.intermediate_size / config.hidden_size,
        act=config.hidden_act,
        eps=config.layer_norm_eps,
    )


class VisionTower(nn.Module):
    """ViT + a bias-free linear projection into the joint image-text space (as CLIP's ``proj``)."""

    def __init__(self, vit: VisionTransformer, embed_dim: int) -> None:
        super().__init__()
        self.vit = vit
        self.proj = nn.Linear(vit.embed_dim, embed_dim, bias=False)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Global embedding ``[B, D]`` (class token) and patch embeddings ``[B, h, w, D]``.

        Both go through the final LayerNorm and the projection, so patches live in the space the
        class token is aligned with text in. Neither is L2-normalised.
        """
        h, w = self.vit.patch_embed.dynamic_feat_size(tuple(images.shape[-2:]))
        tokens = self.proj(self.vit.forward_features(images))
        prefix = self.vit.num_prefix_tokens
        return tokens[:, 0], tokens[:, prefix:].reshape(len(images), h, w, -1)


def hf_clip_vision_to_timm(state: Mapping[str, Tensor], depth: int) -> dict[str, Tensor]:
    """Map a transformers ``CLIPModel`` state dict's vision tower onto :class:`VisionTower`'s names.

    transformers keeps separate q/k/v projections; timm fuses them as one ``qkv`` in q, k, v order.
    The class embedding and positional table gain timm's leading batch axes.
    """
    src = "vision_model."
    try:
        out = {
            "vit.cls_token": state[src + "embeddings.class_embedding"].reshape(1, 1, -1),
            "vit.pos_embed": state[src + "embeddings.position_embedding.weight"].unsqueeze(0),
            "vit.patch_embed.proj.weight": state[src + "embeddings.patch_embedding.weight"],
            "vit.norm_pre.weight": state[src + "pre_layrnorm.weight"],
            "vit.norm_pre.bias": state[src + "pre_layrnorm.bias"],
            "vit.norm.weight": state[src + "post_layernorm.weight"],
            "vit.norm.bias": state[src + "post_layernorm.bias"],
            "proj.weight": state["visual_projection.weight"],
        }
        for i in range(depth):
            hf, tm = f"{src}encoder.layers.{i}.", f"vit.blocks.{i}."
            for part in ("weight", "bias"):
                out[f"{tm}attn.qkv.{part}"] = torch.cat(
                    [state[f"{hf}self_attn.{p}_proj.{part}"] for p in ("q", "k", "v")]
                )
                out[f"{tm}attn.proj.{part}"] = state[f"{hf}self_attn.out_proj.{part}"]
                out[f"{tm}norm1.{part}"] = state[f"{hf}layer_norm1.{part}"]
                out[f"{tm}norm2.{part}"] = state[f"{hf}layer_norm2.{part}"]
                out[f"{tm}mlp.fc1.{part}"] = state[f"{hf}mlp.fc1.{part}"]
                out[f"{tm}mlp.fc2.{part}"] = state[f"{hf}mlp.fc2.{part}"]
    except KeyError as exc:
        raise WeightsError(
            f"the CLIP state dict has no {exc.args[0]!r}: is it a transformers CLIPModel?"
        ) from exc
    return out


def text_tower(config: CLIPTextConfig, projection_dim: int) -> CLIPTextModelWithProjection:
    """CLIP's text transformer with its projection, randomly initialised (EOS-token pooling)."""
    config = CLIPTextConfig.from_dict({**config.to_dict(), "projection_dim": projection_dim})
    return CLIPTextModelWithProjection(config)


def clip_text_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The text tower's part of a ``CLIPModel`` state dict, named as in ``CLIPTextModelWithProjection``."""
    return {k: v for k, v in state.items() if k.startswith(("text_model.", "text_projection."))}
