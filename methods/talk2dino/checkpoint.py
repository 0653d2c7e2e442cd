"""Talk2DINO's released projection weights and the converter from their naming.

The repository ships the projection alone (``weights/<name>.pth``, a plain state dict of
``ProjectionLayer``): ``linear_layer.{weight,bias}`` and ``hidden_layers.<i>.{weight,bias}``; files
from older code name the hidden layer ``linear_layer2.*``, which the official ``load_state_dict``
renames to ``hidden_layers.0.*``. :func:`convert_checkpoint` does the same and puts everything
under ``proj.``; the frozen DINOv2 and CLIP come from the ``vfm`` and ``clip`` settings. The file is
read by :func:`textseg.weights.read_state_dict` (restricted unpickling: nothing in it runs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from textseg.api import Checkpoint, SegMethod
from textseg.errors import WeightsError
from textseg.methods.tcl.checkpoint import key_listing

_RAW = "https://github.com/lorebianchi98/Talk2DINO/raw/main/weights/"

CHECKPOINTS = {
    "official": Checkpoint(
        _RAW + "vitb_mlp_infonce.pth",
        sha256="5f6efcc520f22916ecf3dfdfb01d6f57e701c1c2e1feda71a80d89e3cd752f0f",
        summary="the authors' ViT-B projection (DINOv2-B/14-reg, CLIP ViT-B/16), official naming",
        preset="paper",
    ),
    "official-vitl": Checkpoint(
        _RAW + "vitl_mlp_infonce.pth",
        summary="the authors' ViT-L projection (DINOv2-L/14-reg, CLIP ViT-B/16), official naming",
        preset="vitl",
    ),
}

_KEY = re.compile(r"(?P<layer>linear_layer|linear_layer2|hidden_layers\.\d+)\.(?P<part>weight|bias)")


def convert_checkpoint(state: Mapping[str, Tensor], method: SegMethod) -> dict[str, Tensor]:
    """An official ``ProjectionLayer`` state dict -> ``proj.*`` (``linear_layer2`` -> ``hidden_layers.0``)."""
    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        match = _KEY.fullmatch(key)
        if match is None:
            unknown.append(key)
            continue
        layer = "hidden_layers.0" if match["layer"] == "linear_layer2" else match["layer"]
        out[f"proj.{layer}.{match['part']}"] = value
    if unknown:
        raise WeightsError(
            f"{len(unknown)} keys of the official Talk2DINO projection fit nowhere (it holds linear_layer.* "
            f"and hidden_layers.<i>.*):{key_listing(sorted(unknown))}"
        )
    return out
