"""The released CoDe checkpoint and the converter from the official naming.

The release (the official README's "official checkpoint") is a Google Drive file, which textseg's
downloader cannot fetch (Drive answers large files with a confirmation page, not the file).
``--weights official`` therefore looks for it where a manual download should go and, when it is
not there, says where to get it and where to put it; any local path works too.

The file is a training checkpoint (``{"model", "optimizer", "lr_scheduler", "scaler", "step",
"config", ...}``, ``config`` a pickled OmegaConf object): :func:`textseg.weights.read_state_dict`
reads its tensors without unpickling anything else and takes ``model``. Official keys
(``ImageTextCoDecomposition.state_dict()``, 814 for ViT-B/16) and where they go:

* ``masker.*`` — TCL's layout with one convolution per stage: TCL's
  :func:`~textseg.methods.tcl.checkpoint.convert_masker`;
* ``clip_text_encoder.prompt_learner.ctx`` -> ``noun_prompt.ctx``;
  ``clip_text_encoder.prompt_learner.token_prefix`` (a buffer: the start token's embedding,
  recomputed here from the frozen CLIP) is ignored;
* ``text_decoder.transformer.resblocks.<i>.*`` (OpenAI block names, packed ``in_proj``) ->
  ``text_segmenter.layers.<i>.*``; ``text_mask_w`` / ``text_mask_b`` -> ``text_segmenter.w`` / ``.b``;
* ``bg_text`` ``[77, 1, W]`` -> ``word_prompt`` ``[77, W]``; ``learnable_image_bg`` -> ``region_prompt``;
* ``tcli_loss`` / ``tclf_loss`` / ``hcl_loss`` ``.logit_scale`` -> ``image_loss`` / ``feature_loss`` /
  ``region_word_loss`` (only training reads them; missing ones keep their initial values, as the
  official loader allows);
* the frozen CLIP, which the official model holds four times over (``clip_image_encoder.*``,
  ``clip_text_encoder.prompt_learner.clip_model.*``, ``clip_text_encoder.text_encoder.*`` (shared
  with the previous one) and ``frozen_clip.*``), all loaded from the same OpenAI weights and never
  trained. textseg holds one: it is **loaded** from the copies the official inference reads (the
  image encoder and the prompt learner's text model; ``logit_scale`` from ``frozen_clip``), and every
  other copy must equal it tensor for tensor (it does unless the file was edited; a difference is an
  error listing the keys, since one CLIP cannot hold two). Copies may be absent altogether (then
  the CLIP of the preset stays), but not partly present;
* ``pamr.*`` (fixed kernels) is ignored.

A text segmenter with an output projection (only when the text width differs from the joint
embedding size, never for ViT-B/16) keeps its own: the official architecture has none.

Any other key fits nowhere and is an error listing those keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from textseg.api import Checkpoint, SegMethod
from textseg.clip import backbone_state
from textseg.clip.openai_format import openai_block_to_hf
from textseg.errors import WeightsError
from textseg.methods.tcl.checkpoint import CLIP_IMAGE_ENCODER, convert_masker, key_listing

DRIVE_URL = "https://drive.google.com/file/d/1CpaaZswztgVulpTdVl_eiBRaIeoVAGJ2/view?usp=sharing"

OFFICIAL = Checkpoint(
    DRIVE_URL,
    sha256=None,  # not published, and the file could not be fetched when this was written
    summary="the authors' release (Google Drive, linked from the official README; a full training "
    "checkpoint: the model with its frozen CLIP copies, optimizer state and a pickled config)",
    preset="paper",
    manual_filename="checkpoint.pth",
)

_SIMPLE = {
    "clip_text_encoder.prompt_learner.ctx": "noun_prompt.ctx",
    "text_mask_w": "text_segmenter.w",
    "text_mask_b": "text_segmenter.b",
    "learnable_image_bg": "region_prompt",
}
#: Trained only, and whitelisted when missing by the official loader.
_LOSSES = {
    "tcli_loss.logit_scale": "image_loss.logit_scale",
    "tclf_loss.logit_scale": "feature_loss.logit_scale",
    "hcl_loss.logit_scale": "region_word_loss.logit_scale",
}
_IGNORED = ("pamr.", "clip_text_encoder.prompt_learner.token_prefix")
_TEXT_DECODER = re.compile(r"text_decoder\.transformer\.resblocks\.(?P<index>\d+)\.(?P<leaf>.+)")
#: The official CLIP copies -> OpenAI names, in the order they define the one CLIP kept here.
_CLIP_COPIES = (
    *CLIP_IMAGE_ENCODER,
    ("clip_text_encoder.prompt_learner.clip_model.", ""),
    ("clip_text_encoder.text_encoder.", ""),
    ("frozen_clip.", ""),
)


def merge_clip_copies(copies: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Official CLIP-copy keys -> one OpenAI-format state dict; the first copy (in
    :data:`_CLIP_COPIES` order) of each tensor wins and every later copy must equal it."""
    merged: dict[str, Tensor] = {}
    source: dict[str, str] = {}
    differ: list[str] = []
    for prefix, openai in _CLIP_COPIES:
        for key in sorted(k for k in copies if k.startswith(prefix)):
            name = openai + key[len(prefix) :]
            if name not in merged:
                merged[name], source[name] = copies[key], key
            elif not torch.equal(merged[name], copies[key]):
                differ.append(f"{key} != {source[name]}")
    if differ:
        raise WeightsError(
            f"the checkpoint's copies of the frozen CLIP differ in {len(differ)} tensors; textseg holds "
            f"one CLIP, so it cannot load them:{key_listing(differ)}"
        )
    return merged


def convert_checkpoint(state: Mapping[str, Tensor], method: SegMethod) -> dict[str, Tensor]:
    """An official CoDe state dict -> this implementation's keys (see the module docstring)."""
    layers = len(method.clip.vision.layers)
    out, others = convert_masker(state, layers)
    decoder_blocks: dict[str, dict[str, Tensor]] = {}
    copies: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key in others:
        value = state[key]
        if key.startswith(_IGNORED):
            continue
        if key in _SIMPLE:
            out[_SIMPLE[key]] = value
        elif key in _LOSSES:
            out[_LOSSES[key]] = value
        elif key == "bg_text":
            out["word_prompt"] = value.reshape(value.shape[0], value.shape[-1])
        elif match := _TEXT_DECODER.fullmatch(key):
            decoder_blocks.setdefault(match["index"], {})[match["leaf"]] = value
        elif key.startswith(tuple(prefix for prefix, _ in _CLIP_COPIES)):
            copies[key] = value
        else:
            unknown.append(key)
    for index, block in decoder_blocks.items():
        converted, not_block = openai_block_to_hf(block)
        out.update({f"text_segmenter.layers.{index}.{name}": v for name, v in converted.items()})
        unknown += [f"text_decoder.transformer.resblocks.{index}.{name}" for name in not_block]
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys fit nowhere in CoDe's official naming (this CoDe's CLIP has "
            f"{layers} vision blocks, so the copied block is "
            f"'masker.image_encoder.backbone.transformer.resblocks.{layers - 1}.*'):{key_listing(sorted(unknown))}"
        )
    own = method.state_dict()
    if copies:
        clip = merge_clip_copies(copies)
        clip.setdefault("logit_scale", own["clip.logit_scale"])
        essential = [k for k in ("visual.conv1.weight", "token_embedding.weight") if k not in clip]
        converted = {} if essential else {f"clip.{k}": v for k, v in backbone_state(clip).items()}
        missing = essential or sorted(k for k in own if k.startswith("clip.") and k not in converted)
        if missing:
            raise WeightsError(
                "the checkpoint holds only part of the frozen CLIP (keep all of clip_image_encoder.*, "
                f"clip_text_encoder.* and frozen_clip.*, or none); missing:{key_listing(missing)}"
            )
        out.update(converted)
    out.update({name: own[name] for name in _LOSSES.values() if name not in out})
    if "text_segmenter.projection.weight" in own:  # no official counterpart (see text_segmenter.py)
        out.setdefault("text_segmenter.projection.weight", own["text_segmenter.projection.weight"])
    return out
