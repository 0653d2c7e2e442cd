"""The released TCL checkpoint and the converter from the official naming (kakaobrain/tcl).

Official keys (``TCL.state_dict()``, ViT-B/16; see the method README for the full table):

* ``masker.image_encoder.backbone.transformer.resblocks.<L-1>.*`` — the copied last block in OpenAI
  names, ``L-1`` being the last block index of the loaded CLIP (11 for ViT-B/16);
* ``masker.image_encoder.decoder.decoder.net.<i>.{conv,conv2}.{norm.weight,norm.bias,conv.weight,
  conv.bias,gate.gate}`` — decoder stage ``i``, first / second gated convolution;
* ``masker.image_encoder.decoder.image_proj.{ln.weight,ln.bias,proj}`` — ``proj`` is ``[C, D]`` used as
  ``x @ proj`` (transposed for our ``nn.Linear``);
* ``masker.sim2mask.{w,b}``;
* optional: ``tcli_loss.logit_scale`` / ``tclf_loss.logit_scale`` (missing keys keep our initial
  values: they only matter for training), ``clip_image_encoder.*`` / ``clip_text_encoder.*`` (the
  frozen CLIP; loaded if complete), ``pamr.*`` (buffers PAMR registers lazily; ignored).

Anything else fits nowhere and is an error listing those keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from textseg.api import Checkpoint, SegMethod
from textseg.clip import backbone_state
from textseg.clip.openai_format import is_openai_state_dict, openai_block_to_hf
from textseg.errors import WeightsError

RELEASE_URL = "https://github.com/kakaobrain/tcl/releases/download/v1.0.0/tcl.pth"

OFFICIAL = Checkpoint(
    RELEASE_URL,
    sha256=None,  # not published, and the file could not be fetched when this was written
    summary="the authors' release (learned parameters only; CLIP ViT-B/16 comes from OpenAI)",
    preset="paper",
)

_BLOCK = "masker.image_encoder.backbone.transformer.resblocks.{index}."
_DECODER = re.compile(
    r"masker\.image_encoder\.decoder\.decoder\.net\.(?P<stage>\d+)\.(?P<conv>conv2?)\."
    r"(?P<leaf>norm\.weight|norm\.bias|conv\.weight|conv\.bias|gate\.gate)"
)
_MASKER = {
    "masker.image_encoder.decoder.image_proj.ln.weight": "grounder.post_layernorm.weight",
    "masker.image_encoder.decoder.image_proj.ln.bias": "grounder.post_layernorm.bias",
    "masker.sim2mask.w": "sim2mask.w",
    "masker.sim2mask.b": "sim2mask.b",
}
#: Trained only; a release may leave them out (then our initial values stay).
_LOSSES = {
    "tcli_loss.logit_scale": "image_loss.logit_scale",
    "tclf_loss.logit_scale": "feature_loss.logit_scale",
}
_PROJ = "masker.image_encoder.decoder.image_proj.proj"
#: The frozen image encoder's official prefixes (TCL's and CoDe's) -> OpenAI CLIP names.
CLIP_IMAGE_ENCODER = (
    ("clip_image_encoder.clip_visual.", "visual."),
    ("clip_image_encoder.clip_proj.ln.", "visual.ln_post."),
    ("clip_image_encoder.clip_proj.proj", "visual.proj"),
)
#: Official frozen-CLIP prefixes -> OpenAI CLIP names.
_CLIP = (*CLIP_IMAGE_ENCODER, ("clip_text_encoder.", ""))


def key_listing(keys: list[str], limit: int = 25) -> str:
    """Up to ``limit`` keys, one per indented line, for error messages."""
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "\n  " + "\n  ".join(keys[:limit]) + more


def convert_masker(state: Mapping[str, Tensor], vision_layers: int) -> tuple[dict[str, Tensor], list[str]]:
    """The official ``masker.*`` keys -> ``grounder.*`` / ``sim2mask.*`` (TCL's and CoDe's layout);
    the keys that are not the masker's are returned unconverted for the caller to place.

    ``vision_layers`` is the number of blocks of the loaded CLIP: the copied block is the last one.
    Keys that start like the copied block but are not block weights are left over too.
    """
    block_prefix = _BLOCK.format(index=vision_layers - 1)
    out: dict[str, Tensor] = {}
    block: dict[str, Tensor] = {}
    others: list[str] = []
    for key, value in state.items():
        if key.startswith(block_prefix):
            block[key[len(block_prefix) :]] = value
        elif match := _DECODER.fullmatch(key):
            branch = 0 if match["conv"] == "conv" else 1
            out[f"grounder.decoder.stages.{match['stage']}.convs.{branch}.{match['leaf']}"] = value
        elif key == _PROJ:
            out["grounder.projection.weight"] = value.t().contiguous()
        elif key in _MASKER:
            out[_MASKER[key]] = value
        else:
            others.append(key)
    converted, not_block = openai_block_to_hf(block)
    out.update({f"grounder.block.{name}": value for name, value in converted.items()})
    return out, others + [block_prefix + name for name in not_block]


def convert_checkpoint(state: Mapping[str, Tensor], method: SegMethod) -> dict[str, Tensor]:
    """An official TCL state dict -> this implementation's keys (see the module docstring)."""
    layers = len(method.clip.vision.layers)
    out, others = convert_masker(state, layers)
    clip: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key in others:
        if key.startswith("pamr."):
            continue
        if key in _LOSSES:
            out[_LOSSES[key]] = state[key]
        elif prefix := next(((o, n) for o, n in _CLIP if key.startswith(o)), None):
            clip[prefix[1] + key[len(prefix[0]) :]] = state[key]
        else:
            unknown.append(key)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys fit nowhere in TCL's official naming (this TCL's CLIP has "
            f"{layers} vision blocks, so the copied block is '{_BLOCK.format(index=layers - 1)}*'):"
            f"{key_listing(sorted(unknown))}"
        )
    if clip:
        if not is_openai_state_dict(clip):
            raise WeightsError(
                "the checkpoint holds only part of the frozen CLIP (clip_image_encoder.* and "
                "clip_text_encoder.* must both be complete, or both absent)"
            )
        out.update({f"clip.{name}": value for name, value in backbone_state(clip).items()})
    own = method.state_dict()
    out.update({name: own[name] for name in _LOSSES.values() if name not in out})
    return out
