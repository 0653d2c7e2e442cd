"""Preprocessing: mmcv's keep-ratio size rule, OpenCV's bilinear resize and mmcv's normalisation, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from textseg.evaluation.preprocess import normalize, preprocess, rescale_size, resize_bilinear
from textseg.evaluation.protocol import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

REFERENCE = Path(__file__).parent / "data" / "cv2_reference.npz"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((375, 500), (448, 597)),  # VOC landscape: 500 * 448/375 = 597.33
        ((333, 500), (448, 673)),  # 500 * 448/333 = 672.67 rounds up
        ((500, 375), (597, 448)),  # portrait
        ((1024, 2048), (448, 896)),  # Cityscapes
        ((448, 600), (448, 600)),  # already there
        ((200, 5000), (82, 2048)),  # long side capped: factor 2048/5000 = 0.4096, 200 * 0.4096 = 81.92
    ],
)
def test_rescale_size_follows_mmcv(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert rescale_size(*size, (2048, 448)) == expected


def test_rescale_size_order_of_scale_does_not_matter() -> None:
    assert rescale_size(375, 500, (448, 2048)) == rescale_size(375, 500, (2048, 448)) == (448, 597)


def test_resize_matches_opencv_reference() -> None:
    reference = np.load(REFERENCE)
    checked = 0
    for key in reference.files:
        if not key.startswith("out_"):
            continue
        _, src, dst = key.split("_")
        source = torch.from_numpy(reference[f"src_{src}"])
        height, width = (int(v) for v in dst.split("x"))
        out = resize_bilinear(source, (height, width))
        assert out.dtype == torch.uint8
        np.testing.assert_array_equal(out.numpy(), reference[key], err_msg=key)
        checked += 1
    assert checked >= 10


def test_resize_is_no_antialias_bilinear() -> None:
    """Shrinking a 1-pixel checkerboard by 4 samples it (cv2 INTER_LINEAR), it does not average it to grey."""
    board = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    out = resize_bilinear(torch.from_numpy(board), (4, 4)).numpy()
    # source position (d + 0.5) * 4 - 0.5 = 4d + 1.5: halfway between two pixels of opposite colour.
    assert set(np.unique(out)) <= {127, 128}
    wide = resize_bilinear(torch.from_numpy(board), (16, 5)).numpy()  # x = 3.2 d + 1.1: mostly one colour
    assert wide.min() < 40 and wide.max() > 215


@pytest.mark.parametrize(
    ("stats", "mean", "std"), [("imagenet", IMAGENET_MEAN, IMAGENET_STD), ("clip", CLIP_MEAN, CLIP_STD)]
)
def test_normalize_matches_mmcv_reference_for_every_value(stats: str, mean: tuple, std: tuple) -> None:
    """The fixture is OpenCV 4.6's imnormalize with mmseg's float32 mean and std; computing 1/std from
    the decimal std (textseg before protocol v2) differs from it, so this test can catch that."""
    reference = np.load(REFERENCE)[f"normalized_all_values_{stats}"]
    values = torch.arange(256, dtype=torch.uint8)[None, :, None].repeat(1, 1, 3)
    out = normalize(values, mean, std)
    assert out.shape == (3, 1, 256) and out.dtype == torch.float32
    np.testing.assert_array_equal(out.permute(1, 2, 0).numpy(), reference)
    centred = values.numpy().astype(np.float32) - np.float32(mean)
    decimal = (centred.astype(np.float64) * (1 / np.float64(std))).astype(np.float32)
    assert (decimal != reference).mean() > 0.1


def test_normalisation_is_mmseg_1x_float32_division() -> None:
    """The SCLIP family's SegDataPreProcessor: (x - mean) / std on float32 tensors."""
    values = torch.arange(256, dtype=torch.uint8)[None, :, None].repeat(1, 1, 3)
    out = normalize(values, CLIP_MEAN, CLIP_STD).permute(1, 2, 0).numpy()
    expected = (values.numpy().astype(np.float32) - np.float32(CLIP_MEAN)) / np.float32(CLIP_STD)
    np.testing.assert_array_equal(out, expected)


def test_preprocess_resizes_then_normalises() -> None:
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = preprocess(image, (2048, 60), IMAGENET_MEAN, IMAGENET_STD)
    assert out.shape == (3, 60, 80)
    expected = normalize(resize_bilinear(torch.from_numpy(image), (60, 80)), IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(out, expected)
