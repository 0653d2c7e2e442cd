"""CLIP-DINOiser: the distinctive steps on numbers computed by hand, the heads' input against
transformers' own CLIP, the converter from the official names, and the step schedule of its recipe.

The official model code itself was compared with this implementation outside the repository
(methods/clipdinoiser/README.md, "Parity")."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from textseg.api import TextState, Vocabulary
from textseg.errors import ConfigError, WeightsError
from textseg.methods.clipdinoiser.model import (
    correlation_targets,
    found_background,
    pad_bottom_right,
    pool_by_correlation,
)
from textseg.registry import METHODS
from textseg.training.config import TrainConfig
from textseg.training.optim import lr_factor
from textseg.weights import load_weights

SPEC = METHODS.get("clipdinoiser")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    method = SPEC.create("tiny", {"text_cache": False}).eval()
    for p in method.parameters():  # not the initial values, so loading them matters
        p.data.add_(0.05 * torch.randn_like(p))
    return method


def test_pooling_by_correlation_by_hand() -> None:
    # 3 patches (1 x 3 grid), 2 channels: F_0 = (1, 0), F_1 = (0, 2), F_2 = (3, 3).
    features = torch.tensor([[1.0, 0.0, 3.0], [0.0, 2.0, 3.0]]).view(1, 2, 1, 3)
    corr = torch.tensor([[1.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.0]])[None]
    pooled = pool_by_correlation(features, corr, gamma=0.2)
    # Row 0 keeps 1, 0.5 (0.1 < 0.2 dropped): (1*(1,0) + 0.5*(0,2)) / 1.5 = (2/3, 2/3).
    # Row 1 keeps 0.5, 1, 0.2 (0.2 is not below gamma): (0.5 + 0.6, 2 + 0.6) / 1.7 = (1.1, 2.6) / 1.7.
    # Row 2 keeps 0.2, 1: (0.2*(0,2) + (3,3)) / 1.2 = (3, 3.4) / 1.2.
    expected = torch.tensor([[2 / 3, 1.1 / 1.7, 3 / 1.2], [2 / 3, 2.6 / 1.7, 3.4 / 1.2]]).view(1, 2, 1, 3)
    scale = torch.tensor([1.5, 1.7, 1.2]).view(1, 1, 1, 3)
    assert torch.allclose(pooled, expected * scale / (scale + 1e-6), atol=1e-7)


def test_pooling_with_every_correlation_dropped_gives_zero() -> None:
    features = torch.ones(1, 4, 2, 2)
    assert torch.equal(
        pool_by_correlation(features, torch.full((1, 4, 4), 0.1), 0.2), torch.zeros(1, 4, 2, 2)
    )


def test_found_background_by_hand() -> None:
    # 4 patches, 3 classes (class 0 = background).
    probs = torch.tensor([[0.2, 0.995, 0.3, 0.1], [0.5, 0.004, 0.3, 0.1], [0.3, 0.001, 0.4, 0.8]]).view(
        1, 3, 1, 4
    )
    logits = torch.tensor([-1.0, -1.0, 0.0, 2.0]).view(1, 1, 1, 4)
    out = found_background(probs, logits, delta=0.99)
    # Patch 0: uncertain (0.5 < 0.99) and sigmoid(-1) <= 0.5 -> background set to 1.
    # Patch 1: certain (0.995) -> unchanged. Patch 2: sigmoid(0) = 0.5 is not > 0.5 -> set to 1.
    # Patch 3: sigmoid(2) > 0.5 (object) -> unchanged. Other classes are never changed.
    assert out[0, 0, 0].tolist() == pytest.approx([1.0, 0.995, 1.0, 0.1])
    assert torch.equal(out[:, 1:], probs[:, 1:])
    assert probs[0, 0, 0, 0] == pytest.approx(0.2)  # the input is left alone


def test_correlation_targets_by_hand() -> None:
    # Values of 3 patches: a = (1, 0), b = (1, 1), c = (-1, 0.1); cos(a, b) = 0.707, cos(a, c) < 0,
    # cos(b, c) = (-0.9) / ... < 0; each patch with itself = 1.
    values = torch.tensor([[1.0, 1.0, -1.0], [0.0, 1.0, 0.1]]).view(1, 2, 1, 3)
    expected = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.equal(correlation_targets(values, 0.2)[0], expected)
    assert torch.equal(correlation_targets(values, 0.8)[0], torch.eye(3))  # 0.707 < 0.8


def test_padding_is_black_on_the_right_and_bottom() -> None:
    images = torch.ones(1, 3, 17, 30)
    padded = pad_bottom_right(images, 16)
    assert padded.shape == (1, 3, 32, 32)
    assert (
        padded[..., :17, :30].eq(1).all() and padded[..., 17:, :].eq(0).all() and padded[..., 30:].eq(0).all()
    )


def test_head_input_is_the_ln2_output_of_the_chosen_block(tiny) -> None:
    """Against transformers' own forward, hooked like the official code hooks open_clip's ``ln_2``."""
    vision = tiny.clip.vision
    images = torch.rand(1, 3, 224, 224)
    hooked = {}
    layer = vision.layers[tiny.config.head_block]
    handle = layer.layer_norm2.register_forward_hook(lambda m, i, o: hooked.setdefault("x", o))
    try:
        vision.transformer(pixel_values=tiny_normalized(images))
    finally:
        handle.remove()
    features, head_input = tiny.clip_features(images)
    grid = head_input.shape[-2:]
    expected = hooked["x"][:, 1:].transpose(1, 2).reshape(1, -1, *grid)
    assert torch.allclose(head_input, expected, atol=1e-5)
    assert torch.allclose(features, vision.dense(tiny_normalized(images), "self", "size"), atol=1e-5)


def tiny_normalized(images: torch.Tensor) -> torch.Tensor:
    from textseg.methods.clipdinoiser.model import CLIP_MEAN, CLIP_STD, normalize

    return normalize(images, CLIP_MEAN, CLIP_STD)


def test_segment_applies_found_only_when_class_0_is_background(tiny) -> None:
    names = (("background",), ("cat",), ("dog",))
    with_bg = tiny.encode_vocabulary(Vocabulary(names, ("a {}.",), background_query=True))
    without = TextState(Vocabulary(names, ("a {}.",)), with_bg.embeddings)
    images = torch.rand(1, 3, 64, 80)
    plain = tiny.segment(images, without)
    found = tiny.segment(images, with_bg)
    assert torch.allclose(plain.sum(1), torch.ones(1, 4, 5))  # softmax over the classes
    changed = found[:, 0] != plain[:, 0]
    assert changed.any() and found[:, 0][changed].eq(1).all()
    assert torch.equal(found[:, 1:], plain[:, 1:])
    off = tiny.reconfigure(found=False).segment(images, with_bg)
    tiny.reconfigure(found=True)
    assert torch.equal(off, plain)


def test_official_checkpoint_is_converted(tiny, tmp_path: Path) -> None:
    official = {
        "obj_proj.weight": tiny.correlation_head.weight.detach().clone(),
        "obj_proj.bias": tiny.correlation_head.bias.detach().clone(),
        "bkg_decoder.weight": tiny.background_head.weight.detach().clone(),
        "bkg_decoder.bias": tiny.background_head.bias.detach().clone(),
    }
    path = tmp_path / "last.pt"
    torch.save({"epoch": 99, "model_state_dict": official}, path)  # train.py's format
    fresh = SPEC.create("tiny", {"text_cache": False})
    load_weights(fresh, SPEC, str(path))
    assert torch.equal(fresh.correlation_head.weight, tiny.correlation_head.weight)
    assert torch.equal(fresh.background_head.bias, tiny.background_head.bias)
    torch.save({"model_state_dict": {**official, "found_model.decoder.weight": torch.zeros(1)}}, path)
    with pytest.raises(WeightsError, match=r"found_model\.decoder\.weight"):
        load_weights(fresh, SPEC, str(path))


def test_head_block_must_precede_the_last_block() -> None:
    with pytest.raises(ConfigError, match="head_block=-1"):
        SPEC.create("tiny", {"head_block": -1})


def test_paper_recipe_steps_the_learning_rate_down_at_5000() -> None:
    run = SPEC.resolve("paper")
    assert run.train.lr_milestones == (5000,) and run.model.found and run.protocol == "clipdinoiser"
    assert not SPEC.resolve("paper", benchmark="context60").model.found  # main_eval.py: VOC and Object only
    factors = [lr_factor(step, run.train) for step in (0, 4999, 5000, 6299)]
    assert factors == [1.0, 1.0, pytest.approx(0.1), pytest.approx(0.1)]
    two = TrainConfig(lr_milestones=(2, 4), lr_gamma=0.5)
    assert [lr_factor(s, two) for s in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert math.isclose(lr_factor(10, TrainConfig(steps=10)), 0.0, abs_tol=1e-12)  # cosine unchanged
    with pytest.raises(ConfigError, match="lr_milestones"):
        TrainConfig(lr_milestones=(5, 2))


def test_training_sample_is_an_unnormalised_square_crop() -> None:
    from PIL import Image

    from textseg.methods.clipdinoiser.transform import CLIPDINOiserTrainTransform

    image = Image.new("RGB", (90, 60), (255, 128, 0))
    out = CLIPDINOiserTrainTransform(48, 0.5)({"image": image, "caption": "n01440764", "key": "0"})
    assert set(out) == {"image"} and out["image"].shape == (3, 48, 48)
    red, green, blue = out["image"][:, 0, 0].tolist()
    factor = (
        green * 255 / 128
    )  # ColorJitter(brightness=0.5): every value times one factor in [0.5, 1.5], clamped
    assert (
        0.5 - 1e-6 <= factor <= 1.5 + 1e-6 and blue == 0 and red == pytest.approx(min(1.0, factor), abs=1e-6)
    )


def test_found_decoder_is_read_from_founds_file_format(tmp_path: Path) -> None:
    from textseg.methods.clipdinoiser.model import load_found_decoder

    weight, bias = torch.randn(1, 8, 1, 1), torch.randn(1)
    path = tmp_path / "decoder_weights.pt"
    torch.save({"decoder": {"weight": weight, "bias": bias}}, path)  # FOUND's decoder_save_weights
    decoder = load_found_decoder(str(path), 8)
    assert torch.equal(decoder.weight, weight) and torch.equal(decoder.bias, bias)
    assert not any(p.requires_grad for p in decoder.parameters())
    with pytest.raises(WeightsError, match="FOUND"):
        load_found_decoder(str(path), 16)  # another width
    torch.save({"model": {"weight": weight}}, path)
    with pytest.raises(WeightsError, match="FOUND's decoder"):
        load_found_decoder(str(path), 8)


def test_a_protocol_that_normalises_otherwise_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The method takes pixels / 255 and applies CLIP's statistics itself: scoring it under a protocol
    with other statistics would be silently wrong, so the harness refuses it before any image."""
    from textseg.cli import main
    from textseg.registry import BENCHMARKS

    BENCHMARKS.get("voc21").write_synthetic(tmp_path / "data", 1)
    args = ["bench", "--method", "clipdinoiser", "--preset", "tiny", "--dataset", "voc21"]
    args += ["--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--num-workers", "0"]
    assert main([*args, "--protocol", "tcl"]) == 2
    err = capsys.readouterr().err
    assert "protocol 'tcl' gives mean (123.675, 116.28, 103.53)" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
