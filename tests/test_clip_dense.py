"""Dense image features: last-block variants against direct computations, positions, padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from textseg.clip import CLIPBackbone, get_last_block, interpolate_positions, pad_to_multiple, unpad_scores
from textseg.clip.loading import load_clip
from textseg.clip.padding import centred_pads
from textseg.errors import ConfigError


@pytest.fixture(scope="module")
def clip() -> CLIPBackbone:
    return CLIPBackbone.load("tiny", text_cache=False)


def _images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def test_value_variant_equals_the_value_path_from_the_weights(clip: CLIPBackbone) -> None:
    """MaskCLIP's value path, from the block's weight matrices: post_ln(out_proj(v_proj(ln_1 x))) @ proj."""
    vision = clip.vision
    x, grid = vision.tokens_before_last(_images(2, 3, 96, 160))
    layer = vision.last_layer
    attn = layer.self_attn
    h = F.layer_norm(x, x.shape[-1:], layer.layer_norm1.weight, layer.layer_norm1.bias, layer.layer_norm1.eps)
    v = h @ attn.v_proj.weight.t() + attn.v_proj.bias
    out = v @ attn.out_proj.weight.t() + attn.out_proj.bias
    post = vision.transformer.post_layernorm
    feats = F.layer_norm(out, out.shape[-1:], post.weight, post.bias, post.eps) @ vision.projection.weight.t()
    expected = feats[:, 1:].reshape(2, *grid, -1).permute(0, 3, 1, 2)
    dense = vision.dense(_images(2, 3, 96, 160), "value")
    assert dense.shape == (2, vision.embed_dim, 6, 10)
    torch.testing.assert_close(dense, expected)


@torch.no_grad()
def test_self_variant_equals_the_block_with_a_diagonal_attention_mask(clip: CLIPBackbone) -> None:
    vision = clip.vision
    x, grid = vision.tokens_before_last(_images(1, 3, 64, 80))
    n = x.shape[1]
    diagonal = torch.full((n, n), float("-inf")).fill_diagonal_(0).view(1, 1, n, n)
    out = vision.last_layer(x, attention_mask=diagonal)  # transformers' own layer forward
    out = out[0] if isinstance(out, tuple) else out
    torch.testing.assert_close(vision.run_last(x, grid, "self"), out)
    # and `vanilla` is the unchanged block
    plain = vision.last_layer(x, attention_mask=None)
    torch.testing.assert_close(
        vision.run_last(x, grid, "vanilla"), plain[0] if isinstance(plain, tuple) else plain
    )
    # `self` differs from `value` exactly by the residual and the MLP
    value = vision.run_last(x, grid, "value")
    z = x + value
    torch.testing.assert_close(
        vision.run_last(x, grid, "self"), z + vision.last_layer.mlp(vision.last_layer.layer_norm2(z))
    )


@torch.no_grad()
def test_global_embedding_and_positions_match_transformers(clip: CLIPBackbone) -> None:
    model, _ = load_clip("tiny")
    images = _images(2, 3, 224, 224)
    expected = model.visual_projection(model.vision_model(pixel_values=images).pooler_output)
    torch.testing.assert_close(clip.vision.global_embedding(images), expected)
    # off the training size, "size" interpolation is transformers' interpolate_pos_encoding
    odd = _images(1, 3, 160, 96)
    ours, grid = clip.vision.embed(odd, "size")
    theirs = model.vision_model.pre_layrnorm(
        model.vision_model.embeddings(odd, interpolate_pos_encoding=True)
    )
    assert grid == (10, 6)
    torch.testing.assert_close(ours, theirs)


@torch.no_grad()
def test_run_last_accepts_a_separate_copy_of_the_block(clip: CLIPBackbone) -> None:
    import copy

    vision = clip.vision
    x, grid = vision.tokens_before_last(_images(1, 3, 64, 64))
    twin = copy.deepcopy(vision.last_layer)
    torch.testing.assert_close(vision.run_last(x, grid, "self", layer=twin), vision.run_last(x, grid, "self"))
    twin.mlp.fc2.bias.add_(1.0)
    assert not torch.allclose(vision.run_last(x, grid, "self", layer=twin), vision.run_last(x, grid, "self"))


def test_unknown_variant_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="Did you mean value"):
        get_last_block("valeu")


def _keys_cubic(t: float, a: float = -0.75) -> list[float]:
    """Weights of samples at offsets -1, 0, 1, 2 for a fractional position t (Keys' cubic convolution)."""

    def w(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a if x < 2 else 0.0

    return [w(t + 1), w(t), w(1 - t), w(2 - t)]


def _resample_rows(values: torch.Tensor, sources: list[float]) -> torch.Tensor:
    """1-D bicubic sampling of ``values`` [g] at fractional ``sources`` with border clamping."""
    g = values.shape[0]
    out = []
    for s in sources:
        base = math.floor(s)
        weights = _keys_cubic(s - base)
        out.append(sum(wt * values[min(max(base - 1 + i, 0), g - 1)] for i, wt in enumerate(weights)))
    return torch.stack(out)


@pytest.mark.parametrize(("mode", "grid"), [("size", (5, 9)), ("scale", (5, 9)), ("scale", (21, 3))])
def test_position_interpolation_samples_where_the_official_code_does(
    mode: str, grid: tuple[int, int]
) -> None:
    side, dim = 4, 3
    table = torch.randn(1 + side * side, dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = interpolate_positions(table, grid, mode)
    assert out.shape == (1 + grid[0] * grid[1], dim) and torch.equal(out[0], table[0])

    def sources(n: int) -> list[float]:
        scale = side / n if mode == "size" else side / (n + 0.1)
        return [(i + 0.5) * scale - 0.5 for i in range(n)]

    patches = table[1:].reshape(side, side, dim)
    rows = torch.stack([_resample_rows(patches[:, c], sources(grid[0])) for c in range(side)], dim=1)
    expected = torch.stack([_resample_rows(rows[r], sources(grid[1])) for r in range(grid[0])])
    torch.testing.assert_close(out[1:].reshape(*grid, dim), expected)
    assert interpolate_positions(table, (side, side), mode) is table


def test_centred_padding_and_its_undoing() -> None:
    assert centred_pads(97, 131, 16) == (6, 7, 7, 8)  # (left, right, top, bottom): odd pixel right/bottom
    assert centred_pads(96, 128, 16) == (0, 0, 0, 0)
    images = torch.ones(1, 3, 97, 131)
    padded, pads = pad_to_multiple(images, 16)
    assert padded.shape[-2:] == (112, 144) and padded[0, 0, 7, 6] == 1 and padded[0, 0, 6, 6] == 0
    assert padded[0, 0, 7 + 96, 6 + 130] == 1 and padded[0, 0, 7 + 97, 6 + 130] == 0
    scores = torch.arange(7 * 9, dtype=torch.float32).view(1, 1, 7, 9)
    restored = unpad_scores(scores, pads, (97, 131))
    full = F.interpolate(scores, (112, 144), mode="bilinear")
    assert restored.shape[-2:] == (97, 131) and torch.equal(restored, full[..., 7:104, 6:137])
    assert unpad_scores(scores, (0, 0, 0, 0), (112, 144)) is scores
