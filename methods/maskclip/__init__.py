"""MaskCLIP, the training-free dense-CLIP baseline, as re-evaluated under TCL's unified protocol."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from textseg.api import Checkpoint, MethodSpec, Preset, SegMethod
from textseg.clip import backbone_state

from .config import MaskCLIPConfig
from .model import MaskCLIP

#: OpenAI's own ViT-B/16 release (TorchScript, fp16); its sha256 is the folder name in the URL.
OPENAI_VIT_B16 = (
    "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt"
)


def convert_clip_checkpoint(state: Mapping[str, Tensor], method: SegMethod) -> dict[str, Tensor]:
    """A transformers or OpenAI CLIP state dict -> this method's keys (MaskCLIP has no weights of its own)."""
    return {f"clip.{key}": value for key, value in backbone_state(state).items()}


SPEC = MethodSpec(
    name="maskclip",
    summary="MaskCLIP: CLIP whose last block attends each token to itself; training-free, no key smoothing",
    paper="Zhou, Loy, Dai. Extract Free Dense Labels from CLIP. ECCV 2022. arXiv:2112.01071",
    config_cls=MaskCLIPConfig,
    build=MaskCLIP,
    presets={
        "paper": Preset(
            "MaskCLIP as re-evaluated by TCL (CVPR 2023) under the unified protocol, CLIP ViT-B/16",
            model={},
            protocol="tcl",
        ),
        "tiny": Preset("a tiny random CLIP, for tests", model={"clip": "tiny"}, protocol="tcl"),
    },
    checkpoints={
        "openai": Checkpoint(
            OPENAI_VIT_B16,
            sha256="5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
            summary="OpenAI's original CLIP ViT-B/16 file (the hub weights hold the same values)",
        )
    },
    convert_checkpoint=convert_clip_checkpoint,
    license="Apache-2.0 (official MaskCLIP code); CLIP weights: MIT (OpenAI)",
)

__all__ = ["SPEC", "MaskCLIP", "MaskCLIPConfig"]
