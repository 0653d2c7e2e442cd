"""The vision-foundation-model door: tiny stand-ins, features, last-block q/k/v, positions, loading."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from textseg.backbones import VFM_MODELS, backbone_rows, load_vfm, parse_vfm
from textseg.errors import ConfigError, WeightsError

TINY = ["tiny-dino8", "tiny-dino16", "tiny-dinov2", "tiny-dinov2-reg"]


def official_positions(table: torch.Tensor, h: int, w: int, registers: bool) -> torch.Tensor:
    """DINO's / DINOv2's ``interpolate_pos_encoding`` on a patch-only table: ``+0.1`` scale factor,
    or (DINOv2 hub models with registers) by size with antialiasing."""
    n, dim = table.shape
    side = int(n**0.5)
    grid = table.reshape(1, side, side, dim).permute(0, 3, 1, 2).float()
    if registers:
        out = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True)
    else:
        out = F.interpolate(grid, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic")
    return out.permute(0, 2, 3, 1).reshape(h * w, dim)


def timm_reference(vfm, images: torch.Tensor) -> torch.Tensor:
    """timm's own ``forward_features`` with the position table interpolated the official way and
    installed in a copy of the model (so the token assembly is timm's, not ours)."""
    model = copy.deepcopy(vfm.model)
    p = vfm.patch_size
    h, w = images.shape[-2] // p, images.shape[-1] // p
    table = model.pos_embed[0]
    n = 0 if model.no_embed_class else model.num_prefix_tokens
    patches = official_positions(table[n:], h, w, registers=model.num_reg_tokens > 0)
    model.pos_embed = torch.nn.Parameter(torch.cat([table[:n], patches])[None])
    model.patch_embed.img_size = tuple(images.shape[-2:])
    model.patch_embed.grid_size = (h, w)
    model.patch_embed.num_patches = h * w
    with torch.no_grad():
        return model.forward_features(images)


@pytest.mark.parametrize("name", TINY)
def test_tokens_equal_timm_at_the_native_size_and_after_interpolation(name: str) -> None:
    vfm = load_vfm(name)
    torch.manual_seed(0)
    native = torch.randn(2, 3, *vfm.model.patch_embed.img_size)
    ours = vfm(native)
    assert torch.equal(ours.tokens, vfm.model.forward_features(native))
    for rows, cols in ((6, 6), (7, 3), (2, 5)):  # larger and smaller grids: positions interpolated
        images = torch.randn(1, 3, vfm.patch_size * rows, vfm.patch_size * cols)
        out = vfm(images)
        assert out.grid == (rows, cols)
        torch.testing.assert_close(out.tokens, timm_reference(vfm, images), atol=1e-6, rtol=1e-5)
    assert out.num_prefix == 1 + (4 if name.endswith("reg") else 0)
    assert out.patches.shape == (1, vfm.width, 2, 5)
    torch.testing.assert_close(out.patches.flatten(2).transpose(1, 2), out.tokens[:, out.num_prefix :])


@pytest.mark.parametrize("name", TINY)
def test_last_block_qkv_as_read_from_a_hook_on_attn_qkv(name: str) -> None:
    """Talk2DINO and FOUND read q/k/v from a forward hook on the last block's ``attn.qkv``."""
    vfm = load_vfm(name)
    seen = []
    handle = vfm.model.blocks[-1].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o))
    images = torch.randn(2, 3, 56, 70)
    out = vfm(images, qkv=True)
    handle.remove()
    b, t, _ = seen[-1].shape
    heads = vfm.num_heads
    q, k, v = seen[-1].reshape(b, t, 3, heads, -1).permute(2, 0, 3, 1, 4)
    assert torch.equal(out.q, q) and torch.equal(out.k, k) and torch.equal(out.v, v)
    p = out.num_prefix
    d = q.shape[-1]
    logits = (q[:, :, 0:1] * d**-0.5) @ k[:, :, p:].transpose(-1, -2)
    torch.testing.assert_close(out.cls_attention(), logits.squeeze(2))
    h, w = out.grid
    values = v[:, :, p:].transpose(1, 2).reshape(b, h * w, heads * d)  # heads concatenated, per token
    torch.testing.assert_close(out.head_map("v"), values.transpose(1, 2).reshape(b, heads * d, h, w))


def test_sam_stand_in_gives_the_neck_output_and_the_global_last_block() -> None:
    vfm = load_vfm("tiny-sam")
    images = torch.randn(1, 3, 64, 64)
    out = vfm(images, qkv=True)
    assert torch.equal(out.patches, vfm.model.forward_features(images))
    assert out.patches.shape == (1, vfm.out_channels, 4, 4) and out.num_prefix == 0
    assert out.q.shape == (1, vfm.num_heads, 16, vfm.width // vfm.num_heads)
    with pytest.raises(ValueError, match="class token"):
        out.cls_attention()


def test_without_qkv_the_derived_tensors_say_how_to_get_them() -> None:
    out = load_vfm("tiny-dino16")(torch.randn(1, 3, 32, 32))
    assert out.q is None
    with pytest.raises(ValueError, match="qkv=True"):
        out.cls_attention()


def test_renormalize_maps_one_normalisation_to_the_other() -> None:
    vfm = load_vfm("tiny-dino16")
    rgb = torch.rand(1, 3, 4, 4)
    clip_mean, clip_std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    clip_normed = (rgb - torch.tensor(clip_mean).view(1, 3, 1, 1)) / torch.tensor(clip_std).view(1, 3, 1, 1)
    expected = (rgb - torch.tensor(vfm.mean).view(1, 3, 1, 1)) / torch.tensor(vfm.std).view(1, 3, 1, 1)
    torch.testing.assert_close(vfm.renormalize(clip_normed, clip_mean, clip_std), expected)


def test_weights_from_a_file_in_the_official_dinov2_register_layout(tmp_path) -> None:
    """DINOv2's own checkpoints keep the class token's position in ``pos_embed`` and call the
    registers ``register_tokens``; timm's filter maps them, and the features are the same."""
    from safetensors.torch import save_file

    vfm = load_vfm("tiny-dinov2-reg")
    timm_state = vfm.model.state_dict()
    cls_position = torch.randn(1, 1, vfm.width)
    official = {k: v for k, v in timm_state.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    official["register_tokens"] = timm_state["reg_token"]
    official["cls_token"] = timm_state["cls_token"] - cls_position
    official["pos_embed"] = torch.cat([cls_position, timm_state["pos_embed"]], dim=1)
    official["mask_token"] = torch.zeros(1, vfm.width)
    path = tmp_path / "dinov2_reg.safetensors"
    save_file({k: v.contiguous() for k, v in official.items()}, str(path))
    with torch.random.fork_rng():
        torch.manual_seed(1)  # the file, not the seed, must decide the weights
        loaded = load_vfm(f"tiny-dinov2-reg@{path}")
    images = torch.randn(1, 3, 84, 84)
    # cls_token - position + position rounds in float32
    torch.testing.assert_close(loaded(images).tokens, vfm(images).tokens, atol=1e-4, rtol=1e-4)


def test_spellings_and_their_errors(tmp_path) -> None:
    assert parse_vfm("dino_vitb8") == (VFM_MODELS["dino_vitb8"], None)
    assert parse_vfm("dinov2_vitb14_reg@random")[1] == "random"
    with pytest.raises(ConfigError, match="dinov2_vitb14_reg"):
        parse_vfm("dinov2_vitb14_regs")
    with pytest.raises(WeightsError, match="no weights file"):
        load_vfm(f"tiny-dino8@{tmp_path / 'missing.pth'}")
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, str(wrong))
    with pytest.raises(WeightsError, match="does not hold the weights"):
        load_vfm(f"tiny-dino8@{wrong}")


def test_every_listed_spelling_says_whether_it_downloads() -> None:
    rows = backbone_rows()
    assert {row.setting for row in rows} == {"clip", "vfm"}
    by_name = {row.spelling: row for row in rows}
    assert by_name["tiny-dinov2-reg"].download == "no"
    assert by_name["dino_vitb8"].download.startswith("yes")
    assert by_name["open_clip:ARCH"].download == "no"
    for name in (
        "dino_vits16",
        "dino_vitb16",
        "dino_vitb8",
        "dinov2_vitb14",
        "dinov2_vitb14_reg",
        "sam_vit_b",
    ):
        assert name in by_name


@pytest.mark.parametrize(
    ("method", "preset", "clip"),
    [
        ("maskclip", "vit-l14", "openai/clip-vit-large-patch14"),
        ("sclip", "vit-l14", "openai/clip-vit-large-patch14"),
        ("naclip", "vit-l14-no-pamr", "openai/clip-vit-large-patch14"),
        ("clearclip", "vit-l14", "openai/clip-vit-large-patch14"),
        ("clearclip", "openclip-l14", "open_clip:ViT-L-14/laion2b_s32b_b82k"),
        ("clearclip", "metaclip-b16", "open_clip:ViT-B-16-quickgelu/metaclip_fullcc"),
    ],
)
def test_backbone_presets_change_the_backbone_and_nothing_else(method: str, preset: str, clip: str) -> None:
    from textseg.registry import METHODS

    spec = METHODS.get(method)
    base = "no-pamr" if preset.endswith("no-pamr") else "paper"
    for benchmark in ("voc21", "ade20k"):
        ours = spec.resolve(preset, {}, benchmark=benchmark).model
        paper = spec.resolve(base, {}, benchmark=benchmark).model
        assert ours.clip == clip
        assert dataclasses.replace(ours, clip=paper.clip) == paper


def test_block_outputs_and_attention_maps_compose_the_tower() -> None:
    from textseg.clip import CLIPBackbone
    from textseg.clip.blocks import attention, attention_map, merge_heads, qkv

    vision = CLIPBackbone.load("tiny", text_cache=False).vision
    images = torch.randn(1, 3, 64, 48)
    outputs, grid = vision.block_outputs(images, "scale")
    before_last, same_grid = vision.tokens_before_last(images, "scale")
    assert len(outputs) == len(vision.layers) + 1 and grid == same_grid
    assert torch.equal(outputs[-2], before_last)
    layer = vision.layers[1]
    h = layer.layer_norm1(outputs[1])
    probs = attention_map(layer.self_attn, h)
    assert torch.allclose(probs.sum(-1), torch.ones(()))
    _, _, v = qkv(layer.self_attn, h)
    torch.testing.assert_close(merge_heads(probs @ v), attention(layer.self_attn, h), atol=1e-6, rtol=1e-5)
