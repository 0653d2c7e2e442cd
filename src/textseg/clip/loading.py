"""Loading CLIP through transformers, from any of the places its weights live.

``source`` is one of

* a hub id (``openai/clip-vit-base-patch16``, the weights every method here uses);
* a local folder written by ``save_pretrained`` (a downloaded hub snapshot works offline);
* an OpenAI-format file (``ViT-B-16.pt``, TorchScript or a plain state dict), converted exactly to
  transformers' layout (:mod:`textseg.clip.openai_format`); OpenAI's files hold no tokenizer, so it
  comes from ``tokenizer`` (a hub id, default :data:`DEFAULT_CLIP`, or a folder for offline use);
* ``tiny`` — the offline test model of :mod:`textseg.testing.tiny_clip`, built into the cache;
* a checkpoint folder of the ``clip`` method (``textseg train --method clip``), which holds its
  trained CLIP in a ``clip/`` subfolder (:data:`EXPORTED_CLIP`).

Weights are returned in float32 (OpenAI's released files are fp16; TCL also upcasts on CPU).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPModel, CLIPTokenizer

from textseg.clip.openai_format import config_from_openai, openai_to_hf, read_openai_file
from textseg.errors import WeightsError

DEFAULT_CLIP = "openai/clip-vit-base-patch16"
#: The subfolder where a training checkpoint of the ``clip`` method keeps its CLIP.
EXPORTED_CLIP = "clip"


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


def _from_pretrained(cls: type, source: str, what: str, hint: str):
    resolved = resolve_clip_source(source)
    try:
        return cls.from_pretrained(resolved)
    except OSError as exc:
        where = "folder" if Path(resolved).exists() else "hub id (or folder)"
        raise WeightsError(f"cannot load {what} from {where} {source!r}: {exc}. {hint}") from exc


def load_tokenizer(source: str) -> CLIPTokenizer:
    """CLIP's tokenizer from a hub id or folder (``tiny``: the test model's)."""
    hint = "Offline, pass a folder that holds a CLIP tokenizer (e.g. a saved openai/clip-vit-base-patch16)."
    return _from_pretrained(CLIPTokenizer, source, "the CLIP tokenizer", hint)


def load_openai_clip(path: str | Path) -> CLIPModel:
    """A transformers ``CLIPModel`` holding the weights of an OpenAI-format file."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_openai_file(path).items()}
    model = CLIPModel(config_from_openai(state))
    result = model.load_state_dict(openai_to_hf(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: the converted weights do not fill the model (missing {result.missing_keys}, "
            f"unexpected {result.unexpected_keys})"
        )
    return model.eval()


def load_clip(source: str = DEFAULT_CLIP, tokenizer: str | None = None) -> tuple[CLIPModel, CLIPTokenizer]:
    """The CLIP model (eval mode, fp32) and its tokenizer.

    ``tokenizer`` overrides where the tokenizer comes from (default: the same folder or hub id,
    or :data:`DEFAULT_CLIP` for an OpenAI file).
    """
    resolved = resolve_clip_source(source)
    if Path(resolved).is_file():
        return load_openai_clip(resolved), load_tokenizer(tokenizer or DEFAULT_CLIP)
    hint = "Pass a hub id, a folder written by save_pretrained, an OpenAI-format .pt file, or 'tiny'."
    model = _from_pretrained(CLIPModel, resolved, "CLIP", hint)
    return model.to(torch.float32).eval(), load_tokenizer(tokenizer or resolved)
