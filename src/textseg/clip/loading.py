"""Loading CLIP into transformers' ``CLIPModel``, from any of the places its weights live.

``source`` (the ``clip`` setting of every CLIP method) is one of

* a hub id (``openai/clip-vit-base-patch16``, the weights every method here uses by default);
  offline, it is read from the Hugging Face cache, and one that is not cached fails at once
  (:mod:`textseg.hub`) with the settings that take local files;
* a local folder written by ``save_pretrained`` (a downloaded hub snapshot works offline);
* an OpenAI-format file (``ViT-B-16.pt``, TorchScript or a plain state dict), converted exactly to
  transformers' layout (:mod:`textseg.clip.openai_format`);
* ``open_clip:ARCH`` or ``open_clip:ARCH/TAG`` or ``open_clip:ARCH/FILE`` — an OpenCLIP model,
  converted the same way (:mod:`textseg.clip.openclip`; needs ``open_clip_torch``);
* ``tiny`` — the offline test model of :mod:`textseg.testing.tiny_clip`, built into the cache;
* a checkpoint folder of the ``clip`` method (``textseg train --method clip``), which holds its
  trained CLIP in a ``clip/`` subfolder (:data:`EXPORTED_CLIP`).

**Tokenizer.** A folder or hub id carries its tokenizer. OpenAI files and OpenCLIP checkpoints do
not: theirs is built offline from OpenAI's BPE merges file ``bpe_simple_vocab_16e6.txt.gz``, taken
from the installed ``open_clip_torch`` (or OpenAI's ``clip``) package (:mod:`textseg.clip.bpe`); if
neither is installed, the tokenizer of :data:`DEFAULT_CLIP` on the hub (or its cache) is used. The
``tokenizer`` setting overrides all of this with a folder, a hub id or the path of the merges file.
Every tokenizer is checked against the text tower (:func:`textseg.clip.bpe.check_tokenizer`): one
that does not fit is refused, never used.

Weights are returned in float32 (OpenAI's released files are fp16; TCL also upcasts on CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor
from transformers import CLIPModel, CLIPTokenizer

from textseg.clip.bpe import check_tokenizer, find_bpe_file, openai_tokenizer
from textseg.clip.openai_format import config_from_openai, openai_to_hf, read_openai_file
from textseg.errors import WeightsError
from textseg.hub import clause, hub_kwargs, looks_like_hub_id

DEFAULT_CLIP = "openai/clip-vit-base-patch16"
#: OpenAI's CLIP ViT-L/14 (224 px) on the hub: the ViT-L/14 of the papers' backbone comparisons.
OPENAI_VIT_L14 = "openai/clip-vit-large-patch14"
#: The subfolder where a training checkpoint of the ``clip`` method keeps its CLIP.
EXPORTED_CLIP = "clip"
#: What to do when CLIP weights are not available, for messages.
LOCAL_CLIP_FIX = (
    "Give local weights with --set clip=FOLDER_OR_FILE (a transformers CLIP folder, an OpenAI-format .pt "
    "file or open_clip:ARCH/FILE) or --weights FILE."
)


def resolve_clip_source(source: str) -> str:
    """A path or hub id that ``from_pretrained`` understands (``tiny`` -> its cached folder; a
    checkpoint folder without ``config.json`` -> its ``clip/`` subfolder, if that holds one)."""
    if source == "tiny":
        from textseg.testing.tiny_clip import ensure_tiny_clip

        return str(ensure_tiny_clip())
    folder = Path(source).expanduser()
    exported = folder / EXPORTED_CLIP
    if not (folder / "config.json").is_file() and (exported / "config.json").is_file():
        return str(exported)
    return source


def _from_pretrained(cls: type, source: str, what: str, hint: str, filename: str = "config.json"):
    resolved = resolve_clip_source(source)
    kwargs = hub_kwargs(resolved, what, hint, filename) if looks_like_hub_id(resolved) else {}
    try:
        return cls.from_pretrained(resolved, **kwargs)
    except (OSError, ValueError) as exc:
        where = "folder" if Path(resolved).exists() else "hub id (or folder)"
        raise WeightsError(f"cannot load {what} from {where} {source!r}: {clause(exc)}. {hint}") from exc


def load_tokenizer(source: str) -> CLIPTokenizer:
    """CLIP's tokenizer from a hub id or folder (``tiny``: the test model's), or built from the path
    of OpenAI's BPE merges file (``bpe_simple_vocab_16e6.txt.gz``)."""
    if Path(source).expanduser().is_file():
        return openai_tokenizer(source)
    hint = "Offline, give a folder that holds a CLIP tokenizer or the path of bpe_simple_vocab_16e6.txt.gz."
    return _from_pretrained(CLIPTokenizer, source, "the CLIP tokenizer", hint, "vocab.json")


def default_bpe_tokenizer(context_length: int = 77) -> CLIPTokenizer:
    """The tokenizer of weights that carry none: OpenAI's merges from an installed package, else the
    tokenizer of :data:`DEFAULT_CLIP` (hub or cache)."""
    try:
        path = find_bpe_file()
    except WeightsError as missing:
        try:
            return load_tokenizer(DEFAULT_CLIP)
        except WeightsError:
            raise missing from None
    return openai_tokenizer(path, context_length)


def model_from_hf_state(config, state: Mapping[str, Tensor], origin: str) -> CLIPModel:
    """A ``CLIPModel`` of ``config`` holding ``state`` (transformers names), without initialising
    random weights first; every weight must be given and fit."""
    with torch.device("meta"):
        model = CLIPModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected.keys() & state.keys() if tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in sorted(wrong)[:5]]
        raise WeightsError(
            f"{origin}: the weights do not fit the architecture (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shapes {shapes})"
        )
    model.load_state_dict(state, assign=True)
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:  # non-persistent index buffers (position_ids): rebuilt, not loaded
            if not name.endswith("position_ids"):
                raise WeightsError(f"{origin}: {name} is not in the weights")
            module_name, _, attr = name.rpartition(".")
            module = model.get_submodule(module_name)
            module.register_buffer(
                attr, torch.arange(buffer.shape[-1]).expand(buffer.shape), persistent=False
            )
    return model.eval()


def load_openai_clip(path: str | Path) -> CLIPModel:
    """A transformers ``CLIPModel`` holding the weights of an OpenAI-format file."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_openai_file(path).items()}
    return model_from_hf_state(config_from_openai(state), openai_to_hf(state), str(path))


def load_clip(source: str = DEFAULT_CLIP, tokenizer: str | None = None) -> tuple[CLIPModel, CLIPTokenizer]:
    """The CLIP model (eval mode, fp32) and its tokenizer, checked to fit each other.

    ``tokenizer`` overrides where the tokenizer comes from (see the module docstring).
    """
    from textseg.clip.openclip import is_open_clip, load_open_clip_model

    if is_open_clip(source):
        model, cfg = load_open_clip_model(source)
        context = cfg["text_cfg"].get("context_length", 77)
        tok = load_tokenizer(tokenizer) if tokenizer else default_bpe_tokenizer(context)
    else:
        resolved = resolve_clip_source(source)
        if Path(resolved).is_file():
            model = load_openai_clip(resolved)
            tok = load_tokenizer(tokenizer) if tokenizer else default_bpe_tokenizer()
        else:
            hint = LOCAL_CLIP_FIX + " Also accepted: a hub id, open_clip:ARCH[/TAG], or 'tiny'."
            model = _from_pretrained(CLIPModel, resolved, "CLIP", hint).to(torch.float32).eval()
            tok = load_tokenizer(tokenizer or resolved)
    rows = model.text_model.embeddings.token_embedding.num_embeddings
    check_tokenizer(tok, rows, tokenizer or source)
    return model, tok
