"""GroupViT's official checkpoint naming (NVlabs/GroupViT ``MultiLabelContrastive.state_dict()``), built
from a textseg module tree rather than by the converter under test."""

from __future__ import annotations

import torch

from textseg.methods.groupvit import GroupViT

_BLOCK = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.out_proj": "attn.proj", "mlp.fc1": "mlp.fc1",
          "mlp.fc2": "mlp.fc2"}  # fmt: skip
_TEXT_BLOCK = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def _layer(layer: torch.nn.Module, names: dict[str, str], prefix: str, fused: str) -> dict[str, torch.Tensor]:
    """A pre-norm block's weights under official names, q/k/v concatenated as ``<fused><part>``."""
    out = {}
    for part in ("weight", "bias"):
        projections = [getattr(getattr(layer.self_attn, f"{x}_proj"), part) for x in "qkv"]
        out[f"{prefix}{fused}{part}"] = torch.cat(projections)
        for ours, official in names.items():
            out[f"{prefix}{official}.{part}"] = getattr(layer.get_submodule(ours), part)
    return out


def official_state(method: GroupViT) -> dict[str, torch.Tensor]:
    """``method``'s weights (BatchNorm statistics included) in the official naming."""
    model = method.model
    vision, text = model.vision_model, model.text_model
    out: dict[str, torch.Tensor] = {
        "img_encoder.pos_embed": vision.embeddings.position_embeddings,
        "img_encoder.patch_embed.proj.weight": vision.embeddings.patch_embeddings.projection.weight,
        "img_encoder.patch_embed.proj.bias": vision.embeddings.patch_embeddings.projection.bias,
        "img_encoder.patch_embed.norm.weight": vision.embeddings.layernorm.weight,
        "img_encoder.patch_embed.norm.bias": vision.embeddings.layernorm.bias,
        "img_encoder.norm.weight": vision.layernorm.weight,
        "img_encoder.norm.bias": vision.layernorm.bias,
        "text_encoder.token_embedding.weight": text.embeddings.token_embedding.weight,
        "text_encoder.positional_embedding": text.embeddings.position_embedding.weight,
        "text_encoder.ln_final.weight": text.final_layer_norm.weight,
        "text_encoder.ln_final.bias": text.final_layer_norm.bias,
        "logit_scale": model.logit_scale,
    }
    if hasattr(method, "prompt_logit_scale"):
        out["multi_label_logit_scale"] = method.prompt_logit_scale
    for i, stage in enumerate(vision.encoder.stages):
        for j, layer in enumerate(stage.layers):
            out.update(_layer(layer, _BLOCK, f"img_encoder.layers.{i}.blocks.{j}.", "attn.qkv."))
        for name, value in stage.state_dict().items():
            if name.startswith(("group_token", "group_projector.", "downsample.")):
                name = name.replace("pre_assign_attn.attn.out_proj.", "pre_assign_attn.attn.proj.")
                out[f"img_encoder.layers.{i}.{name}"] = value
    for i, layer in enumerate(text.encoder.layers):
        out.update(_layer(layer, _TEXT_BLOCK, f"text_encoder.transformer.resblocks.{i}.", "attn.in_proj_"))
    for ours, official in (
        (model.visual_projection, "img_projector."),
        (model.text_projection, "text_projector."),
    ):
        for index, name in ((0, "linear_hidden.0."), (1, "linear_hidden.1."), (3, "linear_out.")):
            for key, value in ours[index].state_dict().items():
                conv = index != 1 and key == "weight"
                out[official + name + key] = value.unsqueeze(-1) if conv else value
    return {k: v.detach().clone() for k, v in out.items()}
