"""SCLIP, ClearCLIP, NACLIP: per-name cosines, the whole-image post-processing, presets and protocols."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from textseg.api import MethodSpec, Vocabulary
from textseg.clip import get_last_block
from textseg.clip.segmentor import DenseCLIP, suppress_small_classes
from textseg.errors import ConfigError
from textseg.evaluation.inference import assign_labels
from textseg.evaluation.pamr import PAMR
from textseg.methods.clearclip import SPEC as CLEARCLIP
from textseg.methods.naclip import SPEC as NACLIP
from textseg.methods.sclip import SPEC as SCLIP
from textseg.registry import BENCHMARKS, PROTOCOLS
from textseg.testing.contract import check_inference

#: cat; car with a synonym; grass -> names: cat, car, automobile, grass
VOCAB = Vocabulary.from_names(["cat", "car, automobile", "grass"], ("a photo of a {}.", "art of the {}."))


def _images(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def sclip() -> DenseCLIP:
    return SCLIP.create("tiny").eval()  # logit scale 40, no area threshold


@torch.no_grad()
def test_segment_returns_raw_cosines_per_name(sclip: DenseCLIP) -> None:
    text = sclip.encode_vocabulary(VOCAB)
    names = sclip.clip.text.encode_classes(VOCAB.names, VOCAB.templates, "unit")
    torch.testing.assert_close(text.embeddings, names)
    images = _images(1, 3, 64, 96)
    features = F.normalize(sclip.clip.vision.dense(images, "csa", "scale"), dim=1)
    expected = torch.einsum("bchw,nc->bnhw", features, names)
    scores = sclip.segment(images, text)
    assert scores.shape == (1, 4, 4, 6) and sclip.score_channels(VOCAB) == 4
    torch.testing.assert_close(scores, expected)
    # ClearCLIP pads each window (centred) to a multiple of 16 and crops the upsampled map back
    clear = CLEARCLIP.create("tiny").eval()
    assert clear.segment(_images(1, 3, 50, 70), clear.encode_vocabulary(VOCAB)).shape == (1, 4, 50, 70)


def _probabilities(cosines: list[float], scale: float) -> list[float]:
    exps = [math.exp(scale * c) for c in cosines]
    return [e / sum(exps) for e in exps]


@torch.no_grad()
def test_postprocess_takes_the_softmax_over_names_before_the_synonym_max(sclip: DenseCLIP) -> None:
    cosines = [0.30, 0.28, 0.29, 0.10]  # cat, car, automobile, grass
    scores = torch.tensor(cosines).view(1, 4, 1, 1).expand(1, 4, 2, 3).clone()
    probs = sclip.postprocess(scores, torch.zeros(1, 3, 2, 3), sclip.encode_vocabulary(VOCAB))
    p = _probabilities(cosines, 40.0)
    expected = torch.tensor([p[0], max(p[1], p[2]), p[3]]).view(1, 3, 1, 1).expand(1, 3, 2, 3)
    torch.testing.assert_close(probs, expected)
    # the other order (one softmax over per-class maxima) gives other numbers
    assert not torch.allclose(probs[0, :, 0, 0], torch.tensor(_probabilities([0.30, 0.29, 0.10], 40.0)))


def test_area_threshold_zeroes_small_foreground_classes() -> None:
    # argmax map of a 2x10 image: class 0 (background) on 8 pixels, 1 on 9, 2 on 2, 3 on 1.
    # Foreground T = 12; area_thd 0.2 -> keep classes with n > 2.4: class 1 only.
    labels = torch.tensor([[0] * 8 + [1, 1], [1] * 7 + [2, 2, 3]])
    probs = F.one_hot(labels, 4).permute(2, 0, 1).float() * 0.5 + 0.1  # max 0.6, others 0.1
    probs[2, 1, 9] = 0.3  # the class-3 pixel's second choice is class 2
    out = suppress_small_classes(probs[None], 0.2)[0]
    torch.testing.assert_close(out[[0, 1]], probs[[0, 1]])
    assert out[2].abs().sum() == 0 and out[3].abs().sum() == 0
    assert out.argmax(0)[1, 9] == 0  # ties at 0.1 between background and class 1: argmax takes background
    # the boundary is strict: n_c == area_thd * T is removed (SCLIP keeps only n_c > area_thd * T)
    exact = suppress_small_classes(probs[None], 9 / 12)[0]
    assert exact[1].abs().sum() == 0
    # background is never removed, even when it covers nearly everything
    only_bg = suppress_small_classes(
        F.one_hot(torch.zeros(3, 3, dtype=torch.long), 2).permute(2, 0, 1)[None].float(), 0.1
    )
    assert only_bg[0, 0].sum() == 9


@torch.no_grad()
def test_postprocess_applies_the_area_threshold_after_the_synonym_max() -> None:
    sclip = SCLIP.create("tiny", benchmark_settings("voc21")).eval()
    assert sclip.config.area_thd == 0.1
    vocab = Vocabulary.from_names(["sky, wall", "cat", "car"], ("a photo of a {}.",), background_query=True)
    text = sclip.encode_vocabulary(vocab)
    scores = torch.zeros(1, 4, 1, 20)  # names: sky, wall, cat, car
    scores[0, 1, 0, :10] = 0.5  # background (via its 2nd name) wins 10 pixels
    scores[0, 2, 0, 10:19] = 0.5  # cat wins 9
    scores[0, 3, 0, 19] = 0.5  # car wins 1 <= 0.1 * 10 foreground pixels: removed
    probs = sclip.postprocess(scores, torch.zeros(1, 3, 1, 20), text)
    assert probs.shape == (1, 3, 1, 20)
    assert probs[0, 2].abs().sum() == 0 and probs[0, 1, 0, 10:19].min() > 0.9
    assert probs.argmax(1)[0, 0].tolist() == [0] * 10 + [1] * 9 + [0]


def benchmark_settings(benchmark: str) -> dict:
    return dict(SCLIP.presets["paper"].benchmarks[benchmark])


def _official_labels(probs: torch.Tensor, prob_thd: float) -> torch.Tensor:
    """The SCLIP family's rule: argmax, then pixels whose highest probability is below prob_thd -> 0."""
    labels = probs.argmax(1)
    labels[probs.max(1).values < prob_thd] = 0
    return labels


def _harness_labels(probs: torch.Tensor, bg_thresh: float) -> torch.Tensor:
    """The harness's own rule with background_query."""
    return assign_labels(probs.clone(), bg_thresh, background_query=True)


@pytest.mark.parametrize("threshold", [0.1, 0.15, 0.4, 0.5])
def test_background_threshold_equals_the_official_prob_thd_rule(threshold: float) -> None:
    logits = torch.randn(4, 6, 32, 32, generator=torch.Generator().manual_seed(1)) * 2
    probs = logits.softmax(1)
    official = _official_labels(probs, threshold)
    assert (official == 0).float().mean() > 0.05 and (official != 0).float().mean() > 0.05
    assert torch.equal(_harness_labels(probs, threshold), official)


def test_background_threshold_tie_case() -> None:
    """Where the highest probability equals prob_thd the official code keeps the class, the harness
    labels background (argmax takes the first of equal scores); a measure-zero case."""
    probs = torch.tensor([0.2, 0.5, 0.3]).view(1, 3, 1, 1)
    assert _official_labels(probs, 0.5).item() == 1
    assert _harness_labels(probs, 0.5).item() == 0


@torch.no_grad()
def test_naclip_refines_the_full_size_cosines_with_pamr_before_the_softmax() -> None:
    naclip = NACLIP.create("tiny").eval()
    assert naclip.pamr is not None and naclip.pamr.dilations == (8, 16) and naclip.pamr.num_iter == 10
    text = naclip.encode_vocabulary(VOCAB)
    images = _images(1, 3, 48, 64)
    scores = torch.rand(1, 4, 60, 80, generator=torch.Generator().manual_seed(2)) * 0.3
    guide = F.interpolate(images, (60, 80), mode="bilinear", align_corners=False)
    refined = PAMR(10, (8, 16))(guide, scores)
    p = (refined * 40).softmax(1)
    expected = torch.stack([p[:, 0], torch.maximum(p[:, 1], p[:, 2]), p[:, 3]], dim=1)
    torch.testing.assert_close(naclip.postprocess(scores, images, text), expected)
    plain = NACLIP.create("tiny", {"pamr": False}).eval()
    assert plain.pamr is None
    assert NACLIP.resolve("no-pamr").model.pamr is False


#: The official per-benchmark settings (configs/cfg_*.py of each repository; notes §2.3, §3.3, §4.4):
#: benchmark -> (short side, crop, stride, logit_scale, prob_thd, area_thd).
OFFICIAL = {
    "sclip": {
        "voc21": (336, 224, 112, 65.0, 0.1, 0.1),
        "context60": (336, 224, 112, 50.0, 0.1, None),
        "coco_object": (336, 224, 112, 50.0, 0.1, None),
        "voc20": (336, 224, 112, 40.0, 0.0, None),
        "context59": (336, 224, 112, 40.0, 0.0, None),
        "coco_stuff": (448, 224, 112, 40.0, 0.0, None),
        "cityscapes": (560, 224, 112, 40.0, 0.0, None),
        "ade20k": (336, 224, 112, 40.0, 0.0, None),
    },
    "clearclip": {
        "voc21": (448, 448, 224, 50.0, 0.5, None),
        "context60": (448, 448, 224, 50.0, 0.15, None),
        "coco_object": (448, 448, 224, 50.0, 0.4, None),
        "voc20": (448, 448, 224, 50.0, 0.0, None),
        "context59": (448, 448, 224, 50.0, 0.0, None),
        "coco_stuff": (448, 448, 224, 50.0, 0.0, None),
        "cityscapes": (448, 224, 224, 50.0, 0.0, None),
        "ade20k": (448, 448, 224, 50.0, 0.0, None),
    },
    "naclip": {
        "voc21": (336, None, 112, 40.0, 0.1, None),
        "context60": (336, 224, 112, 40.0, 0.1, None),
        "coco_object": (336, 224, 112, 40.0, 0.1, None),
        "voc20": (336, None, 112, 40.0, 0.0, None),
        "context59": (336, 224, 112, 40.0, 0.0, None),
        "coco_stuff": (336, 224, 112, 40.0, 0.0, None),
        "cityscapes": (560, 224, 112, 40.0, 0.0, None),
        "ade20k": (336, 224, 112, 40.0, 0.0, None),
    },
}
#: method -> (last block, its residual + MLP, padded windows, PAMR)
BLOCKS = {
    "sclip": ("csa", True, False, False),
    "clearclip": ("qq", False, True, False),
    "naclip": ("naclip", False, False, True),
}


@pytest.mark.parametrize("spec", [SCLIP, CLEARCLIP, NACLIP], ids=lambda s: s.name)
def test_paper_preset_and_protocol_reproduce_the_official_configs(spec: MethodSpec) -> None:
    block, residual, pad, pamr = BLOCKS[spec.name]
    assert get_last_block(block).residual_mlp is residual
    for benchmark, (short, crop, stride, scale, prob_thd, area_thd) in OFFICIAL[spec.name].items():
        run = spec.resolve("paper", benchmark=benchmark)
        protocol = PROTOCOLS.get(run.protocol).for_benchmark(benchmark)
        assert (protocol.short_side, protocol.max_long_side, protocol.crop, protocol.stride) == (
            short,
            2048,
            crop,
            stride,
        ), benchmark
        model = run.model
        assert (model.logit_scale, model.bg_thresh, model.area_thd) == (scale, prob_thd, area_thd), benchmark
        assert protocol.templates == "openai80" and protocol.background_query
        assert protocol.mean == (122.771, 116.746, 104.094) and protocol.std == (68.501, 66.632, 70.323)
        settings = (model.last_block, model.residual_mlp, model.pad, model.pamr, model.positions)
        assert settings == (block, None, pad, pamr, "scale") and model.template_average == "unit"
        assert spec.resolve("tiny", benchmark=benchmark).model == dataclasses.replace(model, clip="tiny")


def test_vocabularies_are_each_repositorys_name_files() -> None:
    sclip_voc = BENCHMARKS.get("voc21").vocabulary(("{}",), PROTOCOLS.get("sclip").synonyms, True)
    assert len(sclip_voc.classes[0]) == 26 and sclip_voc.classes[4] == ("ship",)
    clear_voc = BENCHMARKS.get("voc21").vocabulary(("{}",), PROTOCOLS.get("clearclip").synonyms, True)
    assert clear_voc.classes[0] == ("background",) and clear_voc.names[4] == "ship"
    assert clear_voc.names[11] == "table" and clear_voc.names[20] == "tvmonitor"
    assert PROTOCOLS.get("naclip").synonyms == "sclip"  # NACLIP ships SCLIP's files unchanged


def test_contract_catches_per_name_scores_undeclared(
    sclip: DenseCLIP, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sclip, "scores_per_name", False)  # per-name channels, but claims per-class ones
    with pytest.raises(AssertionError, match="expected 3 channels"):
        check_inference(sclip)


def test_bad_settings_fail_early() -> None:
    with pytest.raises(ConfigError, match="area_thd"):
        SCLIP.create("tiny", {"area_thd": 1.5})
    with pytest.raises(ConfigError, match="unknown last-block variant"):
        SCLIP.create("tiny", {"last_block": "cas"})
    # gaussian_std reaches a variant that has the option (here NACLIP's block under SCLIP's settings)
    assert SCLIP.create("tiny", {"last_block": "naclip", "gaussian_std": 2.0}).last_block.options == (
        ("gaussian_std", 2.0),
    )
