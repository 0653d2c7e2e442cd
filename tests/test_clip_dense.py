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


# -- the SCLIP family's variants, against the block's weights ------------------------------------
def _heads_from_weights(layer: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-head q, k, v ``[B, heads, N, d]`` from the block's LayerNorm and projection matrices."""
    ln, attn = layer.layer_norm1, layer.self_attn
    h = F.layer_norm(x, x.shape[-1:], ln.weight, ln.bias, ln.eps)
    b, n, _ = x.shape

    def project(linear: torch.nn.Linear) -> torch.Tensor:
        return (h @ linear.weight.t() + linear.bias).reshape(b, n, attn.num_heads, -1).transpose(1, 2)

    return project(attn.q_proj), project(attn.k_proj), project(attn.v_proj)


def _block_output(
    layer: torch.nn.Module, x: torch.Tensor, weights: torch.Tensor, v: torch.Tensor, residual_mlp: bool
) -> torch.Tensor:
    """``out_proj`` of the attention with ``weights`` ``[B, heads, N, N]``, then residual + MLP if asked."""
    out = (weights @ v).transpose(1, 2).reshape(x.shape)
    out = out @ layer.self_attn.out_proj.weight.t() + layer.self_attn.out_proj.bias
    if not residual_mlp:
        return out
    z = x + out
    ln, mlp = layer.layer_norm2, layer.mlp
    hidden = F.layer_norm(z, z.shape[-1:], ln.weight, ln.bias, ln.eps) @ mlp.fc1.weight.t() + mlp.fc1.bias
    hidden = hidden * torch.sigmoid(1.702 * hidden)  # QuickGELU, as CLIP (and the tiny CLIP) use
    return z + hidden @ mlp.fc2.weight.t() + mlp.fc2.bias


def _softmax_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.transpose(-1, -2) * a.shape[-1] ** -0.5).softmax(-1)


@torch.no_grad()
def test_csa_and_qq_variants_equal_their_formulas_from_the_weights(clip: CLIPBackbone) -> None:
    vision = clip.vision
    x, grid = vision.tokens_before_last(_images(2, 3, 64, 96), "scale")
    layer = vision.last_layer
    q, k, v = _heads_from_weights(layer, x)
    csa = _softmax_similarity(q, q) + _softmax_similarity(k, k)  # SCLIP: rows sum to 2, residual + MLP
    torch.testing.assert_close(csa.sum(-1), torch.full(csa.shape[:-1], 2.0))
    torch.testing.assert_close(vision.run_last(x, grid, "csa"), _block_output(layer, x, csa, v, True))
    qq = _softmax_similarity(q, q)  # ClearCLIP: attention branch only ...
    torch.testing.assert_close(vision.run_last(x, grid, "qq"), _block_output(layer, x, qq, v, False))
    with_residual = get_last_block("qq").configured(residual_mlp=True)  # ... or ignore_residual=False
    torch.testing.assert_close(vision.run_last(x, grid, with_residual), _block_output(layer, x, qq, v, True))
    assert get_last_block("qq").residual_mlp is False  # configured() returned a copy


def _hand_built_omega(grid: tuple[int, int], std: float) -> torch.Tensor:
    """NACLIP's Ω entry by entry: Gaussian of the distance between patch positions, 0 for the class token."""
    h, w = grid
    omega = torch.zeros(1 + h * w, 1 + h * w)
    for i in range(h * w):
        for j in range(h * w):
            (r1, c1), (r2, c2) = divmod(i, w), divmod(j, w)
            omega[1 + i, 1 + j] = math.exp(-((r1 - r2) ** 2 + (c1 - c2) ** 2) / (2 * std**2))
    return omega


def test_gaussian_bias_equals_naclips_window_construction() -> None:
    """NACLIP builds Ω by convolving one-hot maps with a (2h-1)x(2w-1) Gaussian window ('same' padding)."""
    from textseg.clip.last_block import gaussian_bias

    grid, std = (3, 5), 1.7
    h, w = grid
    coords = [(torch.arange(2 * n - 1) - (n - 1)) / (std * math.sqrt(2)) for n in grid]
    window = torch.exp(-(coords[0][:, None] ** 2 + coords[1][None] ** 2))
    one_hot = torch.eye(h * w).view(h * w, 1, h, w)
    conv = F.conv2d(one_hot, window.view(1, 1, 2 * h - 1, 2 * w - 1), padding="same").view(h * w, h * w)
    omega = gaussian_bias(grid, std)
    torch.testing.assert_close(omega[1:, 1:], conv)
    torch.testing.assert_close(omega, _hand_built_omega(grid, std))
    assert omega[0].abs().sum() == 0 and omega[:, 0].abs().sum() == 0


@torch.no_grad()
@pytest.mark.parametrize("std", [5.0, 0.8])
def test_naclip_variant_is_key_key_attention_plus_a_gaussian_window(clip: CLIPBackbone, std: float) -> None:
    vision = clip.vision
    x, grid = vision.tokens_before_last(_images(1, 3, 48, 80), "scale")
    assert grid == (3, 5)
    layer = vision.last_layer
    _, k, v = _heads_from_weights(layer, x)
    logits = k @ k.transpose(-1, -2) * k.shape[-1] ** -0.5 + _hand_built_omega(grid, std)
    block = get_last_block("naclip").configured(gaussian_std=std)
    expected = _block_output(layer, x, logits.softmax(-1), v, False)
    torch.testing.assert_close(vision.run_last(x, grid, block), expected)
    if std == 5.0:  # the default, as NACLIP's
        torch.testing.assert_close(vision.run_last(x, grid, "naclip"), expected)
    arch_vanilla = block.configured(residual_mlp=True)
    torch.testing.assert_close(
        vision.run_last(x, grid, arch_vanilla), _block_output(layer, x, logits.softmax(-1), v, True)
    )


def test_variant_options_are_checked(clip: CLIPBackbone) -> None:
    with pytest.raises(ConfigError, match="'csa' has no option 'gaussian_std'"):
        get_last_block("csa").configured(gaussian_std=3.0)
    tokens = torch.zeros(1, 2, clip.vision.width)
    with pytest.raises(ConfigError, match="gaussian_std must be positive"):
        get_last_block("naclip").configured(gaussian_std=0.0)(clip.vision.last_layer, tokens, (1, 1))
