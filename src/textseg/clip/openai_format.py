"""OpenAI's CLIP checkpoint format (``ViT-B-16.pt``): reading it safely and converting it exactly.

OpenAI's files use the original module names (``visual.transformer.resblocks.N.attn.in_proj_weight``,
``mlp.c_fc``, ``ln_post``, ``proj``, ``token_embedding``, ``text_projection``, ...) and the released
ones are TorchScript archives, which :func:`read_openai_file` reads without running them
(:mod:`textseg.torchscript`, through :func:`textseg.weights.read_state_dict`, which also takes plain
``torch.save``-d state dicts).

The conversion to transformers' ``CLIPModel`` names is exact (splitting ``in_proj`` into q/k/v,
transposing ``proj`` and ``text_projection``; see ``transformers``'
``convert_clip_original_pytorch_to_hf.py`` for the same table) and :func:`hf_to_openai` inverts it.
Only ViT image towers are supported (no ResNet CLIP).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from textseg.errors import WeightsError
from textseg.weights import read_state_dict

# -- the key table ---------------------------------------------------------------------------------
#: OpenAI name -> (transformers name, transposed).
_TOP: dict[str, tuple[str, bool]] = {
    "visual.conv1.weight": ("vision_model.embeddings.patch_embedding.weight", False),
    "visual.class_embedding": ("vision_model.embeddings.class_embedding", False),
    "visual.positional_embedding": ("vision_model.embeddings.position_embedding.weight", False),
    "visual.ln_pre.weight": ("vision_model.pre_layrnorm.weight", False),
    "visual.ln_pre.bias": ("vision_model.pre_layrnorm.bias", False),
    "visual.ln_post.weight": ("vision_model.post_layernorm.weight", False),
    "visual.ln_post.bias": ("vision_model.post_layernorm.bias", False),
    "visual.proj": ("visual_projection.weight", True),
    "token_embedding.weight": ("text_model.embeddings.token_embedding.weight", False),
    "positional_embedding": ("text_model.embeddings.position_embedding.weight", False),
    "ln_final.weight": ("text_model.final_layer_norm.weight", False),
    "ln_final.bias": ("text_model.final_layer_norm.bias", False),
    "text_projection": ("text_projection.weight", True),
    "logit_scale": ("logit_scale", False),
}
#: Block prefixes: OpenAI -> transformers (the vision one first: the text one is its suffix).
_TOWERS = (
    ("visual.transformer.resblocks.", "vision_model.encoder.layers."),
    ("transformer.resblocks.", "text_model.encoder.layers."),
)
#: Inside a block: OpenAI -> transformers (``in_proj`` is split separately).
_BLOCK = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_IN_PROJ = {"attn.in_proj_weight": "weight", "attn.in_proj_bias": "bias"}
_QKV = re.compile(r"self_attn\.(?P<part>[qkv])_proj\.(?P<kind>weight|bias)")
#: Tensors an OpenAI archive holds that are not weights (the text tower's causal mask).
_NOT_WEIGHTS = (".attn_mask",)


def _listing(keys: list[str], limit: int = 20) -> str:
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "\n  " + "\n  ".join(keys[:limit]) + more


def is_openai_state_dict(state: Mapping[str, Any]) -> bool:
    return "visual.conv1.weight" in state and "token_embedding.weight" in state


def openai_to_hf(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """OpenAI CLIP names -> transformers ``CLIPModel`` names; unknown keys raise :class:`WeightsError`."""
    if "visual.conv1.weight" not in state:
        hint = " (a ResNet CLIP?)" if any(k.startswith("visual.layer1") for k in state) else ""
        raise WeightsError(f"not an OpenAI ViT CLIP state dict{hint}: no 'visual.conv1.weight'")
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in _TOP:
            name, transpose = _TOP[key]
            out[name] = value.t().contiguous() if transpose else value
            continue
        tower = next(((o, h) for o, h in _TOWERS if key.startswith(o)), None)
        if tower is None:
            unknown.append(key)
            continue
        index, _, rest = key[len(tower[0]) :].partition(".")
        converted = _block_entry(rest, value)
        if converted is not None:
            out.update({f"{tower[1]}{index}.{name}": v for name, v in converted.items()})
        elif not key.endswith(_NOT_WEIGHTS):
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys of the OpenAI CLIP state dict fit nowhere:{_listing(unknown)}"
        )
    return out


def _block_entry(name: str, value: Tensor) -> dict[str, Tensor] | None:
    """One key inside an OpenAI block -> its transformers key(s) and value(s); None if unknown."""
    if name in _BLOCK:
        return {_BLOCK[name]: value}
    if name in _IN_PROJ:
        return {
            f"self_attn.{part}_proj.{_IN_PROJ[name]}": chunk.contiguous()
            for part, chunk in zip(("q", "k", "v"), value.chunk(3, dim=0))
        }
    return None


def openai_block_to_hf(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """One residual block in OpenAI names (``ln_1.weight``, ``attn.in_proj_weight``, ...) -> the names
    of a transformers ``CLIPEncoderLayer`` (``layer_norm1.weight``, ``self_attn.q_proj.weight``, ...),
    and the keys that are not block weights (the caller reports them with its own prefixes).

    TCL's and CoDe's checkpoints hold a trainable copy of the last vision block in OpenAI names.
    """
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        converted = _block_entry(key, value)
        if converted is None:
            unknown.append(key)
        else:
            out.update(converted)
    return out, unknown


def hf_to_openai(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of :func:`openai_to_hf` (transformers names -> OpenAI names)."""
    top = {hf: (openai, transpose) for openai, (hf, transpose) in _TOP.items()}
    block = {hf: openai for openai, hf in _BLOCK.items()}
    out: dict[str, Tensor] = {}
    in_proj: dict[tuple[str, str], dict[str, Tensor]] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in top:
            name, transpose = top[key]
            out[name] = value.t().contiguous() if transpose else value
            continue
        tower = next(((o, h) for o, h in _TOWERS if key.startswith(h)), None)
        if tower is None:
            if not key.endswith("position_ids"):
                unknown.append(key)
            continue
        index, _, rest = key[len(tower[1]) :].partition(".")
        base = f"{tower[0]}{index}."
        if rest in block:
            out[base + block[rest]] = value
        elif match := _QKV.fullmatch(rest):
            in_proj.setdefault((base, match["kind"]), {})[match["part"]] = value
        else:
            unknown.append(key)
    for (base, kind), parts in in_proj.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"{base}: q/k/v projection {kind}s are incomplete ({sorted(parts)})")
        out[f"{base}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys of the transformers CLIP state dict fit nowhere:{_listing(unknown)}"
        )
    return out


def _count_blocks(state: Mapping[str, Tensor], prefix: str) -> int:
    return len({k[len(prefix) :].split(".", 1)[0] for k in state if k.startswith(prefix)})


def config_from_openai(state: Mapping[str, Tensor], head_width: int = 64):
    """The transformers ``CLIPConfig`` of an OpenAI ViT CLIP state dict, read from its shapes.

    As OpenAI's ``build_model`` does, the number of heads is ``width // head_width`` (64 for every
    released model).
    """
    from transformers import CLIPConfig

    try:
        conv = state["visual.conv1.weight"]
        vision_width, patch = conv.shape[0], conv.shape[-1]
        grid = math.isqrt(state["visual.positional_embedding"].shape[0] - 1)
        text_width = state["ln_final.weight"].shape[0]
        vocab = state["token_embedding.weight"].shape[0]
        text_config = dict(
            vocab_size=vocab,
            hidden_size=text_width,
            intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=_count_blocks(state, "transformer.resblocks."),
            num_attention_heads=text_width // head_width,
            max_position_embeddings=state["positional_embedding"].shape[0],
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
        )
        vision_config = dict(
            hidden_size=vision_width,
            intermediate_size=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=_count_blocks(state, "visual.transformer.resblocks."),
            num_attention_heads=vision_width // head_width,
            image_size=patch * grid,
            patch_size=patch,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        )
        projection_dim = state["text_projection"].shape[1]
    except KeyError as exc:
        raise WeightsError(f"not an OpenAI ViT CLIP state dict: no {exc.args[0]!r}") from None
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


def read_openai_file(path: str | Path) -> dict[str, Tensor]:
    """The state dict of an OpenAI CLIP file (TorchScript archive or plain state dict), OpenAI names."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"no OpenAI CLIP file at {path}")
    state, _ignored = read_state_dict(path)
    if not is_openai_state_dict(state):
        raise WeightsError(
            f"{path} is not an OpenAI CLIP checkpoint (expected keys such as 'visual.conv1.weight' and "
            "'token_embedding.weight'). For a transformers folder, pass the folder instead."
        )
    return state
