"""OpenCLIP models (``open_clip:ARCH`` or ``open_clip:ARCH/TAG``), converted into transformers' CLIP.

Spellings (``ARCH`` is an ``open_clip_torch`` architecture name, e.g. ``ViT-B-16``, ``ViT-L-14``,
``ViT-H-14``, ``ViT-B-16-quickgelu``):

* ``open_clip:ARCH/TAG`` — the released weights ``TAG`` (``open_clip.list_pretrained_tags_by_model``),
  fetched from the Hugging Face Hub into its cache (safetensors where the release has them);
* ``open_clip:ARCH/PATH`` — an OpenCLIP checkpoint file (``open_clip_model.safetensors``, a
  ``.bin``/``.pt`` state dict), read with :func:`textseg.weights.read_state_dict`;
* ``open_clip:ARCH`` — random weights, as ``open_clip.create_model(ARCH)`` initialises them with
  seed 0 (tests and dry runs). The architectures of :mod:`textseg.testing.tiny_open_clip`
  (``textseg-tiny-vit``, ``textseg-tiny-vit-quickgelu``) are registered with open_clip on first use.

**Converted, not wrapped.** An OpenCLIP ViT-CLIP (``open_clip.CLIP`` with its own
``VisionTransformer`` and ``TextTransformer``) computes exactly what OpenAI's CLIP computes, and its
state dict uses OpenAI's names, so it is converted with :func:`textseg.clip.openai_format.openai_to_hf`
into a transformers ``CLIPModel`` whose configuration comes from the OpenCLIP architecture (width,
layers, ``head_width``, ``mlp_ratio``, patch and image size, ``embed_dim``; ``quick_gelu`` ->
``hidden_act``). Every dense variant, TCL's and CoDe's pieces and the text tower then run on one code
path (:mod:`textseg.clip.vision`, :mod:`textseg.clip.text`) whatever the weights' origin, the
parity tests of those methods cover OpenCLIP weights by construction, and ``open_clip_torch`` is
needed only to read the architecture and fetch the weights (an optional extra). A test checks the
converted model against OpenCLIP's own modules (the official recipes computed on
``open_clip.transformer`` blocks). What transformers' CLIP cannot express is refused with the
field named rather than approximated: layer scale, attentional pooling, ``no_ln_pre``, pooling other
than the class token, QK-norm and the other custom attention blocks, timm or Hugging Face towers,
non-square images, text pooling other than ``argmax``, text projection bias, ``embed_cls``.

**QuickGELU.** The activation is part of the architecture (``ViT-B-16`` uses GELU,
``ViT-B-16-quickgelu`` QuickGELU) while the weights were trained with one of them. OpenCLIP only
warns when a release tag was trained with the other one (``ViT-B-16/openai``); textseg refuses it
and names the architecture to use; so is a checkpoint file inside the Hugging Face cache of a known
release. Any other file says nothing about its activation: pick the architecture the weights were
trained with.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from textseg.errors import ConfigError, WeightsError

PREFIX = "open_clip:"
#: What the OpenCLIP spellings need, for messages.
INSTALL = "pip install open_clip_torch (or textseg[openclip])"
#: Files an OpenCLIP release on the hub holds, the safe format first.
_HUB_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: Seed of the random weights of ``open_clip:ARCH`` without a tag.
RANDOM_SEED = 0


@dataclass(frozen=True)
class OpenCLIPSource:
    """A parsed ``open_clip:`` spelling: the architecture and at most one of a tag or a file."""

    arch: str
    tag: str | None = None
    file: Path | None = None

    @property
    def random(self) -> bool:
        return self.tag is None and self.file is None


def is_open_clip(source: str) -> bool:
    return source.startswith(PREFIX)


def open_clip_module():
    """The ``open_clip`` package, or a message saying how to install it."""
    try:
        import open_clip
    except ImportError as exc:
        raise WeightsError(f"OpenCLIP models need the open_clip_torch package: {INSTALL}") from exc
    from textseg.testing.tiny_open_clip import register_tiny_archs

    register_tiny_archs(open_clip)
    return open_clip


def parse(source: str) -> OpenCLIPSource:
    """``open_clip:ARCH[/TAG_OR_FILE]`` -> :class:`OpenCLIPSource` (the architecture must exist)."""
    open_clip = open_clip_module()
    arch, _, rest = source[len(PREFIX) :].partition("/")
    if open_clip.get_model_config(arch) is None:
        close = difflib.get_close_matches(arch, open_clip.list_models(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"{source!r}: open_clip has no architecture {arch!r}.{hint} See open_clip.list_models()."
        )
    if not rest:
        return OpenCLIPSource(arch)
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if rest in tags:
        return OpenCLIPSource(arch, tag=rest)
    path = Path(rest).expanduser()
    if not path.is_absolute() and not path.exists() and Path("/" + rest).is_file():
        path = Path("/" + rest)  # open_clip:ARCH//abs/path and open_clip:ARCH/abs/path both work
    if path.is_file():
        return OpenCLIPSource(arch, file=path)
    known = ", ".join(tags) or "none"
    raise ConfigError(
        f"{source!r}: {rest!r} is neither a released tag of {arch} (tags: {known}) nor an existing file"
    )


def architecture(source: OpenCLIPSource) -> dict[str, Any]:
    """OpenCLIP's model config of ``source.arch``, checked to be one transformers' CLIP can hold."""
    cfg = open_clip_module().get_model_config(source.arch)
    vision, text = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    problems = [f"{k}={cfg[k]!r}" for k in ("custom_text", "init_logit_bias") if cfg.get(k)]
    unsupported_vision = {
        "timm_model_name": None,
        "ls_init_value": None,
        "attentional_pool": False,
        "no_ln_pre": False,
        "pos_embed_type": "learnable",
        "final_ln_after_pool": False,
        "pool_type": "tok",
        "act_kwargs": None,
        "norm_kwargs": None,
    }
    unsupported_text = {
        "hf_model_name": None,
        "ls_init_value": None,
        "embed_cls": False,
        "no_causal_mask": False,
        "final_ln_after_pool": False,
        "pool_type": "argmax",
        "proj_bias": False,
        "proj_type": "linear",
        "act_kwargs": None,
        "norm_kwargs": None,
    }
    custom_block = (
        "qk_norm",
        "scaled_cosine_attn",
        "scale_heads",
        "scale_attn_inner",
        "scale_attn",
        "scale_fc",
    )
    for tower, fields in (("vision_cfg", unsupported_vision), ("text_cfg", unsupported_text)):
        values = cfg.get(tower, {})
        problems += [
            f"{tower}.{k}={values[k]!r}" for k, ok in fields.items() if k in values and values[k] != ok
        ]
        problems += [f"{tower}.{k}=True" for k in custom_block if values.get(k)]
        if values.get("block_type") not in (None, "default"):
            problems.append(f"{tower}.block_type={values['block_type']!r}")
    size = vision.get("image_size", 224)
    if isinstance(size, list | tuple) and len(set(size)) != 1:
        problems.append(f"vision_cfg.image_size={size!r} (not square)")
    if not isinstance(vision.get("layers", 12), int):
        problems.append("vision_cfg.layers is not an int (a ResNet tower)")
    if text.get("tokenizer_mode") or text.get("hf_tokenizer_name"):
        problems.append("text_cfg uses a tokenizer other than CLIP's BPE")
    if problems:
        raise ConfigError(
            f"open_clip:{source.arch} cannot be converted to transformers' CLIP without changing what it "
            f"computes ({', '.join(problems)}); textseg supports OpenCLIP ViT-CLIPs in OpenAI's layout"
        )
    return cfg


def transformers_config(cfg: dict[str, Any]):
    """transformers ``CLIPConfig`` equal to the OpenCLIP model config ``cfg``."""
    from transformers import CLIPConfig

    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    act = "quick_gelu" if cfg.get("quick_gelu", False) else "gelu"
    size = vision.get("image_size", 224)
    size = size[0] if isinstance(size, list | tuple) else size
    v_width, t_width = vision.get("width", 768), text.get("width", 512)
    vocab = text.get("vocab_size", 49408)
    return CLIPConfig(
        vision_config=dict(
            hidden_size=v_width,
            intermediate_size=int(v_width * vision.get("mlp_ratio", 4.0)),
            num_hidden_layers=vision.get("layers", 12),
            num_attention_heads=v_width // vision.get("head_width", 64),
            image_size=size,
            patch_size=vision.get("patch_size", 16),
            hidden_act=act,
            layer_norm_eps=1e-5,
        ),
        text_config=dict(
            vocab_size=vocab,
            hidden_size=t_width,
            intermediate_size=int(t_width * text.get("mlp_ratio", 4.0)),
            num_hidden_layers=text.get("layers", 12),
            num_attention_heads=text.get("heads", 8),
            max_position_embeddings=text.get("context_length", 77),
            hidden_act=act,
            layer_norm_eps=1e-5,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
        ),
        projection_dim=cfg["embed_dim"],
    )


def release_of_file(path: Path) -> tuple[str, str] | None:
    """``(arch, tag)`` of the release whose Hugging Face cache holds ``path``
    (``.../models--ORG--NAME/snapshots/...``), or None for any other file."""
    repo = next((part for part in path.resolve().parts if part.startswith("models--")), None)
    if repo is None:
        return None
    hub_repo = repo.removeprefix("models--").replace("--", "/")
    open_clip = open_clip_module()
    for arch, tag in open_clip.list_pretrained():
        hub = open_clip.get_pretrained_cfg(arch, tag).get("hf_hub", "")
        if hub.rstrip("/") == hub_repo or hub.startswith(hub_repo + "/"):
            return arch, tag
    return None


def check_activation(source: OpenCLIPSource, cfg: dict[str, Any]) -> None:
    """Refuse weights trained with the other activation than the architecture's: a release tag, or a
    file in the Hugging Face cache of a known release (any other file cannot be told apart)."""
    if source.tag is not None:
        tag, spelling = source.tag, f"open_clip:{source.arch}/{source.tag}"
        pretrained = open_clip_module().get_pretrained_cfg(source.arch, source.tag)
    else:
        release = release_of_file(source.file) if source.file is not None else None
        if release is None:
            return
        tag, spelling = release[1], f"open_clip:{source.arch}/{source.file}"
        pretrained = open_clip_module().get_pretrained_cfg(*release)
    trained, built = bool(pretrained.get("quick_gelu", False)), bool(cfg.get("quick_gelu", False))
    if trained == built:
        return
    base = source.arch.removesuffix("-quickgelu")
    other = f"{base}-quickgelu" if trained else base
    names = {True: "QuickGELU", False: "GELU"}
    raise ConfigError(
        f"{spelling}: these weights ({tag}) were trained with {names[trained]} but {source.arch} uses "
        f"{names[built]}; its features would be silently wrong: use open_clip:{other}/{tag}"
    )


def release_file(source: OpenCLIPSource) -> Path:
    """The checkpoint of a release tag: from the Hugging Face cache, else downloaded."""
    from textseg.hub import hub_file, hub_reachable

    open_clip = open_clip_module()
    pretrained = open_clip.get_pretrained_cfg(source.arch, source.tag)
    spelling = f"open_clip:{source.arch}/{source.tag}"
    fix = (
        f"Offline, download the release once, or give its file: --set clip=open_clip:{source.arch}/PATH "
        "(--weights PATH for methods built from CLIP)."
    )
    hub = pretrained.get("hf_hub", "")
    if hub:
        # open_clip's convention: "org/name/" means the default file, "org/name/file.bin" that file.
        repo, filename = os.path.split(hub)
        candidates = (
            _HUB_FILES if not filename else (str(Path(filename).with_suffix(".safetensors")), filename)
        )
        last: WeightsError | None = None
        for name in candidates:
            try:
                return hub_file(repo, name, f"OpenCLIP weights {spelling}", fix)
            except WeightsError as exc:
                last = exc
        assert last is not None
        raise last
    if not hub_reachable():
        raise WeightsError(f"cannot download {spelling}: offline. {fix}")
    return Path(open_clip.download_pretrained(pretrained))


def read_weights(source: OpenCLIPSource) -> dict[str, Tensor]:
    """The OpenCLIP state dict (OpenAI's names) of ``source``: random, a release or a file."""
    from textseg.weights import read_state_dict

    if source.random:
        print(
            f"textseg: note: open_clip:{source.arch} has random weights (seed {RANDOM_SEED}): no release tag "
            f"or file given, so its scores say nothing about the model (tags: open_clip:{source.arch}/TAG)",
            file=sys.stderr,
        )
        open_clip = open_clip_module()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = open_clip.create_model(source.arch, pretrained=None, pretrained_text=False)
        return model.state_dict()
    path = source.file if source.file is not None else release_file(source)
    state, _ignored = read_state_dict(Path(path))
    if next(iter(state)).startswith("module."):  # saved from DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_open_clip_model(spelling: str):
    """A transformers ``CLIPModel`` (eval, fp32) holding the OpenCLIP model ``spelling``, and the
    OpenCLIP architecture config (for the tokenizer's context length)."""
    from textseg.clip.loading import model_from_hf_state
    from textseg.clip.openai_format import openai_to_hf

    source = parse(spelling)
    cfg = architecture(source)
    check_activation(source, cfg)
    state = {
        k: v.float() if v.is_floating_point() else v
        for k, v in read_weights(source).items()
        if k != "attn_mask"  # the text tower's causal mask, a buffer in old checkpoints
    }
    try:
        hf_state = openai_to_hf(state)
    except WeightsError as exc:
        raise WeightsError(f"{spelling}: the weights are not an OpenCLIP {source.arch}: {exc}") from exc
    return model_from_hf_state(transformers_config(cfg), hf_state, spelling), cfg
