"""TCL's grounding decoder (``GDecoder``, kakaobrain/tcl ``models/tcl/{decoders,modules}.py``).

Each stage upsamples by 2 (nearest) and then adds one or two gated residual convolutions; each
convolution is pre-activation, ``tanh(gate) * Conv(GELU(LayerNorm2d(x)))``, with the scalar gate
initialised to 0. At initialisation every residual branch is therefore zero and the decoder is
exactly nearest-neighbour upsampling by ``2 ** stages``: the grounder starts from the frozen CLIP
features. TCL uses 2 stages with 2 convolutions each (``double=True``); CoDe 2 stages with one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, H, W]`` map (eps 1e-5, affine)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Gate(nn.Module):
    """``tanh(gate) * x`` with a learnable 0-dim ``gate`` (0 at init: the branch starts switched off)."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.gate) * x


class GatedConv(nn.Module):
    """One residual branch: LayerNorm2d -> GELU (erf) -> Conv ``k x k`` (bias, zero padding) -> Gate."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.norm = LayerNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, kernel, padding=kernel // 2)
        self.gate = Gate()

    def forward(self, x: Tensor) -> Tensor:
        return self.gate(self.conv(F.gelu(self.norm(x))))


class DecoderStage(nn.Module):
    """Nearest x2 upsampling, then ``x = x + branch(x)`` for each branch in turn (``ResConv``)."""

    def __init__(self, channels: int, kernel: int = 3, branches: int = 2) -> None:
        super().__init__()
        self.convs = nn.ModuleList(GatedConv(channels, kernel) for _ in range(branches))

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv in self.convs:
            x = x + conv(x)
        return x


class GDecoder(nn.Module):
    """``layers`` stages (each x2), with two gated convolutions per stage if ``double`` else one."""

    def __init__(self, channels: int, layers: int = 2, double: bool = True, kernel: int = 3) -> None:
        super().__init__()
        self.stages = nn.ModuleList(DecoderStage(channels, kernel, 2 if double else 1) for _ in range(layers))

    @property
    def stride(self) -> int:
        """How much the decoder upsamples its input."""
        return 2 ** len(self.stages)

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x
