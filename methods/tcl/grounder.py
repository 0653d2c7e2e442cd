"""The grounder (TCL's ``Masker`` image side): a trainable copy of CLIP's last vision block, the
gated decoder and a trainable copy of ``post_layernorm`` + projection.

Input: the tokens entering CLIP's last block (the output of block ``L - 2``, computed by the
frozen tower). The copied block runs in TCL's ``self`` variant (diagonal attention; residual and
MLP kept), the class token is dropped, the patch tokens become a ``[B, C, h, w]`` map (without
``post_layernorm``: TCL's copy has none), the decoder upsamples it by 4, and the projection copy
maps every pixel to the joint space, giving the unnormalised ``[B, D, 4h, 4w]`` embedding ``V^s``.
CoDe's image segmenter is the same module with ``double=False``.
"""

from __future__ import annotations

import copy

from torch import Tensor, nn

from textseg.clip import VisionTower, get_last_block
from textseg.clip.last_block import LastBlock
from textseg.methods.tcl.decoder import GDecoder


class Grounder(nn.Module):
    """``block`` (a ``CLIPEncoderLayer`` copy), ``decoder`` (:class:`GDecoder`), ``post_layernorm`` and
    ``projection`` (copies of CLIP's). The copies start from the frozen tower's weights."""

    def __init__(
        self,
        vision: VisionTower,
        layers: int = 2,
        double: bool = True,
        kernel: int = 3,
        last_block: str | LastBlock = "self",
    ) -> None:
        super().__init__()
        self.block = copy.deepcopy(vision.last_layer)
        self.decoder = GDecoder(vision.width, layers, double, kernel)
        self.post_layernorm = copy.deepcopy(vision.transformer.post_layernorm)
        self.projection = copy.deepcopy(vision.projection)
        self.last_block = last_block
        self.requires_grad_(True)  # the copies come from a frozen tower

    @property
    def stride(self) -> int:
        """How much finer the output map is than the patch grid."""
        return self.decoder.stride

    def features(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """The decoded map before the projection ``[B, C, 4h, 4w]``."""
        x = get_last_block(self.last_block)(self.block, tokens, grid)
        return self.decoder(VisionTower.to_map(x, grid))

    def project(self, x: Tensor) -> Tensor:
        """``post_layernorm`` + projection on every pixel of ``[B, C, H, W]`` -> ``[B, D, H, W]``."""
        x = self.projection(self.post_layernorm(x.permute(0, 2, 3, 1)))
        return x.permute(0, 3, 1, 2)

    def forward(self, tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """``V^s``: the unnormalised per-pixel embedding ``[B, D, 4h, 4w]`` from the last block's input."""
        return self.project(self.features(tokens, grid))
