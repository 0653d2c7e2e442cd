"""TCL's official checkpoint naming (kakaobrain/tcl), built from a textseg module tree rather than
by the converter under test; shared by the TCL and CoDe checkpoint tests (CoDe's ``masker.*`` keys
are TCL's)."""

from __future__ import annotations

import torch

from textseg.clip.loading import load_clip
from textseg.clip.openai_format import hf_to_openai
from textseg.methods.tcl import TCL


def official_state(method: TCL, *, losses: bool = True, clip: bool = False) -> dict[str, torch.Tensor]:
    """``method``'s weights in kakaobrain/tcl's naming, built from the module tree (not the converter)."""
    index = len(method.clip.vision.layers) - 1
    block = {
        f"vision_model.encoder.layers.{index}.{name}": p.detach().clone()
        for name, p in method.grounder.block.named_parameters()
    }
    out = {
        key.replace("visual.transformer.", "masker.image_encoder.backbone.transformer."): value
        for key, value in hf_to_openai(block).items()
    }
    for i, stage in enumerate(method.grounder.decoder.stages):
        for j, conv in enumerate(stage.convs):
            prefix = f"masker.image_encoder.decoder.decoder.net.{i}.{'conv' if j == 0 else 'conv2'}."
            out[prefix + "norm.weight"] = conv.norm.weight.detach().clone()
            out[prefix + "norm.bias"] = conv.norm.bias.detach().clone()
            out[prefix + "conv.weight"] = conv.conv.weight.detach().clone()
            out[prefix + "conv.bias"] = conv.conv.bias.detach().clone()
            out[prefix + "gate.gate"] = conv.gate.gate.detach().clone()
    proj = "masker.image_encoder.decoder.image_proj."
    out[proj + "proj"] = method.grounder.projection.weight.detach().t().clone()  # [C, D], used as x @ proj
    out[proj + "ln.weight"] = method.grounder.post_layernorm.weight.detach().clone()
    out[proj + "ln.bias"] = method.grounder.post_layernorm.bias.detach().clone()
    out["masker.sim2mask.w"] = method.sim2mask.w.detach().clone()
    out["masker.sim2mask.b"] = method.sim2mask.b.detach().clone()
    if losses:
        out["tcli_loss.logit_scale"] = method.image_loss.logit_scale.detach().clone()
        out["tclf_loss.logit_scale"] = method.feature_loss.logit_scale.detach().clone()
    out["pamr.aff_x.kernel"] = torch.zeros(8, 1, 3, 3)  # registered lazily by the official PAMR
    if clip:
        openai = tiny_clip_openai()
        out.update(official_image_encoder(openai))
        out.update(
            {f"clip_text_encoder.{k}": v for k, v in openai.items() if not k.startswith(("visual.", "logit"))}
        )
    return out


def tiny_clip_openai() -> dict[str, torch.Tensor]:
    """The tiny CLIP's weights in OpenAI's names."""
    return hf_to_openai(load_clip("tiny")[0].state_dict())


def official_image_encoder(openai: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The frozen image tower of an OpenAI-named CLIP as TCL's and CoDe's ``clip_image_encoder.*``
    (``ln_post`` and ``proj`` moved into ``clip_proj``)."""
    out = {}
    for key, value in openai.items():
        if key.startswith("visual.ln_post."):
            out["clip_image_encoder.clip_proj.ln." + key.removeprefix("visual.ln_post.")] = value
        elif key == "visual.proj":
            out["clip_image_encoder.clip_proj.proj"] = value
        elif key.startswith("visual."):
            out["clip_image_encoder.clip_visual." + key.removeprefix("visual.")] = value
    return out
