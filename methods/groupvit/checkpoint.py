"""Released GroupViT weights and the converters to this implementation's names.

Two namings reach :func:`convert_checkpoint` (it runs when no key of a file is ours):

* **transformers** (the hub's ``nvidia/groupvit-gcc-yfcc`` / ``-redcaps`` files, or a
  ``save_pretrained`` folder): ``vision_model.*``, ``text_model.*``, ``visual_projection.*``,
  ``text_projection.*``, ``logit_scale`` are ours under ``model.``; nothing is reshaped. Old
  files also hold the ``text_model.embeddings.position_ids`` buffer, which is ignored.
* **official** (the NVlabs ``.pth`` release, ``{"model": state_dict, ...}``, read by
  :func:`textseg.weights.read_state_dict` without unpickling anything else):

  - ``img_encoder.patch_embed.proj`` / ``.norm`` -> ``embeddings.patch_embeddings.projection`` /
    ``embeddings.layernorm``; ``img_encoder.pos_embed`` -> ``embeddings.position_embeddings``;
    ``img_encoder.norm`` -> ``layernorm``;
  - ``img_encoder.layers.<i>.blocks.<j>.{norm1,norm2,attn.qkv,attn.proj,mlp.fc1,mlp.fc2}`` ->
    ``encoder.stages.<i>.layers.<j>.{layer_norm1,layer_norm2,self_attn.{q,k,v}_proj,
    self_attn.out_proj,mlp.fc1,mlp.fc2}`` (the fused ``qkv`` split in q, k, v order);
  - ``img_encoder.layers.<i>.{group_token,group_projector.*}`` keep their names;
    ``downsample.*`` too, except ``pre_assign_attn.attn.proj`` -> ``pre_assign_attn.attn.out_proj``;
  - ``text_encoder.{token_embedding,positional_embedding,ln_final}`` -> ``text_model.embeddings.
    {token_embedding,position_embedding}``, ``text_model.final_layer_norm``; the blocks
    ``text_encoder.transformer.resblocks.<i>.*`` are OpenAI CLIP blocks
    (:func:`~textseg.clip.openai_format.openai_block_to_hf`);
  - ``{img,text}_projector.linear_hidden.{0,1}`` / ``linear_out`` (1x1 Conv1d, BatchNorm) ->
    ``{visual,text}_projection.{0,1,3}`` (the convolution kernels squeezed to matrices);
  - ``logit_scale``; ``multi_label_logit_scale`` -> ``prompt_logit_scale`` (absent from the RedCaps
    model, which trained without prompts: then ours stays).

Any other key fits nowhere and is an error listing those keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from textseg.api import Checkpoint, SegMethod
from textseg.clip.openai_format import openai_block_to_hf
from textseg.errors import WeightsError
from textseg.methods.tcl.checkpoint import key_listing

RELEASE = "https://github.com/xvjiarui/GroupViT/releases/download/v1.0.0/"
HUB = "https://huggingface.co/nvidia/{}/resolve/main/pytorch_model.bin"

CHECKPOINTS = {
    "official": Checkpoint(
        RELEASE + "group_vit_gcc_yfcc_30e-879422e0.pth",
        summary="the authors' gcc-yfcc release (official naming, converted on load)",
        preset="paper",
    ),
    "official-redcaps": Checkpoint(
        # as linked from PGSeg's README (the yfcc URL is the one the authors' demo Space loads)
        "https://github.com/xvjiarui/GroupViT-1/releases/download/v1.0.0/group_vit_gcc_redcap_30e-3dd09a76.pth",
        summary="the authors' gcc-redcaps release (official naming, converted on load)",
        preset="redcaps",
    ),
    "hub-yfcc": Checkpoint(
        HUB.format("groupvit-gcc-yfcc"),
        summary="the same model as transformers' nvidia/groupvit-gcc-yfcc",
        preset="paper",
    ),
    "hub-redcaps": Checkpoint(
        HUB.format("groupvit-gcc-redcaps"),
        summary="the same model as transformers' nvidia/groupvit-gcc-redcaps",
        preset="redcaps",
    ),
}

_HF_PREFIXES = ("vision_model.", "text_model.", "visual_projection.", "text_projection.")
_IGNORED = ("text_model.embeddings.position_ids",)
_VISION = "model.vision_model."
_BLOCK = re.compile(r"img_encoder\.layers\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.(?P<leaf>.+)")
_BLOCK_LEAVES = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.proj": "self_attn.out_proj",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_STAGE = re.compile(
    r"img_encoder\.layers\.(?P<stage>\d+)\.(?P<rest>(group_token|group_projector\.|downsample\.).*)"
)
_TEXT_BLOCK = re.compile(r"text_encoder\.transformer\.resblocks\.(?P<index>\d+)\.(?P<leaf>.+)")
_SIMPLE = {
    "img_encoder.pos_embed": _VISION + "embeddings.position_embeddings",
    "img_encoder.patch_embed.proj.weight": _VISION + "embeddings.patch_embeddings.projection.weight",
    "img_encoder.patch_embed.proj.bias": _VISION + "embeddings.patch_embeddings.projection.bias",
    "img_encoder.patch_embed.norm.weight": _VISION + "embeddings.layernorm.weight",
    "img_encoder.patch_embed.norm.bias": _VISION + "embeddings.layernorm.bias",
    "img_encoder.norm.weight": _VISION + "layernorm.weight",
    "img_encoder.norm.bias": _VISION + "layernorm.bias",
    "text_encoder.token_embedding.weight": "model.text_model.embeddings.token_embedding.weight",
    "text_encoder.positional_embedding": "model.text_model.embeddings.position_embedding.weight",
    "text_encoder.ln_final.weight": "model.text_model.final_layer_norm.weight",
    "text_encoder.ln_final.bias": "model.text_model.final_layer_norm.bias",
    "logit_scale": "model.logit_scale",
    "multi_label_logit_scale": "prompt_logit_scale",
}
_PROJECTORS = {"img_projector.": "model.visual_projection.", "text_projector.": "model.text_projection."}
_PROJECTOR_LAYERS = {"linear_hidden.0.": "0.", "linear_hidden.1.": "1.", "linear_out.": "3."}


def _vision_block(stage: str, block: str, leaf: str, value: Tensor) -> dict[str, Tensor] | None:
    base = f"{_VISION}encoder.stages.{stage}.layers.{block}."
    if leaf in ("attn.qkv.weight", "attn.qkv.bias"):
        part = leaf.rsplit(".", 1)[1]
        q, k, v = value.chunk(3)
        return {f"{base}self_attn.{name}_proj.{part}": t for name, t in zip("qkv", (q, k, v))}
    head, _, part = leaf.rpartition(".")
    if head in _BLOCK_LEAVES:
        return {f"{base}{_BLOCK_LEAVES[head]}.{part}": value}
    return None


def _projector(key: str, value: Tensor) -> dict[str, Tensor] | None:
    for official, ours in _PROJECTORS.items():
        if key.startswith(official):
            rest = key[len(official) :]
            layer = next((o for o in _PROJECTOR_LAYERS if rest.startswith(o)), None)
            if layer is None:
                return None
            value = value.squeeze(-1) if value.ndim == 3 else value  # Conv1d k=1 -> Linear
            return {ours + _PROJECTOR_LAYERS[layer] + rest[len(layer) :]: value}
    return None


def convert_official(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Official keys -> ours, and the keys that fit nowhere."""
    out: dict[str, Tensor] = {}
    text_blocks: dict[str, dict[str, Tensor]] = {}
    unknown: list[str] = []
    for key, value in state.items():
        converted: dict[str, Tensor] | None = None
        if key in _SIMPLE:
            converted = {_SIMPLE[key]: value}
        elif match := _BLOCK.fullmatch(key):
            converted = _vision_block(match["stage"], match["block"], match["leaf"], value)
        elif match := _STAGE.fullmatch(key):
            rest = match["rest"].replace("pre_assign_attn.attn.proj.", "pre_assign_attn.attn.out_proj.")
            converted = {f"{_VISION}encoder.stages.{match['stage']}.{rest}": value}
        elif match := _TEXT_BLOCK.fullmatch(key):
            text_blocks.setdefault(match["index"], {})[match["leaf"]] = value
            continue
        elif key.startswith(tuple(_PROJECTORS)):
            converted = _projector(key, value)
        if converted is None:
            unknown.append(key)
        else:
            out.update(converted)
    for index, block in text_blocks.items():
        layers, not_block = openai_block_to_hf(block)
        out.update({f"model.text_model.encoder.layers.{index}.{k}": v for k, v in layers.items()})
        unknown += [f"text_encoder.transformer.resblocks.{index}.{k}" for k in not_block]
    return out, unknown


def convert_transformers(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """transformers ``GroupViTModel`` keys -> ours (under ``model.``), and the keys that fit nowhere."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in _IGNORED:
            continue
        if key.startswith(_HF_PREFIXES) or key == "logit_scale":
            out[f"model.{key}"] = value
        elif key == "multi_label_logit_scale":
            out["prompt_logit_scale"] = value
        else:
            unknown.append(key)
    return out, unknown


def convert_checkpoint(state: Mapping[str, Tensor], method: SegMethod) -> dict[str, Tensor]:
    """A transformers-format or official GroupViT state dict -> this implementation's keys."""
    if any(key.startswith(_HF_PREFIXES) for key in state):
        out, unknown = convert_transformers(state)
        what = "transformers-format"
    else:
        out, unknown = convert_official(state)
        what = "official"
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys of the {what} GroupViT checkpoint fit nowhere in this GroupViT:"
            f"{key_listing(sorted(unknown))}"
        )
    own = method.state_dict()
    if "prompt_logit_scale" in own:
        out.setdefault("prompt_logit_scale", own["prompt_logit_scale"])
    else:
        out.pop("prompt_logit_scale", None)  # trained with prompts, scored here without
    return out
