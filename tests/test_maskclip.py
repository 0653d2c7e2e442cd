"""MaskCLIP: its scores from the CLIP layer's pieces, its settings, and --weights with CLIP files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from textseg.api import Vocabulary
from textseg.clip.openai_format import hf_to_openai
from textseg.errors import ConfigError
from textseg.io import file_digest
from textseg.methods.maskclip import SPEC
from textseg.testing.tiny_clip import build_tiny_clip, ensure_tiny_clip
from textseg.weights import apply_weights, read_state_dict, weights_overrides

VOCAB = Vocabulary.from_names(["cat", "car, automobile", "grass"], ("a photo of a {}.", "art of the {}."))


def _images(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_scores_are_the_kp_sigmoid_of_self_block_cosines_with_a_synonym_max() -> None:
    method = SPEC.create("tiny").eval()
    text = method.encode_vocabulary(VOCAB)
    images = _images(1, 3, 64, 96)
    features = F.normalize(method.clip.vision.dense(images, "self"), dim=1)
    names = method.clip.text.encode_classes(VOCAB.names, VOCAB.templates, "raw")
    cos = torch.einsum("bchw,nc->bnhw", features, names)  # names: cat, car, automobile, grass
    per_class = torch.stack([cos[:, 0], torch.maximum(cos[:, 1], cos[:, 2]), cos[:, 3]], dim=1)
    scores = method.segment(images, text)
    torch.testing.assert_close(scores, torch.sigmoid((per_class - 0.25) * 10))
    assert method.background_threshold() == 0.5

    cosine = SPEC.create("tiny", {"score": "cosine", "last_block": "value"}).eval()
    value = F.normalize(cosine.clip.vision.dense(images, "value"), dim=1)
    expected = torch.einsum("bchw,nc->bnhw", value, names)[:, [0, 3]]
    torch.testing.assert_close(cosine.segment(images, cosine.encode_vocabulary(VOCAB))[:, [0, 2]], expected)


@torch.no_grad()
def test_crops_off_the_patch_grid_are_padded_and_cropped_back() -> None:
    method = SPEC.create("tiny").eval()
    scores = method.segment(_images(2, 3, 97, 131), method.encode_vocabulary(VOCAB))
    assert scores.shape == (2, 3, 97, 131)
    refined = SPEC.create("tiny", {"pamr": True}).eval()
    assert refined.segment(_images(1, 3, 64, 64), refined.encode_vocabulary(VOCAB)).shape == (1, 3, 16, 16)


def test_bad_settings_fail_early() -> None:
    with pytest.raises(ConfigError, match="unknown last-block variant"):
        SPEC.create("tiny", {"last_block": "csa-typo"})
    with pytest.raises(ConfigError, match="score"):
        SPEC.resolve("tiny", {"score": "softmax"})


@torch.no_grad()
def test_weights_build_the_method_from_a_clip_folder(tmp_path: Path) -> None:
    """``--weights`` with CLIP weights replaces the preset's CLIP: the method is built from them."""
    reference = SPEC.create("tiny").eval()
    other = SPEC.create("tiny", {"clip": str(build_tiny_clip(tmp_path / "other", seed=1))}).eval()
    source = str(ensure_tiny_clip())
    overrides = weights_overrides(SPEC, source)
    assert overrides == {"clip": source}
    method = SPEC.create("paper", {**overrides, "text_cache": "false"}).eval()  # paper would load the hub
    info = apply_weights(method, SPEC, source)
    assert info is not None and info["path"].endswith("model.safetensors")
    assert info["sha256"] == file_digest(ensure_tiny_clip() / "model.safetensors")
    images = _images(1, 3, 64, 64)
    after = method.segment(images, method.encode_vocabulary(VOCAB))
    expected = reference.segment(images, reference.encode_vocabulary(VOCAB))
    assert not torch.allclose(other.segment(images, other.encode_vocabulary(VOCAB)), expected)
    torch.testing.assert_close(after, expected)


def test_weights_file_is_passed_to_the_clip_loader(tmp_path: Path) -> None:
    state, _ = read_state_dict(ensure_tiny_clip() / "model.safetensors")
    source = tmp_path / "ViT-tiny.pt"
    torch.save(hf_to_openai(state), source)
    assert weights_overrides(SPEC, str(source)) == {"clip": str(source)}
    assert weights_overrides(SPEC, None) == {}
