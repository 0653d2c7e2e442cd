"""Metrics against hand-computed cases: ignore pixels, absent classes, reduce_zero_label, background."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import ChannelScores, ThresholdConfig, raw_protocol, write_sample

from textseg.errors import TextsegError
from textseg.evaluation.evaluator import evaluate
from textseg.evaluation.inference import assign_labels
from textseg.evaluation.metrics import ConfusionMatrix, compute_metrics, confusion_matrix


def test_confusion_matrix_excludes_ignore_pixels() -> None:
    label = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [1, 1, 0]])
    matrix = confusion_matrix(pred, label, num_classes=4, ignore_index=255)
    expected = torch.zeros(4, 4, dtype=torch.int64)
    expected[0, 0] = 1  # label 0 predicted 0
    expected[0, 1] = 1  # label 0 predicted 1
    expected[1, 1] = 2
    expected[2, 1] = 1
    assert torch.equal(matrix, expected)  # the ignore pixel (predicted 0) is nowhere

    metrics = compute_metrics(matrix)
    # I = [1, 2, 0, 0], L = [2, 2, 1, 0], P = [1, 4, 0, 0], union = [2, 4, 1, 0]
    np.testing.assert_allclose(metrics.iou[:3], [50.0, 50.0, 0.0])
    np.testing.assert_allclose(metrics.acc[:3], [50.0, 100.0, 0.0])
    assert math.isnan(metrics.iou[3]) and math.isnan(metrics.acc[3])  # class 3: absent everywhere
    assert metrics.mIoU == pytest.approx(100 / 3)  # mean over the three present classes
    assert metrics.mAcc == pytest.approx(50.0)
    assert metrics.aAcc == pytest.approx(60.0)  # 3 of 5 scored pixels


def test_confusion_accumulates_over_images() -> None:
    counts = ConfusionMatrix(num_classes=2, ignore_index=255)
    counts.add(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 255], dtype=torch.uint8))
    counts.add(torch.tensor([[1, 0]]), torch.tensor([[0, 255]], dtype=torch.uint8))
    assert counts.matrix.tolist() == [[1, 1], [0, 1]]
    with pytest.raises(ValueError, match="not a class"):
        ConfusionMatrix(num_classes=3, ignore_index=2)


def test_predicted_but_never_labelled_class_counts_in_miou_not_in_macc() -> None:
    matrix = np.array([[2, 0, 1], [0, 0, 0], [0, 0, 0]])
    metrics = compute_metrics(matrix)
    # class 0: I=2, L=3, P=2 -> IoU 2/3, Acc 2/3; class 1 absent -> NaN; class 2: I=0, L=0, P=1 -> IoU 0, Acc NaN
    assert metrics.iou[0] == pytest.approx(200 / 3) and math.isnan(metrics.iou[1]) and metrics.iou[2] == 0
    assert math.isnan(metrics.acc[2])
    assert metrics.mIoU == pytest.approx(100 / 3)
    assert metrics.mAcc == pytest.approx(200 / 3)
    assert metrics.aAcc == pytest.approx(200 / 3)


def test_empty_matrix_gives_nan_not_an_error() -> None:
    metrics = compute_metrics(np.zeros((2, 2), dtype=np.int64))
    assert math.isnan(metrics.mIoU) and math.isnan(metrics.mAcc) and math.isnan(metrics.aAcc)


def test_assign_labels_constant_background_channel() -> None:
    scores = torch.tensor([[0.7, 0.2, 0.4, 0.45], [0.1, 0.6, 0.4, 0.3]])[None, :, None, :]  # [1, 2, 1, 4]
    # best per pixel: 0.7 (class 0), 0.6 (class 1), 0.4 (tie with the threshold: background), 0.45 (class 0)
    assert assign_labels(scores, 0.4, background_query=False).tolist() == [[[1, 2, 0, 1]]]
    assert assign_labels(scores, None, background_query=False).tolist() == [[[0, 1, 0, 0]]]


def test_assign_labels_background_query_raises_channel_zero_to_the_threshold() -> None:
    scores = torch.tensor([[0.1, 0.3, 0.05], [0.2, 0.6, 0.1], [0.3, 0.1, 0.2]])[None, :, None, :]
    # pixel 0: max 0.3 (bg names) -> 0; pixel 1: 0.6 > 0.5 -> 1; pixel 2: all < 0.5 -> bg 0.5 wins
    assert assign_labels(scores, 0.5, background_query=True).tolist() == [[[0, 1, 0]]]


def _colour(*rgb: int) -> np.ndarray:
    return np.array(rgb, dtype=np.uint8)


def test_background_threshold_end_to_end(toy_plugin_env: Path, tmp_path: Path) -> None:
    from textseg.registry import BENCHMARKS

    toy_bg = BENCHMARKS.get("toy_bg")  # classes background, circle, square; only circle/square are text
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    image[0, 0] = _colour(200, 100, 0)  # circle 0.78 > 0.5 -> 1
    image[0, 1] = _colour(100, 50, 0)  # best 0.39 < 0.5 -> background
    image[0, 2] = _colour(60, 220, 0)  # square -> 2
    image[1, 0] = _colour(250, 0, 0)  # circle -> 1, labelled background
    image[1, 1] = _colour(0, 0, 0)  # background, labelled ignore
    image[1, 2] = _colour(0, 140, 0)  # square 0.55 -> 2, labelled circle
    label = np.array([[1, 0, 2], [0, 255, 1]])
    write_sample(tmp_path, "toy_bg", "a", image, label)
    result = evaluate(
        ChannelScores(ThresholdConfig(bg_thresh=0.5)),
        toy_bg,
        toy_bg.open(tmp_path),
        raw_protocol(short_side=2),
        num_workers=0,
        progress=False,
    )
    expected = np.zeros((3, 3), dtype=np.int64)
    expected[1, 1] = 1
    expected[0, 0] = 1
    expected[2, 2] = 1
    expected[0, 1] = 1
    expected[1, 2] = 1
    np.testing.assert_array_equal(result.confusion, expected)
    # background: I=1, L=2, P=1 -> 50; circle: I=1, L=2, P=2 -> 1/3; square: I=1, L=1, P=2 -> 50
    assert result.per_class_iou == pytest.approx({"background": 50.0, "circle": 100 / 3, "square": 50.0})
    assert result.metrics["aAcc"] == pytest.approx(60.0)
    assert result.num_images == 1


def test_background_query_end_to_end(toy_plugin_env: Path, tmp_path: Path) -> None:
    from textseg.registry import BENCHMARKS

    toy_bg = BENCHMARKS.get("toy_bg")
    image = np.stack([_colour(20, 30, 40), _colour(200, 210, 10), _colour(240, 100, 10)])[None]  # [1, 3, 3]
    label = np.array([[0, 1, 0]])
    write_sample(tmp_path, "toy_bg", "a", image, label)
    result = evaluate(
        ChannelScores(ThresholdConfig(bg_thresh=0.5)),
        toy_bg,
        toy_bg.open(tmp_path),
        raw_protocol(short_side=1, background_query=True),  # background names scored as text: 3 channels
        num_workers=0,
        progress=False,
    )
    # pixel 0: all < 0.5 -> bg; pixel 1: circle 0.82 > bg 0.78; pixel 2: bg channel 0.94 wins
    np.testing.assert_array_equal(result.confusion, [[2, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_reduce_zero_label_through_read_label(toy_plugin_env: Path, tmp_path: Path) -> None:
    from textseg.registry import BENCHMARKS

    toy_reduce = BENCHMARKS.get("toy_reduce")  # stored 0 -> ignore, 1..3 -> 0..2, 255 -> ignore
    image = np.zeros((1, 4, 3), dtype=np.uint8)
    image[0, :, 1] = 255  # every pixel predicts class 1 (square)
    write_sample(tmp_path, "toy_reduce", "a", image, np.array([[0, 1, 2, 255]]))
    source = toy_reduce.open(tmp_path)
    assert source[0].label.tolist() == [[255, 0, 1, 255]]
    result = evaluate(
        ChannelScores(), toy_reduce, source, raw_protocol(short_side=1), num_workers=0, progress=False
    )
    np.testing.assert_array_equal(result.confusion, [[0, 1, 0], [0, 1, 0], [0, 0, 0]])
    assert result.per_class_iou == {"circle": 0.0, "square": 50.0, "triangle": None}
    assert result.metrics["mIoU"] == pytest.approx(25.0)  # triangle (absent everywhere) left out


def test_label_values_beyond_the_classes_are_an_error(toy_plugin_env: Path, tmp_path: Path) -> None:
    from textseg.registry import BENCHMARKS

    toy = BENCHMARKS.get("toy")
    write_sample(tmp_path, "toy", "bad", np.zeros((2, 2, 3)), np.array([[0, 7], [255, 1]]))
    with pytest.raises(TextsegError, match=r"'bad' has label value 7.*3 classes"):
        evaluate(ChannelScores(), toy, toy.open(tmp_path), raw_protocol(2), num_workers=0, progress=False)
