"""OpenCLIP models converted into transformers' CLIP: dense features equal the official recipes
computed with open_clip's own modules, activations are checked, unsupported towers are refused."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from textseg.clip import CLIPBackbone
from textseg.clip.loading import load_clip
from textseg.errors import ConfigError, WeightsError

open_clip = pytest.importorskip("open_clip")

ARCHS = ["textseg-tiny-vit", "textseg-tiny-vit-quickgelu"]


@pytest.fixture(scope="module")
def pair():
    """``arch -> (open_clip's model, textseg's backbone)``, each built once per module."""
    built: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in built:
            built[arch] = (reference_model(arch), CLIPBackbone.load(f"open_clip:{arch}", text_cache=False))
        return built[arch]

    return get


def reference_model(arch: str):
    """open_clip's own model with the weights textseg builds for ``open_clip:ARCH`` (seed 0)."""
    from textseg.clip.openclip import RANDOM_SEED, open_clip_module

    open_clip_module()  # registers the tiny architectures
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        return open_clip.create_model(arch, pretrained=None, pretrained_text=False).eval()


# -- the official recipes, on open_clip's modules (each written from the method's own code) ---------
def positions(visual, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """The class row kept; the patch table resized bicubically by size (MaskCLIP, TCL) or with the
    ``+0.1`` scale factor (SCLIP, ClearCLIP, NACLIP)."""
    table = visual.positional_embedding
    side = int((table.shape[0] - 1) ** 0.5)
    patches = table[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
    h, w = grid
    if (h, w) != (side, side):
        if mode == "size":
            patches = F.interpolate(patches, size=(h, w), mode="bicubic", align_corners=False)
        else:
            factor = ((h + 0.1) / side, (w + 0.1) / side)
            patches = F.interpolate(patches, scale_factor=factor, mode="bicubic", align_corners=False)
    return torch.cat([table[:1], patches.permute(0, 2, 3, 1).reshape(h * w, -1)])


def before_last(visual, images: torch.Tensor, mode: str) -> tuple[torch.Tensor, tuple[int, int]]:
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + positions(visual, grid, mode))
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x, grid


def heads_qkv(attn, h: torch.Tensor):
    """``in_proj`` of ``nn.MultiheadAttention`` split into per-head q, k, v ``[B, heads, N, d]``."""
    b, n, c = h.shape
    q, k, v = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.reshape(b, n, attn.num_heads, c // attn.num_heads).transpose(1, 2)  # noqa: E731
    return split(q), split(k), split(v)


def attend(logits: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    b, heads, n, d = v.shape
    return (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, heads * d)


def official_last_block(block, x: torch.Tensor, grid: tuple[int, int], recipe: str) -> torch.Tensor:
    attn = block.attn
    q, k, v = heads_qkv(attn, block.ln_1(x))
    s = q.shape[-1] ** -0.5
    if recipe == "maskclip":  # chongzhou96/MaskCLIP: v path, residual and FFN kept
        b, heads, n, d = v.shape
        x = x + attn.out_proj(v.transpose(1, 2).reshape(b, n, heads * d))
        return x + block.mlp(block.ln_2(x))
    if recipe == "sclip":  # wangf3014/SCLIP custom_attn(csa=True), then residual and MLP
        b, heads, n, d = v.shape
        both = (q @ q.transpose(-1, -2) * s).softmax(-1) + (k @ k.transpose(-1, -2) * s).softmax(-1)
        x = x + attn.out_proj((both @ v).transpose(1, 2).reshape(b, n, heads * d))
        return x + block.mlp(block.ln_2(x))
    if recipe == "clearclip":  # mc-lan/ClearCLIP custom_attn, q-q, ignore_residual
        return attn.out_proj(attend(q @ q.transpose(-1, -2) * s, v))
    assert recipe == "naclip"  # sinahmr/NACLIP, arch reduced, attn naclip, std 5
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).float()
    omega = torch.exp(-(torch.cdist(pos, pos) ** 2) / (2 * 5.0**2))
    omega = F.pad(omega, (1, 0, 1, 0))
    return attn.out_proj(attend(k @ k.transpose(-1, -2) * s + omega, v))


def official_dense(model, images: torch.Tensor, recipe: str) -> torch.Tensor:
    visual = model.visual
    mode = "size" if recipe == "maskclip" else "scale"
    x, grid = before_last(visual, images, mode)
    x = official_last_block(visual.transformer.resblocks[-1], x, grid, recipe)
    feats = visual.ln_post(x) @ visual.proj
    return feats[:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *grid)


VARIANTS = {"maskclip": ("self", "size"), "sclip": ("csa", "scale"), "clearclip": ("qq", "scale")}
VARIANTS["naclip"] = ("naclip", "scale")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("recipe", list(VARIANTS))
@pytest.mark.parametrize("side", [64, 224])
def test_dense_features_equal_the_official_recipe_on_open_clip_modules(
    pair, arch: str, recipe: str, side: int
) -> None:
    ref, ours = pair(arch)
    torch.manual_seed(1)
    images = torch.randn(2, 3, side, side)
    variant, mode = VARIANTS[recipe]
    with torch.no_grad():
        expected = official_dense(ref, images, recipe)
        got = ours.vision.dense(images, variant, mode)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_image_and_text_embeddings_equal_open_clips(pair, arch: str) -> None:
    ref, ours = pair(arch)
    images = torch.randn(2, 3, 224, 224)
    prompts = ["a photo of a cat.", "itap of a potted plant.", "a bad photo of the tvmonitor"]
    with torch.no_grad():
        torch.testing.assert_close(
            ours.vision.global_embedding(images), ref.encode_image(images), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            ours.text.encode_texts(prompts), ref.encode_text(open_clip.tokenize(prompts)), atol=1e-5, rtol=0
        )
    assert torch.equal(ours.text.tokenize(prompts).cpu(), open_clip.tokenize(prompts))
    assert ours.logit_scale.item() == pytest.approx(ref.logit_scale.item())


def test_activation_follows_the_architecture_and_matters(tmp_path) -> None:
    """The same weights under the GELU and the QuickGELU architecture give different features: the
    activation cannot be left to chance."""
    from safetensors.torch import save_file

    gelu = reference_model("textseg-tiny-vit")
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in gelu.state_dict().items()}, str(path))
    as_gelu = CLIPBackbone.load(f"open_clip:textseg-tiny-vit/{path}", text_cache=False)
    as_quick = CLIPBackbone.load(f"open_clip:textseg-tiny-vit-quickgelu/{path}", text_cache=False)
    assert as_gelu.hf_config.vision_config.hidden_act == "gelu"
    assert as_quick.hf_config.vision_config.hidden_act == "quick_gelu"
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            as_gelu.vision.dense(images, "qq", "scale"),
            official_dense(gelu, images, "clearclip"),
            atol=1e-5,
            rtol=0,
        )
        assert not torch.allclose(
            as_gelu.vision.dense(images, "qq"), as_quick.vision.dense(images, "qq"), atol=1e-4
        )


@pytest.mark.parametrize(
    ("spelling", "fix"),
    [
        ("open_clip:ViT-B-16/openai", "open_clip:ViT-B-16-quickgelu/openai"),
        ("open_clip:ViT-B-32/laion400m_e31", "open_clip:ViT-B-32-quickgelu/laion400m_e31"),
    ],
)
def test_a_release_trained_with_the_other_activation_is_refused_before_any_download(
    spelling: str, fix: str
) -> None:
    with pytest.raises(ConfigError, match="QuickGELU") as info:
        load_clip(spelling)
    assert fix in str(info.value)


def test_unknown_architectures_tags_and_unsupported_towers(tmp_path) -> None:
    with pytest.raises(ConfigError, match="ViT-B-16"):
        load_clip("open_clip:ViT-B-61")
    with pytest.raises(ConfigError, match="laion2b_s34b_b88k"):
        load_clip("open_clip:ViT-B-16/laion9b")
    with pytest.raises(ConfigError, match=r"timm_model_name|custom_text"):
        load_clip("open_clip:ViT-B-16-SigLIP")
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in reference_model("textseg-tiny-vit").state_dict().items()}, str(wrong)
    )
    with pytest.raises(WeightsError, match="do not fit"):
        load_clip(f"open_clip:ViT-B-32/{wrong}")


@pytest.mark.slow
def test_bench_on_an_open_clip_backbone_names_it_in_the_record(tmp_path, capsys) -> None:
    """``textseg bench --preset tiny --set clip=open_clip:ARCH`` runs offline and records the spelling."""
    from textseg.cli import main
    from textseg.evaluation.records import read_record
    from textseg.registry import BENCHMARKS

    spec = BENCHMARKS.get("voc21")
    spec.write_synthetic(tmp_path / "data", 1, seed=0)
    args = ["bench", "--method", "sclip", "--preset", "tiny", "--set", "clip=open_clip:textseg-tiny-vit"]
    args += ["--dataset", "voc21", "--data-root", str(tmp_path / "data"), "--limit", "1"]
    assert main([*args, "--output", str(tmp_path / "out"), "--num-workers", "0"]) == 0
    assert "random weights" in capsys.readouterr().err
    (path,) = (tmp_path / "out").glob("*.json")
    record = read_record(path)
    assert record.config["clip"] == "open_clip:textseg-tiny-vit"
    assert record.overrides == {"clip": "open_clip:textseg-tiny-vit"}


def test_a_cached_release_file_is_checked_like_its_tag(tmp_path) -> None:
    """A file inside the Hugging Face cache of a known release (here OpenAI's ViT-B/16, QuickGELU)
    is refused under a GELU architecture, as its tag would be."""
    from safetensors.torch import save_file

    snapshot = tmp_path / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    path = snapshot / "open_clip_model.safetensors"
    weights = reference_model("textseg-tiny-vit-quickgelu").state_dict()
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    with pytest.raises(ConfigError, match="QuickGELU") as info:
        load_clip(f"open_clip:textseg-tiny-vit/{path}")
    assert "open_clip:textseg-tiny-vit-quickgelu/openai" in str(info.value)
    model, _ = load_clip(f"open_clip:textseg-tiny-vit-quickgelu/{path}")
    assert model.config.vision_config.hidden_act == "quick_gelu"
