"""The released CLIP-DINOiser heads and the converter from the official names.

The authors' file is ``checkpoints/last.pt`` of wysoczanska/clip_dinoiser (replaced by the
ImageNet-trained heads in commit ``65817ce``, 2024-03-27, with the training code release):
``{"epoch": int, "model_state_dict": {...}}`` with exactly ``obj_proj.{weight,bias}``
(256x768x3x3, 256) and ``bkg_decoder.{weight,bias}`` (1x768x1x1, 1) (``train.py::get_model_dict``).
:func:`textseg.weights.read_state_dict` unwraps ``model_state_dict`` without unpickling anything else; :func:`convert_checkpoint` renames the keys.
The official loader uses ``strict=False`` (a wrong file loads silently); here any key that fits
nowhere, or is missing, is an error.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from textseg.api import Checkpoint, SegMethod
from textseg.errors import WeightsError

#: Official name -> ours.
OFFICIAL_NAMES = {
    "obj_proj.weight": "correlation_head.weight",
    "obj_proj.bias": "correlation_head.bias",
    "bkg_decoder.weight": "background_head.weight",
    "bkg_decoder.bias": "background_head.bias",
}

CHECKPOINTS = {
    "official": Checkpoint(
        "https://github.com/wysoczanska/clip_dinoiser/raw/main/checkpoints/last.pt",
        summary="the authors' ImageNet-trained heads (checkpoints/last.pt in the repository; official names, "
        "converted on load)",
        preset="paper",
    ),
}


def convert_checkpoint(state: Mapping[str, Tensor], method: SegMethod) -> dict[str, Tensor]:
    """The official head names -> ours (:data:`OFFICIAL_NAMES`); unknown keys are an error."""
    unknown = sorted(k for k in state if k not in OFFICIAL_NAMES)
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys are not CLIP-DINOiser head weights (obj_proj.*, bkg_decoder.*): {unknown[:10]}"
        )
    return {OFFICIAL_NAMES[k]: v for k, v in state.items()}
