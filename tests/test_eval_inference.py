"""Sliding-window merging, batching across images, and the evaluator's bookkeeping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from eval_helpers import ChannelScores, Quantised, ThresholdConfig, WindowMean
from torch import Tensor

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.evaluation import inference
from textseg.evaluation.evaluator import evaluate
from textseg.evaluation.inference import WindowBatcher, image_labels

ROOT = Path(__file__).resolve().parent.parent

VOCAB = Vocabulary.from_names(["a", "b"])


def test_overlapping_windows_are_averaged_and_upsampled_from_1x1() -> None:
    # H=32, W=48, crop 32, stride 16: windows x in [0, 32) and [16, 48). Channel 0 is 1 for x >= 24,
    # so the windows' means are 8/32 and 24/32; pixels covered by both get their average.
    image = torch.zeros(3, 32, 48)
    image[0, :, 24:] = 1
    method = WindowMean()
    batcher = WindowBatcher(method, method.encode_vocabulary(VOCAB), crop=32, stride=16)
    done = batcher.add(image) + batcher.finish()
    assert len(done) == 1 and method.calls == [(2, 3, 32, 32)]  # both windows in one call
    scores = batcher.merged(done[0])
    expected = torch.tensor([0.25] * 16 + [0.5] * 16 + [0.75] * 16)
    assert torch.allclose(scores[0, 0], expected)
    assert torch.equal(scores[0], scores[1])


@pytest.mark.parametrize(("max_windows", "calls"), [(16, [6]), (4, [4, 2]), (1, [1] * 6)])
def test_windows_of_a_pointwise_method_reproduce_the_whole_image(max_windows: int, calls: list[int]) -> None:
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(0))
    method = ChannelScores()
    text = method.encode_vocabulary(VOCAB)
    batcher = WindowBatcher(method, text, crop=32, stride=20, max_windows=max_windows)
    (job,) = batcher.add(image) + batcher.finish()
    assert torch.allclose(batcher.merged(job), image[:2], atol=1e-6)
    assert method.calls == [(n, 3, 32, 32) for n in calls]  # 2 x 3 windows


def test_windows_of_several_images_share_calls_up_to_max_windows() -> None:
    method = ChannelScores()
    batcher = WindowBatcher(method, method.encode_vocabulary(VOCAB), crop=32, stride=16, max_windows=4)
    images = [torch.rand(3, 32, 48) for _ in range(3)]  # 2 windows each
    done = []
    for i, image in enumerate(images):
        done += batcher.add(image, key=i)
    assert [job.key for job in done] == [0, 1] and method.calls == [(4, 3, 32, 32)]
    done += batcher.finish()
    assert method.calls == [(4, 3, 32, 32), (2, 3, 32, 32)]
    for job in done:
        assert torch.allclose(batcher.merged(job), images[job.key][:2], atol=1e-6)


def test_pending_images_are_bounded_when_window_sizes_do_not_repeat() -> None:
    method = ChannelScores()
    batcher = WindowBatcher(method, method.encode_vocabulary(VOCAB), crop=None, stride=16, max_windows=8)
    batcher.max_pending = 2
    done = []
    for i in range(5):
        done += batcher.add(torch.rand(3, 10 + i, 10), key=i)  # whole-image windows, all different sizes
    assert [job.key for job in done] == [0, 1, 2]  # the oldest is scored once 3 images wait
    done += batcher.finish()
    assert sorted(job.key for job in done) == list(range(5))


class _WrongShape(ChannelScores):
    def segment(self, images: Tensor, text):  # type: ignore[no-untyped-def]
        return images[:, :1]


def test_wrong_score_shape_names_the_method() -> None:
    from textseg.errors import TextsegError

    method = _WrongShape()
    batcher = WindowBatcher(method, method.encode_vocabulary(VOCAB), crop=None, stride=1)
    with pytest.raises(TextsegError, match=r"_WrongShape.segment returned scores of shape \(1, 1, 4, 4\)"):
        batcher.add(torch.rand(3, 4, 4))
        batcher.finish()


def test_evaluator_counts_every_scored_pixel_once(toy_plugin_env: Path, tmp_path: Path) -> None:
    """Windows batched across images, fewer workers or more: every non-ignored pixel lands in the
    matrix exactly once, and the matrix does not depend on the batching."""
    from textseg.registry import BENCHMARKS, PROTOCOLS

    toy = BENCHMARKS.get("toy")
    toy.write_synthetic(tmp_path, 6, seed=3)
    source = toy.open(tmp_path)
    scored = sum(int((source[i].label != 255).sum()) for i in range(len(source)))
    method = ChannelScores()
    protocol = PROTOCOLS.get("toy")
    one = evaluate(method, toy, source, protocol, num_workers=0, max_windows=1, progress=False)
    many = evaluate(method, toy, source, protocol, num_workers=1, max_windows=7, progress=False)
    assert one.confusion.sum() == scored and one.num_images == 6
    np.testing.assert_array_equal(one.confusion, many.confusion)
    assert max(shape[0] for shape in method.calls) == 7


def test_evaluator_limit_precision_and_training_mode(toy_plugin_env: Path, tmp_path: Path) -> None:
    from textseg.registry import BENCHMARKS, PROTOCOLS

    toy = BENCHMARKS.get("toy")
    toy.write_synthetic(tmp_path, 4, seed=1)
    method = ChannelScores().train()
    result = evaluate(
        method,
        toy,
        toy.open(tmp_path),
        PROTOCOLS.get("toy"),
        limit=2,
        precision="bf16",
        num_workers=0,
        progress=False,
    )
    assert result.num_images == 2 and result.precision == "bf16" and result.device == "cpu"
    assert method.training  # restored after the run
    assert set(result.per_class_iou) == {"circle", "square", "triangle"}
    assert result.images_per_second > 0 and result.num_processes == 1
    with pytest.raises(ValueError, match="fp32, fp16 or bf16"):
        evaluate(method, toy, toy.open(tmp_path), PROTOCOLS.get("toy"), precision="fp8", num_workers=0)


def _labels_one_window_at_a_time(
    method: SegMethod, image: Tensor, size: tuple[int, int], threshold: float | None, background_query: bool
) -> Tensor:
    """mmseg's slide inference as the official loops run it, written out: each window alone, a zero
    canvas, window counts, bilinear upsampling to ``size``, the background channel, argmax."""
    text = method.encode_vocabulary(VOCAB7)
    _, height, width = image.shape
    canvas, count = torch.zeros(1, 7, height, width), torch.zeros(1, 1, height, width)
    for y in range(max(height - 32 + 19, 0) // 20 + 1):
        for x in range(max(width - 32 + 19, 0) // 20 + 1):
            y2, x2 = min(y * 20 + 32, height), min(x * 20 + 32, width)
            y1, x1 = max(y2 - 32, 0), max(x2 - 32, 0)
            scores = method.segment(image[None, :, y1:y2, x1:x2], text)
            canvas[..., y1:y2, x1:x2] += F.interpolate(scores, (y2 - y1, x2 - x1), mode="bilinear")
            count[..., y1:y2, x1:x2] += 1
    scores = F.interpolate(canvas / count, size, mode="bilinear", align_corners=False)
    if threshold is not None and background_query:
        scores[:, 0] = scores[:, 0].clamp(min=threshold)
    elif threshold is not None:
        scores = torch.cat([torch.full_like(scores[:, :1], threshold), scores], 1)
    return scores.argmax(1)[0]


class _PostprocessIdentity(Quantised):
    def postprocess(self, scores: Tensor, images: Tensor, text: TextState) -> Tensor:
        return scores  # overridden: the harness takes the all-channels path


VOCAB7 = Vocabulary.from_names([f"c{i}" for i in range(7)])


@pytest.mark.parametrize(("threshold", "background_query"), [(None, False), (0.25, False), (0.25, True)])
def test_labels_do_not_depend_on_batching_or_channel_blocks(
    threshold: float | None, background_query: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Labels equal those of the one-window-at-a-time loop bit for bit, with many exact ties (the
    quantised scores and the threshold) and NaNs, whatever the batch size and the channel blocks of
    the tail (1 channel per block up to all at once), and on the all-channels path too."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, h, w, generator=g) for h, w in ((40, 70), (32, 32), (57, 45), (20, 90))]
    sizes = [(45, 77), (32, 32), (60, 40), (23, 101)]  # the labels' sizes
    reference = [
        _labels_one_window_at_a_time(Quantised(0.9), image, size, threshold, background_query)
        for image, size in zip(images, sizes)
    ]
    assert any(bool((r == 2 + (threshold is not None and not background_query)).any()) for r in reference)
    for tail_bytes in (1, 1 << 30):
        monkeypatch.setattr(inference, "CPU_TAIL_BYTES", tail_bytes)
        for max_windows in (1, 3, 16):
            for method in (Quantised(0.9), _PostprocessIdentity(0.9)):
                batcher = WindowBatcher(method, method.encode_vocabulary(VOCAB7), 32, 20, max_windows)
                done = [job for i, image in enumerate(images) for job in batcher.add(image, key=i)]
                done += batcher.finish()
                assert sorted(job.key for job in done) == [0, 1, 2, 3]
                for job in done:
                    labels = image_labels(batcher, job, sizes[job.key], threshold, background_query)
                    assert torch.equal(labels, reference[job.key]), (tail_bytes, max_windows, job.key)


def test_evaluate_matches_the_naive_loop_of_bench_speed(toy_plugin_env: Path, tmp_path: Path) -> None:
    """scripts/bench_speed.py's independent official-style loop and evaluate() give the same
    confusion matrix (background by threshold, ties, windows upsampled from half resolution)."""
    import contextlib
    import importlib.util

    from textseg.registry import BENCHMARKS, PROTOCOLS

    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "scripts" / "bench_speed.py")
    assert spec is not None and spec.loader is not None
    bench_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_speed)
    toy = BENCHMARKS.get("toy_bg")
    toy.layout.write_synthetic(tmp_path, toy.num_classes, n=5, seed=4)
    source, protocol = toy.open(tmp_path), PROTOCOLS.get("toy")
    method = Quantised()
    method.config = ThresholdConfig(bg_thresh=0.25)
    naive = bench_speed.naive_loop(
        method, toy, source, protocol, torch.device("cpu"), 0, contextlib.nullcontext
    )
    assert naive.sum() == sum(int((source[i].label != 255).sum()) for i in range(len(source)))
    for max_windows in (1, 5):
        result = evaluate(
            method, toy, source, protocol, num_workers=0, max_windows=max_windows, progress=False
        )
        np.testing.assert_array_equal(result.confusion, naive)
