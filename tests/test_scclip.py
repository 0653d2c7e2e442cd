"""SC-CLIP: anomaly tokens, self-calibration and multi-level fusion against hand-computed numbers and
the official formulas; presets against SuleBai/SC-CLIP's configs."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from clip_reference import _block, _ln, random_openai_state
from torch import nn

from textseg.errors import ConfigError
from textseg.methods.scclip import SPEC
from textseg.methods.scclip.model import (
    aggregate,
    anomalous_tokens,
    calibrated_attention,
    fill_anomalies,
    floored,
    local_outlier_factor,
)
from textseg.registry import PROTOCOLS
from textseg.testing.tiny_clip import ensure_tiny_clip


def test_lof_is_the_mean_ratio_of_k_distances() -> None:
    # Points 0, 1, 2, 3, 10 on a line, k = 2, squared distances. k-distances: 4, 1, 1, 4, 64;
    # neighbours: {1, 2}, {0, 2}, {1, 3}, {2, 1}, {3, 2}. LOF(p) = mean_o d_k(p) / d_k(o).
    points = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    expected = torch.tensor([4.0, (1 / 4 + 1) / 2, (1 + 1 / 4) / 2, 4.0, (64 / 4 + 64 / 1) / 2])
    torch.testing.assert_close(local_outlier_factor(points, 2), expected)


def test_anomalies_are_the_tokens_above_the_95th_lof_percentile() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(40, 8, generator=g)
    tokens[[7, 31]] += 25.0  # two far tokens among 40: 5 % of them
    mask = anomalous_tokens(tokens, "lof")
    assert mask.nonzero().flatten().tolist() == [7, 31]
    # "norm" (the first release): the 10 tokens of largest norm, whatever their LOF
    norms = tokens.norm(dim=1)
    assert set(anomalous_tokens(tokens, "norm").nonzero().flatten().tolist()) == set(
        norms.topk(10).indices.tolist()
    )
    # fewer than 31 tokens: k is capped at N - 1 instead of failing
    assert anomalous_tokens(tokens[:12], "lof").shape == (12,)


def test_anomalies_become_the_mean_of_their_normal_neighbours() -> None:
    maps = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    anomalies = torch.zeros(1, 3, 3, dtype=torch.bool)
    anomalies[0, 1, 1] = anomalies[0, 0, 0] = True
    out = fill_anomalies(maps, anomalies)[0, 0]
    assert out[1, 1].item() == pytest.approx((2 + 3 + 4 + 6 + 7 + 8 + 9) / 7)  # the corner 1 is excluded
    assert out[0, 0].item() == pytest.approx(
        (2 + 4) / 2
    )  # 5 is an anomaly; outside the map counts as missing
    untouched = torch.ones(3, 3, dtype=torch.bool)
    untouched[1, 1] = untouched[0, 0] = False
    assert torch.equal(out[untouched], maps[0, 0][untouched])
    # an anomaly without a normal neighbour keeps its value
    lonely = torch.tensor([[[1.0, 2.0]]])[None]
    assert torch.equal(fill_anomalies(lonely, torch.ones(1, 1, 2, dtype=torch.bool)), lonely)


def test_aggregation_uses_the_floored_row_normalised_similarity() -> None:
    similarity = torch.tensor([[[1.0, 0.5, 0.3], [0.5, 1.0, 0.42], [0.3, 0.42, 1.0]]])
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]])
    out = aggregate(tokens, floored(similarity))[0]
    # row 0: weights 1, 0.5, 0 (0.3 < 0.4) over 1.5 (+1e-6); row 2: 0, 0.42, 1 over 1.42
    torch.testing.assert_close(out[0], torch.tensor([1.0, 0.5]) / (1.5 + 1e-6))
    torch.testing.assert_close(
        out[2], (0.42 * torch.tensor([0.0, 1.0]) + torch.tensor([2.0, 2.0])) / (1.42 + 1e-6)
    )


def _identity_layer(width: int, heads: int) -> nn.Module:
    """A last block whose layer norm, value and output projections are the identity and whose keys are 0."""
    attn = SimpleNamespace(
        num_heads=heads,
        q_proj=nn.Linear(width, width),
        k_proj=nn.Linear(width, width),
        v_proj=nn.Identity(),
        out_proj=nn.Identity(),
    )
    for proj in (attn.q_proj, attn.k_proj):
        nn.init.zeros_(proj.weight)
        nn.init.zeros_(proj.bias)
    layer = nn.Module()
    layer.self_attn = attn
    layer.layer_norm1 = nn.Identity()
    return layer


def test_calibrated_attention_averages_the_mid_layer_map_and_key_attention() -> None:
    # S_mid = [[1, .2], [.2, 1]]: mean .6, M = 3 (S - .6) = ±1.2, negatives masked -> softmax(M) = I.
    # Keys are 0, so softmax(s k kᵀ) is uniform: A = ½ (I + ½ 1) = [[.75, .25], [.25, .75]] per head.
    tokens = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]])
    mid = torch.tensor([[[1.0, 0.2], [0.2, 1.0]]])
    out = calibrated_attention(_identity_layer(4, heads=2), tokens, mid)
    expected = torch.tensor([[0.75, 0.25], [0.25, 0.75]]) @ tokens[0]
    torch.testing.assert_close(out[0], expected)


# -- the whole forward against the official formulas, in OpenAI's layout ----------------------------
def _reference_features(
    s: dict[str, torch.Tensor], images: torch.Tensor, cfg, average: bool = False
) -> torch.Tensor:
    """SC-CLIP's ``VisionTransformer.forward`` written from its formulas on an OpenAI state dict
    (square grid at the training resolution, batch 1): LOF with its own k-distance, 3x3 neighbour
    mean, pre/post aggregation, ½(softmax(M) + softmax(kk)), + res_cls · CLS, summed mid layers."""
    heads, width = 2, s["visual.conv1.weight"].shape[0]
    conv = s["visual.conv1.weight"]
    x = F.conv2d(images, conv, stride=conv.shape[-1])
    side = x.shape[-1]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s["visual.class_embedding"].expand(1, 1, -1), x], 1) + s["visual.positional_embedding"]
    x = _ln(x, s, "visual.ln_pre")
    depth = len({k.split(".")[3] for k in s if k.startswith("visual.transformer.resblocks.")})
    outs = []
    for i in range(depth - 1):
        x = _block(x, s, f"visual.transformer.resblocks.{i}", heads, None)
        outs.append(x[0])
    n = side * side
    p = outs[-1][1:]
    d = torch.stack([torch.stack([((p[i] - p[j]) ** 2).sum() for j in range(n)]) for i in range(n)])
    k = min(30, n - 1)
    kdist = d.sort(dim=1).values[:, k]  # column 0 is the token itself
    nearest = d.argsort(dim=1)[:, 1 : k + 1]
    lof = torch.stack([(kdist[i] / kdist[nearest[i]]).mean() for i in range(n)])
    bad = lof > torch.quantile(lof, 0.95)

    def fix(t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        for i in bad.nonzero().flatten().tolist():
            r, c = divmod(i, side)
            ring = [
                (r + dr) * side + c + dc
                for dr in (-1, 0, 1)
                for dc in (-1, 0, 1)
                if (dr or dc)
                and 0 <= r + dr < side
                and 0 <= c + dc < side
                and not bad[(r + dr) * side + c + dc]
            ]
            if ring:
                out[i] = t[ring].mean(0)
        return out

    def sim(t: torch.Tensor) -> torch.Tensor:
        u = t / t.norm(dim=1, keepdim=True)
        return u @ u.T

    def mix(t: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        corr = torch.where(corr < 0.4, 0.0, corr)
        return corr / (corr.sum(1, keepdim=True) + 1e-6) @ t

    p = f"visual.transformer.resblocks.{depth - 1}"

    def attend(t: torch.Tensor, mid: torch.Tensor) -> torch.Tensor:
        y = _ln(t, s, f"{p}.ln_1") @ s[f"{p}.attn.in_proj_weight"].t() + s[f"{p}.attn.in_proj_bias"]
        _, kk, v = y.split(width, dim=-1)
        m = 3 * (mid - mid.mean())
        m = torch.where(m < 0, -math.inf, m).softmax(-1)
        out = []
        for h in range(heads):
            kh, vh = kk[:, h * 64 : (h + 1) * 64], v[:, h * 64 : (h + 1) * 64]
            out.append((m + (kh @ kh.T / 8).softmax(-1)) / 2 @ vh)
        return torch.cat(out, 1) @ s[f"{p}.attn.out_proj.weight"].t() + s[f"{p}.attn.out_proj.bias"]

    mid = sim(fix(outs[cfg.pre_adjust_idx][1:]))
    post = sim(outs[cfg.post_adjust_idx][1:])
    x = attend(mix(fix(outs[-1][1:]), mid), mid) + cfg.res_cls * outs[-1][0]
    x = mix(x, post)
    summed = sum(outs[cfg.multi_start_idx : cfg.multi_end_idx])
    if average:  # not SC-CLIP: only to show that the sum matters
        summed = summed / (cfg.multi_end_idx - cfg.multi_start_idx)
    x = x + mix(attend(summed[1:], mid) + cfg.res_cls * summed[0], post)
    return _ln(x, s, "visual.ln_post") @ s["visual.proj"]


def test_features_follow_the_official_formulas(tmp_path: Path) -> None:
    state = {k: v.half() for k, v in random_openai_state(layers=5, grid=6, seed=3).items()}
    torch.save(state, tmp_path / "clip.pt")
    settings = {"pre_adjust_idx": 3, "post_adjust_idx": 0, "multi_start_idx": 1, "multi_end_idx": 4}
    method = SPEC.create(
        "paper", {"clip": str(tmp_path / "clip.pt"), "tokenizer": str(ensure_tiny_clip()), **settings}
    ).eval()
    images = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = method.features(images)[0].flatten(1).T
        reference = _reference_features({k: v.float() for k, v in state.items()}, images, method.config)
    torch.testing.assert_close(ours, reference, atol=2e-5, rtol=1e-4)
    # the multi-level branch sums its layers (so its class token weighs 3x here); a mean would differ
    averaged = _reference_features(
        {k: v.float() for k, v in state.items()}, images, method.config, average=True
    )
    assert not torch.allclose(ours, averaged, atol=1e-3)


#: SuleBai/SC-CLIP configs (HEAD 0417ba9; ViT-L/14 lines of 74471da): benchmark ->
#: (short side, logit scale, prob_thd, area_thd) for ViT-B/16 and for ViT-L/14. Windows 224/112.
OFFICIAL = {
    "voc21": ((336, 50.0, 0.15, 0.1), (336, 40.0, 0.2, 0.1)),
    "context60": ((336, 40.0, 0.15, None), (336, 40.0, 0.15, None)),
    "coco_object": ((336, 55.0, 0.35, None), (336, 40.0, 0.25, None)),
    "voc20": ((336, 40.0, 0.0, None),) * 2,
    "context59": ((336, 40.0, 0.0, None),) * 2,
    "coco_stuff": ((336, 40.0, 0.0, None),) * 2,
    "cityscapes": ((560, 40.0, 0.0, None),) * 2,
    "ade20k": ((336, 40.0, 0.0, None),) * 2,
}


@pytest.mark.parametrize("preset", ["paper", "l14"])
def test_presets_reproduce_the_official_configs(preset: str) -> None:
    large = preset == "l14"
    for benchmark, settings in OFFICIAL.items():
        short, scale, prob_thd, area_thd = settings[large]
        run = SPEC.resolve(preset, benchmark=benchmark)
        protocol = PROTOCOLS.get(run.protocol).for_benchmark(benchmark)
        assert (protocol.short_side, protocol.crop, protocol.stride, protocol.synonyms) == (
            short,
            224,
            112,
            "sclip",
        )
        assert protocol.templates == "openai80" and protocol.background_query
        model = run.model
        assert (model.logit_scale, model.bg_thresh, model.area_thd, model.pamr) == (
            scale,
            prob_thd,
            area_thd,
            False,
        )
        indices = (model.pre_adjust_idx, model.post_adjust_idx, model.multi_start_idx, model.multi_end_idx)
        assert (indices, model.res_cls) == (((16, 6, 8, 19), 0.1) if large else ((8, 3, 3, 10), 0.3))
        assert model.clip == ("openai/clip-vit-large-patch14" if large else "openai/clip-vit-base-patch16")
        assert (model.positions, model.outliers) == ("scale", "lof")


def test_bad_settings_fail_early() -> None:
    with pytest.raises(ConfigError, match="pre_adjust_idx=8 is not a block output of this 3-block CLIP"):
        SPEC.create("tiny", {"pre_adjust_idx": 8})
    with pytest.raises(ConfigError, match="multi_end_idx"):
        SPEC.create("tiny", {"multi_end_idx": 3})
    with pytest.raises(ConfigError, match="no setting 'last_block'"):
        SPEC.create("tiny", {"last_block": "csa"})
    with pytest.raises(ConfigError, match="no setting 'pad'"):
        SPEC.create("tiny", {"pad": True})
