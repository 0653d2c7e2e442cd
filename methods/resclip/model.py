"""ResCLIP: residual cross-correlation self-attention (RCS) and semantic feedback refinement (SFR).

yvhangyang/ResCLIP ``clip/model.py`` at 6b082d9, per window:

1. blocks ``1 .. L-1`` unchanged, keeping their attention maps ``softmax(s q kᵀ)`` (per head,
   class token included); ``A_rcs`` = the mean map of the blocks ``rcs_layers`` (RCS);
2. SFR, first pass: the last block in the base's variant with RCS, ``post_layernorm`` and the
   projection, cosines with every name, bilinear to the window, PAMR(10, dilations 8 and 16)
   guided by the window, softmax(``logit_scale`` ×) over the names; each pixel's best name (0
   where its probability is below ``temp_thd``) and each patch's most frequent one
   (:func:`feedback_labels`); the patch-label matrix :func:`semantic_feedback`;
3. the last block again, with RCS and SFR (:func:`residual_attention`), then cosines.

The harness does the rest as for the SCLIP family (windows, softmax over names, synonym max).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import TextState
from textseg.clip.blocks import merge_heads, qkv
from textseg.clip.last_block import gaussian_bias
from textseg.clip.segmentor import DenseCLIP
from textseg.errors import ConfigError
from textseg.evaluation.pamr import NACLIP_DILATIONS, PAMR

from .config import ResCLIPConfig

#: The PAMR of the first pass (``create_logit_temp``: ``PAMR(10, dilations=(8, 16))``).
SFR_PAMR_STEPS = 10
#: textseg last-block variant -> the official ``attn_strategy`` it is (``custom_attn``, ``:463-588``).
BASES = {"naclip": "resclip (= naclip)", "qq": "clearclip", "csa": "sclip", "vanilla": "vanilla"}

Mix = tuple[Tensor, tuple[float, float]]


def attention_with_map(layer: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """A standard CLIP block on ``x`` ``[B, T, C]`` and its attention map ``[B, heads, T, T]``."""
    q, k, v = qkv(layer.self_attn, layer.layer_norm1(x))
    weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)).softmax(dim=-1)
    x = x + layer.self_attn.out_proj(merge_heads(weights @ v))
    return x + layer.mlp(layer.layer_norm2(x)), weights


def _base_logits(base: str, q: Tensor, k: Tensor) -> list[Tensor]:
    """The attention logits of each base (two for SCLIP's, softmaxed separately and added)."""
    scale = q.shape[-1] ** -0.5
    if base == "naclip":
        return [(k @ k.transpose(-1, -2)) * scale]
    if base == "qq":
        return [(q @ q.transpose(-1, -2)) * scale]
    if base == "csa":
        return [(q @ q.transpose(-1, -2)) * scale, (k @ k.transpose(-1, -2)) * scale]
    return [(q * scale) @ k.transpose(-1, -2)]


def residual_attention(
    layer: nn.Module,
    x: Tensor,
    grid: tuple[int, int],
    base: str,
    gaussian_std: float,
    rcs: Mix | None = None,
    sfr: Mix | None = None,
) -> Tensor:
    """The mixed tokens ``[B, T, C]`` before ``out_proj`` of the last block in ``base`` with ResCLIP.

    Per logit map ``Z`` of the base: with SFR ``(S, (τ, λ))``, ``Z <- τ [(1 - λ) Z + λ Ŝ]`` where
    ``Ŝ = S / max(S)`` in half precision, as the official code casts it; NACLIP's base then adds
    ``Ω``. ``A = Σ softmax(Z)``; with RCS ``(A_rcs, (τ, λ))``, ``A <- τ [(1 - λ) A + λ A_rcs]``
    (rows then sum to τ). Returns ``A v`` with the heads merged.
    """
    q, k, v = qkv(layer.self_attn, layer.layer_norm1(x))
    logits = _base_logits(base, q, k)
    if sfr is not None:
        matrix, (tau, lam) = sfr
        unit = (matrix / matrix.amax(dim=(-2, -1), keepdim=True)).to(torch.float16)[:, None]
        logits = [tau * ((1 - lam) * z + lam * unit) for z in logits]
    if base == "naclip":
        logits = [z + gaussian_bias(grid, gaussian_std, z.device).to(z.dtype) for z in logits]
    weights = logits[0].softmax(dim=-1)
    for z in logits[1:]:
        weights = weights + z.softmax(dim=-1)
    if rcs is not None:
        maps, (tau, lam) = rcs
        weights = tau * ((1 - lam) * weights + lam * maps)
    return merge_heads(weights @ v)


def feedback_labels(probs: Tensor, patch: int, grid: tuple[int, int], temp_thd: float) -> Tensor:
    """Each patch's label ``[B, h, w]`` from the first pass's probabilities ``[B, Q, H, W]``.

    Per pixel the best query, or 0 where its probability is below ``temp_thd``; per patch cell
    (``patch`` x ``patch`` pixels from the top left; leftover pixels are ignored) the most frequent
    label, the smallest on a tie (``create_patch_matrix``: ``torch.mode``, which does so on CPU).
    """
    batch, queries = probs.shape[:2]
    h, w = grid
    labels = probs.argmax(dim=1)
    labels[probs.amax(dim=1) < temp_thd] = 0
    labels = labels[:, : h * patch, : w * patch]
    rows = torch.arange(h * patch, device=probs.device) // patch
    cols = torch.arange(w * patch, device=probs.device) // patch
    cell = rows[:, None] * w + cols[None]
    image = torch.arange(batch, device=probs.device)[:, None, None] * (h * w)
    index = (image + cell) * queries + labels
    counts = torch.bincount(index.flatten(), minlength=batch * h * w * queries)
    return counts.view(batch, h, w, queries).argmax(dim=-1)


def same_entity_paths(labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """Which patch pairs keep their label on the way (``check_path``, ``:130-148``).

    For patches ``i`` (start) and ``j`` (end) with Chebyshev distance ``n_ij`` and ``M`` the largest
    over all pairs, the points ``p_i (1 - t) + p_j t`` for ``t = k / M``, ``k = 0 .. n_ij``, rounded
    (half to even), must all carry ``i``'s label. ``t`` stops at ``n_ij / M``, so only that first
    part of the segment is checked, as in the official code. Returns the validity ``[B, N, N]``,
    ``n`` ``[N, N]`` and ``M``.
    """
    batch, h, w = labels.shape
    flat = labels.flatten(1)
    n = h * w
    points = torch.stack(
        [torch.arange(n, device=labels.device) // w, torch.arange(n, device=labels.device) % w], 1
    )
    start = points.repeat_interleave(n, dim=0)
    end = points.repeat(n, 1)
    steps = (end - start).abs().amax(dim=1)
    longest = int(steps.max())
    t = torch.linspace(0, 1, steps=longest + 1, device=labels.device)
    one_minus = 1 - t
    first = flat[:, start[:, 0] * w + start[:, 1]]
    valid = torch.ones_like(first, dtype=torch.bool)
    for step in range(longest + 1):
        point = (start * one_minus[step] + end * t[step]).round().long()
        valid &= (flat[:, point[:, 0] * w + point[:, 1]] == first) | (step > steps)
    return valid.view(batch, n, n), steps.view(n, n), longest


def semantic_feedback(labels: Tensor, gaussian_std: float, delete_same_entity: bool) -> Tensor:
    """SFR's matrix ``[B, 1 + N, 1 + N]`` from patch labels ``[B, h, w]`` (``generate_attention_sfr``).

    1 between patches of the same label (0 in the class token's row and column); with
    ``delete_same_entity``, a pair whose path leaves the label (:func:`same_entity_paths`) is
    multiplied by ``exp(-n_ij / M)``. Each row is blurred by a 1-D Gaussian along the raster
    order (σ = ``gaussian_std``, ``min(N, int(6σ + 1))`` taps made odd, zero padding) and divided by
    its sum (+ 1e-8).
    """
    batch = labels.shape[0]
    flat = labels.flatten(1)
    n = flat.shape[1]
    same = (flat[:, :, None] == flat[:, None, :]).float()
    if delete_same_entity:
        valid, steps, longest = same_entity_paths(labels)
        same = torch.where(valid, same, same * torch.exp(-steps / max(longest, 1)))
    size = min(n, int(6 * gaussian_std + 1))
    size += 1 - size % 2
    offsets = torch.arange(size, device=labels.device) - size // 2
    kernel = torch.exp(-(offsets**2) / (2 * gaussian_std**2))
    kernel = (kernel / kernel.sum()).view(1, 1, -1)
    blurred = F.conv1d(same.view(batch * n, 1, n), kernel, padding=size // 2).view(batch, n, n).relu()
    return F.pad(blurred / (blurred.sum(dim=-1, keepdim=True) + 1e-8), (1, 0, 1, 0))


class ResCLIP(DenseCLIP):
    """ResCLIP on an SCLIP-family base, in that family's pipeline (windows, softmax over names)."""

    def __init__(self, config: ResCLIPConfig) -> None:
        if config.pad:
            raise ConfigError("resclip does not pad windows (the official code never does); leave pad unset")
        if config.gaussian_std <= 0:
            raise ConfigError(f"gaussian_std must be positive, got {config.gaussian_std}")
        if not 0 <= config.temp_thd <= 1:
            raise ConfigError(f"temp_thd is a probability in [0, 1], got {config.temp_thd}")
        super().__init__(config)
        base = self.last_block.name
        if base not in BASES:
            raise ConfigError(
                f"resclip has no base {base!r}; last_block must be one of {', '.join(BASES)} "
                "(NACLIP, ClearCLIP, SCLIP, CLIP)"
            )
        if base == "csa" and not self.last_block.residual_mlp:
            raise ConfigError(
                "resclip's SCLIP base (last_block=csa) needs residual_mlp (the official arch w_resi)"
            )
        depth = len(self.clip.vision.layers)
        bad = [i for i in config.rcs_layers if not 0 <= i < depth - 1]
        if not config.rcs_layers or bad:
            raise ConfigError(
                f"resclip rcs_layers={config.rcs_layers} must be indices of blocks 1 .. {depth - 1} of this "
                f"{depth}-block CLIP (0 .. {depth - 2})"
            )
        self.sfr_pamr = PAMR(SFR_PAMR_STEPS, NACLIP_DILATIONS)

    def _last(self, x: Tensor, grid: tuple[int, int], rcs: Mix | None, sfr: Mix | None) -> Tensor:
        """The last block (attention only, or with residual and MLP) with ResCLIP's attention."""
        layer = self.clip.vision.last_layer
        mixed = residual_attention(layer, x, grid, self.last_block.name, self.config.gaussian_std, rcs, sfr)
        branch = layer.self_attn.out_proj(mixed)
        if not self.last_block.residual_mlp:
            return branch
        x = x + branch
        return x + layer.mlp(layer.layer_norm2(x))

    def _cosines(self, tokens: Tensor, grid: tuple[int, int], embeddings: Tensor) -> Tensor:
        features = F.normalize(self.clip.vision.project(tokens)[:, 1:], dim=-1)
        return torch.einsum("bnc,qc->bqn", features, embeddings.to(features)).unflatten(2, grid)

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Raw cosines ``[B, names, h, w]`` at the patch grid (see the module docstring)."""
        config: ResCLIPConfig = self.config
        vision = self.clip.vision
        x, grid = vision.embed(images, config.positions)
        maps = []
        for index, layer in enumerate(vision.layers[:-1]):
            x, weights = attention_with_map(layer, x)
            if index in config.rcs_layers:
                maps.append(weights)
        rcs = (torch.stack(maps).mean(dim=0), config.attn_rcs_weights) if config.use_rcs else None
        sfr = None
        if config.use_sfr:
            first = self._cosines(self._last(x, grid, rcs, None), grid, text.embeddings)
            first = F.interpolate(first, images.shape[-2:], mode="bilinear", align_corners=False)
            probs = (self.sfr_pamr(images, first) * config.logit_scale).softmax(dim=1)
            labels = feedback_labels(probs, vision.patch_size, grid, config.temp_thd)
            sfr = (
                semantic_feedback(labels, config.gaussian_std, config.delete_same_entity),
                config.attn_sfr_weights,
            )
        return self._cosines(self._last(x, grid, rcs, sfr), grid, text.embeddings)
