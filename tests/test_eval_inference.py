"""Sliding-window merging, batching across images, and the evaluator's bookkeeping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import ChannelScores, WindowMean
from torch import Tensor

from textseg.api import Vocabulary
from textseg.evaluation.evaluator import evaluate
from textseg.evaluation.inference import WindowBatcher

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
    row = done[0].scores[0, 0]  # type: ignore[index]
    expected = torch.tensor([0.25] * 16 + [0.5] * 16 + [0.75] * 16)
    assert torch.allclose(row, expected)
    assert torch.equal(done[0].scores[0], done[0].scores[1])  # type: ignore[index]


@pytest.mark.parametrize(("max_windows", "calls"), [(16, [6]), (4, [4, 2]), (1, [1] * 6)])
def test_windows_of_a_pointwise_method_reproduce_the_whole_image(max_windows: int, calls: list[int]) -> None:
    image = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(0))
    method = ChannelScores()
    text = method.encode_vocabulary(VOCAB)
    batcher = WindowBatcher(method, text, crop=32, stride=20, max_windows=max_windows)
    (job,) = batcher.add(image) + batcher.finish()
    assert torch.allclose(job.scores, image[:2], atol=1e-6)  # type: ignore[arg-type]
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
        assert torch.allclose(job.scores, images[job.key][:2], atol=1e-6)  # type: ignore[arg-type]


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
