"""CLIP's image tower as building blocks for dense methods.

A dense method runs the first ``L - 1`` blocks unchanged, the last block in a named variant
(:mod:`textseg.clip.last_block`), then ``post_layernorm`` and the projection on every patch token.
TCL and CoDe need the pieces separately (the tokens entering the last block feed their masker,
which holds a trainable copy of that block), so the tower exposes each step:

* :meth:`VisionTower.embed` — patches + class token + interpolated positions + ``pre_layrnorm``;
* :meth:`VisionTower.tokens_before_last` — the input of the last block (after block ``L - 2``);
* :meth:`VisionTower.block_outputs` — the embedded tokens and every block's output (SC-CLIP's
  multi-level features, ResCLIP's middle-block attention via :func:`textseg.clip.blocks.attention_map`);
* :meth:`VisionTower.run_last` — the last block (or a copy of it) in a variant;
* :meth:`VisionTower.project` — ``post_layernorm`` + projection on any tokens;
* :meth:`VisionTower.to_map` — patch tokens as a ``[B, C, h, w]`` map;
* :meth:`VisionTower.dense` — all of the above in one call;
* :meth:`VisionTower.cosines` — cosine of every patch feature with each text embedding;
* :meth:`VisionTower.global_embedding` — the standard CLS image embedding (normal attention).

Positions are interpolated per call (``positions="size"`` or ``"scale"``, see
:mod:`textseg.clip.positions`). Inputs must already be normalised and at least one patch in size;
sides that are not multiples of the patch size are floored by the patch convolution, so pad first
(:mod:`textseg.clip.padding`) where that matters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.clip.blocks import standard_layer
from textseg.clip.last_block import LastBlock, get_last_block
from textseg.clip.positions import PositionMode, interpolate_positions


class VisionTower(nn.Module):
    """Wraps a transformers ``CLIPVisionModel``/``CLIPVisionTransformer`` and the visual projection.

    State-dict keys: ``transformer.*`` (transformers' own names below ``vision_model``) and
    ``projection.weight``.
    """

    def __init__(self, transformer: nn.Module, projection: nn.Linear) -> None:
        super().__init__()
        self.transformer = transformer
        self.projection = projection

    # -- shape facts --------------------------------------------------------------------------
    @property
    def patch_size(self) -> int:
        return self.transformer.embeddings.patch_embedding.kernel_size[0]

    @property
    def width(self) -> int:
        return self.transformer.embeddings.class_embedding.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.projection.out_features

    @property
    def layers(self) -> nn.ModuleList:
        return self.transformer.encoder.layers

    @property
    def last_layer(self) -> nn.Module:
        """The last block (``copy.deepcopy`` it for a trainable copy, as TCL does)."""
        return self.layers[-1]

    # -- the steps ----------------------------------------------------------------------------
    def embed(self, images: Tensor, positions: PositionMode = "size") -> tuple[Tensor, tuple[int, int]]:
        """Tokens entering block 0 ``[B, 1 + h*w, C]`` (after ``pre_layrnorm``) and the grid ``(h, w)``."""
        emb = self.transformer.embeddings
        if images.shape[-2] < self.patch_size or images.shape[-1] < self.patch_size:
            raise ValueError(
                f"images of {tuple(images.shape[-2:])} are smaller than one {self.patch_size}px patch"
            )
        patches = emb.patch_embedding(images.to(emb.patch_embedding.weight.dtype))
        grid = (patches.shape[-2], patches.shape[-1])
        patches = patches.flatten(2).transpose(1, 2)
        cls = emb.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        table = interpolate_positions(emb.position_embedding.weight, grid, positions)
        tokens = torch.cat([cls, patches], dim=1) + table.to(patches.dtype)
        return self.transformer.pre_layrnorm(tokens), grid

    def run_blocks(self, x: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Blocks ``start .. stop - 1`` unchanged (normal attention)."""
        for layer in self.layers[start:stop]:
            x = standard_layer(layer, x)
        return x

    def block_outputs(
        self, images: Tensor, positions: PositionMode = "size", stop: int | None = None
    ) -> tuple[list[Tensor], tuple[int, int]]:
        """``[embedded tokens, output of block 0, ..., output of block stop - 1]`` (each ``[B, 1 + h*w, C]``,
        normal attention; ``stop=None``: every block) and the grid. Entry ``i`` is the input of block ``i``."""
        x, grid = self.embed(images, positions)
        outputs = [x]
        for layer in self.layers[:stop]:
            outputs.append(standard_layer(layer, outputs[-1]))
        return outputs, grid

    def tokens_before_last(
        self, images: Tensor, positions: PositionMode = "size"
    ) -> tuple[Tensor, tuple[int, int]]:
        """The input of the last block (the output of block ``L - 2``) and the grid."""
        x, grid = self.embed(images, positions)
        return self.run_blocks(x, 0, len(self.layers) - 1), grid

    def run_last(
        self,
        x: Tensor,
        grid: tuple[int, int],
        variant: str | LastBlock = "vanilla",
        layer: nn.Module | None = None,
    ) -> Tensor:
        """The last block on ``x`` in ``variant``; ``layer`` replaces the tower's own last block."""
        return get_last_block(variant)(self.last_layer if layer is None else layer, x, grid)

    def project(self, tokens: Tensor) -> Tensor:
        """``post_layernorm`` then the projection, on tokens ``[..., C]`` -> ``[..., D]`` (unnormalised)."""
        return self.projection(self.transformer.post_layernorm(tokens))

    @staticmethod
    def to_map(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """Drop the class token and lay the patches out as ``[B, C, h, w]`` (row-major, as embedded)."""
        b, _, c = tokens.shape
        return tokens[:, 1:].transpose(1, 2).reshape(b, c, *grid)

    # -- whole passes -------------------------------------------------------------------------
    def dense(
        self, images: Tensor, variant: str | LastBlock = "self", positions: PositionMode = "size"
    ) -> Tensor:
        """Projected (unnormalised) patch features ``[B, D, h, w]`` with the last block in ``variant``."""
        x, grid = self.tokens_before_last(images, positions)
        return self.to_map(self.project(self.run_last(x, grid, variant)), grid)

    def cosines(
        self,
        images: Tensor,
        embeddings: Tensor,
        variant: str | LastBlock = "self",
        positions: PositionMode = "size",
    ) -> Tensor:
        """Cosines ``[B, N, h, w]`` of the L2-normalised :meth:`dense` features with the ``N`` unit
        text embeddings ``[N, D]`` (raw cosines: no logit scale)."""
        features = F.normalize(self.dense(images, variant, positions), dim=1)
        return torch.einsum("bchw,nc->bnhw", features, embeddings.to(features))

    def global_embedding(self, images: Tensor, positions: PositionMode = "size") -> Tensor:
        """CLIP's image embedding ``[B, D]`` (unnormalised): every block normal, class token projected."""
        x, _ = self.embed(images, positions)
        return self.project(self.run_blocks(x)[:, 0])
