"""SC-CLIP: CLIP's image tower self-calibrated (SuleBai/SC-CLIP ``clip/model.py`` at 0417ba9).

Per window, with ``outputs[i]`` the output of block ``i + 1`` (class token first):

1. blocks ``1 .. L-1`` unchanged; the patch tokens after block ``L-1`` are scored for anomalies
   (:func:`anomalous_tokens`) and every anomaly is replaced by the mean of its non-anomalous 3x3
   neighbours (:func:`fill_anomalies`); the class token is dropped from here on;
2. ``S_mid``: cosine similarity of the anomaly-fixed patches of ``outputs[pre_adjust_idx]``;
   the tokens are aggregated with ``S_mid`` floored at 0.4 (:func:`aggregate`);
3. the last block's attention only (no residual, no MLP) with :func:`calibrated_attention`
   ``A = ½ [softmax(M) + softmax(s k kᵀ)]``, ``M = 3 (S_mid - mean S_mid)`` with negatives
   masked, plus ``res_cls`` times the penultimate class token;
4. aggregated again with the similarity of ``outputs[post_adjust_idx]`` (``S_post``, floored);
5. multi-level: the *sum* of ``outputs[multi_start_idx:multi_end_idx]`` goes through step 3
   (its own class token) and ``S_post``, and is added;
6. ``post_layernorm`` and the projection on every patch; cosines with every name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textseg.api import TextState
from textseg.clip.blocks import merge_heads, qkv
from textseg.clip.segmentor import DenseCLIP
from textseg.errors import ConfigError

from .config import SCCLIPConfig

#: ``lof_pytorch(n_neighbors=30, contamination=0.05)`` (``clip/model.py:208``, called at ``:274``).
LOF_NEIGHBOURS = 30
LOF_CONTAMINATION = 0.05
#: The first commit's detector: the 10 tokens of largest L2 norm (74471da ``clip/model.py``).
NORM_OUTLIERS = 10
#: ``self.beta``: similarities below it are set to 0 before aggregating (``:247``).
SIMILARITY_FLOOR = 0.4
#: ``custom_attn``: ``(S_mid - mean) * 3.0`` (``:329``).
ATTENTION_SHARPNESS = 3.0


def local_outlier_factor(tokens: Tensor, neighbours: int) -> Tensor:
    """SC-CLIP's LOF score of each of ``tokens`` ``[N, C]`` (``lof_pytorch``).

    Squared Euclidean distances; ``k``-distance ``d_k(p)`` = distance to the ``k``-th nearest
    other token. Unlike sklearn, a point's reach distances use its *own* ``d_k``, so they all equal
    ``d_k(p)`` and the score reduces to ``LOF(p) = mean over its k neighbours o of d_k(p) / d_k(o)``.
    """
    distances = torch.norm(tokens[:, None] - tokens[None], dim=2) ** 2
    knn, index = torch.topk(distances, neighbours + 1, largest=False)
    knn, index = knn[:, 1:], index[:, 1:]  # the nearest is the token itself
    reach = torch.maximum(knn, knn[:, -1:])
    density = neighbours / torch.nan_to_num(reach.mean(dim=1), nan=1e-6)
    return (density[index] / density[:, None]).mean(dim=1)


def anomalous_tokens(tokens: Tensor, detector: str = "lof") -> Tensor:
    """Boolean mask ``[N]`` of the anomaly tokens among ``tokens`` ``[N, C]``.

    ``lof``: LOF above its 95th percentile (linear interpolation), i.e. about 5 % of the tokens,
    always; ``k`` is capped at ``N - 1`` for grids of fewer than 31 patches (the official code
    fails there). ``norm``: the :data:`NORM_OUTLIERS` tokens of largest norm.
    """
    n = tokens.shape[0]
    if n < 2:
        raise ConfigError(f"SC-CLIP needs at least 2 patches per window to find anomalies, got {n}")
    mask = torch.zeros(n, dtype=torch.bool, device=tokens.device)
    if detector == "norm":
        order = torch.sort(torch.norm(tokens, dim=1), descending=True).indices
        mask[order[:NORM_OUTLIERS]] = True
        return mask
    scores = local_outlier_factor(tokens, min(LOF_NEIGHBOURS, n - 1))
    return scores > torch.quantile(scores.float(), 1 - LOF_CONTAMINATION)


def fill_anomalies(maps: Tensor, anomalies: Tensor) -> Tensor:
    """``maps`` ``[B, C, h, w]`` with every anomaly (``anomalies`` ``[B, h, w]``) replaced by the
    mean of its non-anomalous 3x3 neighbours (zero padding: missing neighbours do not count); an
    anomaly without such a neighbour keeps its value (``mean_interpolation``, ``:348-373``)."""
    channels = maps.shape[1]
    keep = (~anomalies).to(maps.dtype)[:, None]
    ring = torch.ones(3, 3, dtype=maps.dtype, device=maps.device)
    ring[1, 1] = 0
    sums = F.conv2d(F.pad(maps * keep, (1, 1, 1, 1)), ring.expand(channels, 1, 3, 3), groups=channels)
    counts = F.conv2d(F.pad(keep, (1, 1, 1, 1)), ring[None, None])
    update = anomalies[:, None] & (counts > 0)
    return torch.where(update, sums / counts.clamp(min=1), maps)


def patch_similarity(tokens: Tensor) -> Tensor:
    """Cosine similarity ``[B, N, N]`` of patch tokens ``[B, N, C]``."""
    unit = tokens / tokens.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(1, 2)


def aggregate(tokens: Tensor, similarity: Tensor) -> Tensor:
    """``adaptively_aggregate`` (``:343-346``): tokens mixed by the row-normalised similarity."""
    return (similarity / (similarity.sum(dim=-1, keepdim=True) + 1e-6)) @ tokens


def floored(similarity: Tensor) -> Tensor:
    """Similarities below :data:`SIMILARITY_FLOOR` set to 0."""
    return similarity.masked_fill(similarity < SIMILARITY_FLOOR, 0.0)


def calibrated_attention(layer: nn.Module, tokens: Tensor, mid: Tensor) -> Tensor:
    """The last block's attention branch on patch tokens ``[B, N, C]`` (``custom_attn``, ``:318-341``).

    ``A = ½ [softmax(M) + softmax(s k kᵀ)]`` per head, with ``M = 3 (S_mid - mean(S_mid))`` (the
    mean over the whole ``N x N`` map of the image) where ``M >= 0`` and ``-inf`` elsewhere, the
    same for every head; returns ``out_proj(A v)``. ``q`` is unused.
    """
    _, k, v = qkv(layer.self_attn, layer.layer_norm1(tokens))
    sharpened = (mid - mid.mean(dim=(-2, -1), keepdim=True)) * ATTENTION_SHARPNESS
    sharpened = sharpened.masked_fill(sharpened < 0, float("-inf"))
    keys = (k @ k.transpose(-1, -2)) * k.shape[-1] ** -0.5
    weights = (sharpened.softmax(dim=-1)[:, None] + keys.softmax(dim=-1)) / 2
    return layer.self_attn.out_proj(merge_heads(weights @ v))


class SCCLIP(DenseCLIP):
    """SC-CLIP's dense features in the SCLIP family's pipeline (windows, softmax over names, ``area_thd``)."""

    def __init__(self, config: SCCLIPConfig) -> None:
        unused = [
            name
            for name in ("last_block", "residual_mlp", "gaussian_std", "pad")
            if getattr(config, name) != getattr(SCCLIPConfig, name)
        ]
        if unused:
            raise ConfigError(
                f"scclip has no setting {unused[0]!r}: SC-CLIP replaces CLIP's last block by its own "
                "computation and never pads windows"
            )
        super().__init__(config)
        depth = len(self.clip.vision.layers)
        indices = {
            "pre_adjust_idx": config.pre_adjust_idx,
            "post_adjust_idx": config.post_adjust_idx,
            "multi_start_idx": config.multi_start_idx,
        }
        for name, value in indices.items():
            if not 0 <= value < depth - 1:
                raise ConfigError(
                    f"scclip {name}={value} is not a block output of this {depth}-block CLIP (0 .. {depth - 2}; "
                    "index i is the output of block i + 1)"
                )
        if not config.multi_start_idx < config.multi_end_idx <= depth - 1:
            raise ConfigError(
                f"scclip multi_end_idx={config.multi_end_idx} must be in "
                f"({config.multi_start_idx}, {depth - 1}] for this {depth}-block CLIP"
            )

    def features(self, images: Tensor) -> Tensor:
        """SC-CLIP's projected patch features ``[B, D, h, w]`` (unnormalised); see the module docstring."""
        config: SCCLIPConfig = self.config
        vision = self.clip.vision
        x, grid = vision.embed(images, config.positions)
        outputs = []
        for index in range(len(vision.layers) - 1):
            x = vision.run_blocks(x, index, index + 1)
            outputs.append(x)
        cls, patches = x[:, :1], x[:, 1:]
        anomalies = torch.stack([anomalous_tokens(t, config.outliers) for t in patches]).view(-1, *grid)

        def fixed(tokens: Tensor) -> Tensor:
            maps = tokens.transpose(1, 2).unflatten(2, grid)
            return fill_anomalies(maps, anomalies).flatten(2).transpose(1, 2)

        mid = patch_similarity(fixed(outputs[config.pre_adjust_idx][:, 1:]))
        post = floored(patch_similarity(outputs[config.post_adjust_idx][:, 1:]))
        layer = vision.last_layer
        x = aggregate(fixed(patches), floored(mid))
        x = calibrated_attention(layer, x, mid) + config.res_cls * cls
        x = aggregate(x, post)
        multi = outputs[config.multi_start_idx]
        for output in outputs[config.multi_start_idx + 1 : config.multi_end_idx]:
            multi = multi + output
        multi = calibrated_attention(layer, multi[:, 1:], mid) + config.res_cls * multi[:, :1]
        x = x + aggregate(multi, post)
        return vision.project(x).transpose(1, 2).unflatten(2, grid)

    @torch.no_grad()
    def segment(self, images: Tensor, text: TextState) -> Tensor:
        """Raw cosines ``[B, names, h, w]`` of SC-CLIP's features at the patch grid."""
        features = F.normalize(self.features(images), dim=1)
        return torch.einsum("bchw,nc->bnhw", features, text.embeddings.to(features))
