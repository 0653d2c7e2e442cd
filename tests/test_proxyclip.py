"""ProxyCLIP: the proxy attention by hand, the last block against the official formula (OpenCLIP's
sequence-first layout, ``custom_attn`` in mc-lan/ProxyCLIP ``open_clip/transformer.py:560-587``),
per-image batching, padding to 56, and the presets against the official configs."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from textseg.api import Vocabulary
from textseg.errors import ConfigError
from textseg.methods.proxyclip import SPEC, ProxyCLIP, proxy_attention, proxy_values
from textseg.registry import BENCHMARKS, PROTOCOLS


@pytest.fixture(scope="module")
def proxyclip() -> ProxyCLIP:
    torch.manual_seed(0)
    return SPEC.create("tiny").eval()


def test_proxy_attention_by_hand() -> None:
    # Three tokens with features (1, 0), (0, 1), (1, 1): cosines 0 and 1/√2 off the diagonal.
    features = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]).view(1, 2, 1, 3)
    r = 1 / math.sqrt(2)
    mean = (3 + 4 * r) / 9
    beta, gamma = 0.8, 3.0
    diag, off = gamma * (1 - beta * mean), gamma * (r - beta * mean)  # both > 0; cos 0 -> masked
    assert diag > 0 and off > 0 and gamma * (0 - beta * mean) < 0
    e_diag, e_off = math.exp(diag), math.exp(off)
    expected = torch.tensor(
        [
            [e_diag, 0, e_off],
            [0, e_diag, e_off],
            [e_off, e_off, e_diag],
        ]
    )
    expected = expected / expected.sum(dim=1, keepdim=True)
    actual = proxy_attention(features, beta, gamma)
    torch.testing.assert_close(actual[0], expected)
    # With the official β = 1.2 the off-diagonal cosines fall below β·mean: each token keeps itself.
    torch.testing.assert_close(proxy_attention(features, 1.2, 3.0)[0], torch.eye(3))


def test_proxy_attention_mean_is_per_image_and_uniform_windows_stay_finite() -> None:
    torch.manual_seed(1)
    a, b = torch.randn(1, 8, 3, 4), torch.randn(1, 8, 3, 4)
    both = proxy_attention(torch.cat([a, b]), 1.2, 3.0)
    torch.testing.assert_close(both, torch.cat([proxy_attention(a, 1.2, 3.0), proxy_attention(b, 1.2, 3.0)]))
    # Identical features: S = 1 everywhere, every entry below β·mean = 1.2 (NaN officially): unmasked.
    flat = proxy_attention(torch.ones(1, 8, 2, 2), 1.2, 3.0)
    torch.testing.assert_close(flat, torch.full((1, 4, 4), 0.25))


def _official_custom_attn(layer, x, ex_feats, grid, beta=1.2, gamma=3.0):
    """``custom_attn`` transcribed on OpenCLIP's layout: ``x`` ``[N, B, C]`` (sequence first), the
    in-projection as one ``[3C, C]`` matrix, heads folded into the batch."""
    attn = layer.self_attn
    heads, (_, bsz, width) = attn.num_heads, x.shape
    head_dim = width // heads
    weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    bias = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
    _, _, v = F.linear(layer.layer_norm1(x), weight, bias).chunk(3, dim=-1)  # q, k unused
    v = v.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
    _, _, height, width_ = ex_feats.shape
    unit = F.normalize(ex_feats.flatten(2, 3), dim=1)
    similarity = torch.einsum("bcm,bcn->bmn", unit, unit)
    similarity = (similarity - torch.mean(similarity) * beta) * gamma
    similarity[similarity < 0.0] = float("-inf")
    mask = similarity.unsqueeze(1).repeat(1, heads, 1, 1).reshape(bsz * heads, height * width_, -1)
    weights = F.softmax(mask, dim=-1)
    v = v[:, 1:, :].reshape(bsz * heads, grid[0], grid[1], head_dim).permute(0, 3, 1, 2)
    v = F.interpolate(v, size=(height, width_), mode="bilinear", align_corners=False)
    v = v.permute(0, 2, 3, 1).reshape(bsz * heads, height * width_, head_dim)
    out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(-1, bsz, width)
    return attn.out_proj(out)


def test_last_block_matches_the_official_formula(proxyclip: ProxyCLIP) -> None:
    torch.manual_seed(2)
    vision = proxyclip.clip.vision
    x, grid = vision.tokens_before_last(torch.randn(1, 3, 112, 112), "scale")  # CLIP grid 7 x 7
    ex_feats = torch.randn(1, 16, 14, 14)  # a proxy grid twice as fine (DINO /8 against CLIP /16)
    expected = _official_custom_attn(vision.last_layer, x.transpose(0, 1), ex_feats, grid).transpose(0, 1)
    attention = proxy_attention(ex_feats, 1.2, 3.0)
    actual = proxy_values(vision.last_layer, x, grid, attention, (14, 14))
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_segment_pads_to_56_and_scores_on_the_proxy_grid(proxyclip: ProxyCLIP) -> None:
    vocab = Vocabulary.from_names(["cat", "car, automobile"])
    text = proxyclip.encode_vocabulary(vocab)
    torch.manual_seed(3)
    images = torch.randn(2, 3, 112, 168)
    scores = proxyclip.segment(images, text)
    assert scores.shape == (2, 3, 14, 21)  # tiny-dino8: 112 / 8 x 168 / 8, no padding needed
    one = proxyclip.segment(images[1:], text)
    torch.testing.assert_close(scores[1:], one, rtol=1e-5, atol=1e-6)  # per image, as batch 1 officially
    # 100 x 150 is centred in 112 x 168 (6 / 6 rows, 9 / 9 columns); scores come back at the window size.
    padded = F.pad(images[:, :, 6:106, 9:159], (9, 9, 6, 6))
    small = proxyclip.segment(images[:, :, 6:106, 9:159], text)
    full = F.interpolate(proxyclip.segment(padded, text), (112, 168), mode="bilinear")
    torch.testing.assert_close(small, full[..., 6:106, 9:159])


def test_proxy_sees_imagenet_normalised_resized_windows(proxyclip: ProxyCLIP) -> None:
    sam = SPEC.create("tiny", {"vfm": "tiny-sam", "vfm_size": 64})
    images = torch.randn(1, 3, 112, 112)
    features = sam.proxy_features(images)
    assert features.shape == (1, 16, 4, 4)  # the neck's 16 channels on 64 / 16
    rgb = images * torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    rgb = rgb + torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    imagenet = (rgb - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    expected = sam.vfm(F.interpolate(imagenet, (64, 64), mode="bilinear")).patches
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)


#: benchmark -> (short side, crop, stride, prob_thd), from mc-lan/ProxyCLIP configs/cfg_*.py at e7b767f.
OFFICIAL = {
    "voc21": (336, 336, 112, 0.2),
    "context60": (336, 336, 112, 0.15),
    "coco_object": (336, 336, 112, 0.25),
    "voc20": (336, 336, 112, 0.0),
    "context59": (336, 336, 112, 0.0),
    "coco_stuff": (336, 336, 112, 0.0),
    "cityscapes": (448, 224, 112, 0.0),
    "ade20k": (448, 336, 112, 0.0),
}


def test_presets_and_protocol_reproduce_the_official_configs() -> None:
    for benchmark, (short, crop, stride, prob_thd) in OFFICIAL.items():
        run = SPEC.resolve("paper", benchmark=benchmark)
        protocol = PROTOCOLS.get(run.protocol).for_benchmark(benchmark)
        assert (protocol.short_side, protocol.max_long_side, protocol.crop, protocol.stride) == (
            short,
            2048,
            crop,
            stride,
        ), benchmark
        model = run.model
        assert (model.logit_scale, model.bg_thresh, model.beta, model.gamma) == (40.0, prob_thd, 1.2, 3.0)
        assert (model.clip, model.vfm, model.vfm_size) == ("openai/clip-vit-base-patch16", "dino_vitb8", None)
        assert (model.pad, model.pad_multiple, model.positions, model.pamr, model.area_thd) == (
            True,
            56,
            "scale",
            False,
            None,
        )
        assert protocol.templates == "openai80" and protocol.background_query
        assert protocol.mean == (122.771, 116.746, 104.094) and protocol.std == (68.501, 66.632, 70.323)
        tiny = dataclasses.replace(model, clip="tiny", vfm="tiny-dino8")
        assert SPEC.resolve("tiny", benchmark=benchmark).model == tiny
        mae = SPEC.resolve("mae", benchmark=benchmark).model
        assert (mae.vfm, mae.vfm_size) == ("mae_vitb16", crop)  # MAE is built for slide_crop
    assert SPEC.resolve("sam").model.vfm_size == 1024
    assert SPEC.resolve("vit-h14").model.clip == "open_clip:ViT-H-14/laion2b_s32b_b79k"
    assert SPEC.resolve("dinov2").model.vfm == "dinov2_vitb14_reg"


def test_vocabulary_is_proxyclips_name_files() -> None:
    synonyms = PROTOCOLS.get("proxyclip").synonyms
    voc = BENCHMARKS.get("voc21").vocabulary(("{}",), synonyms, True)
    assert len(voc.classes[0]) == 26 and voc.classes[4] == ("ship",) and voc.classes[15] == ("person",)
    coco = BENCHMARKS.get("coco_object").vocabulary(("{}",), synonyms, True)
    assert len(coco.classes[0]) == 17 and coco.classes[0][-1] == "rail"
    assert BENCHMARKS.get("context60").vocabulary(("{}",), synonyms, True).classes[0] == ("background",)


def test_bad_settings_fail_early() -> None:
    with pytest.raises(ConfigError, match="last_block"):
        SPEC.create("tiny", {"last_block": "qq"})
    with pytest.raises(ConfigError, match="vfm_size"):
        SPEC.create("tiny", {"vfm_size": 4})
    with pytest.raises(ConfigError, match="set vfm_size"):
        SPEC.create("tiny", {"vfm": "tiny-sam"})
    with pytest.raises(ConfigError, match="unknown vision foundation model"):
        SPEC.create("tiny", {"vfm": "dino_vitb9"})


def test_a_protocol_with_other_statistics_is_refused() -> None:
    """The proxy's pixels come from undoing CLIP's normalisation: under ImageNet statistics they would
    be wrong without a word, so the harness refuses the pair."""
    from textseg.evaluation.protocol import check_input_normalisation

    method = SPEC.create("tiny")
    check_input_normalisation(method, PROTOCOLS.get("proxyclip"))  # its own: accepted
    with pytest.raises(ConfigError, match="protocol 'tcl' gives mean"):
        check_input_normalisation(method, PROTOCOLS.get("tcl"))
