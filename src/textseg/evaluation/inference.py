"""Sliding-window inference: windows of several images batched into one ``segment`` call, overlaps averaged.

This is mmsegmentation 0.x ``slide_inference`` (window placement in :mod:`.windows`), except that
windows are not scored one at a time: windows of the same size are queued across images and sent
to the method ``max_windows`` at a time. Each window's scores are upsampled bilinearly to the
window's size when the method returns them smaller, summed into the image's canvas, and the canvas
is divided by how many windows covered each pixel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.errors import TextsegError
from textseg.evaluation.protocol import Protocol
from textseg.evaluation.windows import Window, window_grid


@dataclass(eq=False)
class ScoredImage:
    """An image in flight; once ``remaining`` is 0, ``scores`` is its averaged ``[K, h, w]`` map."""

    key: Any
    image: Tensor  # [3, h, w], the normalised input
    windows: list[Window]
    scores: Tensor | None = None
    remaining: int = 0


class WindowBatcher:
    """Queues the windows of incoming images by window size and scores them in batches.

    :meth:`add` returns the images completed by the batches it ran; :meth:`finish` runs what is
    left. At most ``max_pending`` images wait at once: past that, the oldest image's windows are
    scored in a smaller batch, which bounds memory when window sizes rarely repeat (whole-image
    inference on images of many sizes).
    """

    def __init__(
        self,
        method: SegMethod,
        text: TextState,
        crop: int | None,
        stride: int,
        max_windows: int = 16,
        max_pending: int | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, got {max_windows}")
        self.method = method
        self.text = text
        self.crop = crop
        self.stride = stride
        self.max_windows = max_windows
        self.max_pending = max_pending or max_windows
        self.autocast = autocast
        self._queues: dict[tuple[int, int], list[tuple[ScoredImage, Window]]] = {}
        self._pending: list[ScoredImage] = []
        self._count_cache: dict[tuple[int, int, torch.device], Tensor] = {}

    def add(self, image: Tensor, key: Any = None) -> list[ScoredImage]:
        """Queue the windows of ``image`` (``[3, h, w]``, on the method's device)."""
        windows = window_grid(image.shape[1], image.shape[2], self.crop, self.stride)
        job = ScoredImage(key, image, windows, remaining=len(windows))
        self._pending.append(job)
        done: list[ScoredImage] = []
        for window in windows:
            queue = self._queues.setdefault(window.shape, [])
            queue.append((job, window))
            if len(queue) >= self.max_windows:
                done += self._run(window.shape)
        while len(self._pending) > self.max_pending:
            oldest = self._pending[0]
            shape = next(s for s, queue in self._queues.items() if any(j is oldest for j, _ in queue))
            done += self._run(shape)
        return done

    def finish(self) -> list[ScoredImage]:
        """Score every queued window; returns the images this completes."""
        done: list[ScoredImage] = []
        for shape in list(self._queues):
            done += self._run(shape)
        return done

    def _run(self, shape: tuple[int, int]) -> list[ScoredImage]:
        entries = self._queues.pop(shape)
        crops = torch.stack([job.image[:, w.top : w.bottom, w.left : w.right] for job, w in entries])
        with self.autocast():
            scores = self.method.segment(crops, self.text)
        expected = (len(entries), self.method.score_channels(self.text.vocabulary))
        if scores.ndim != 4 or tuple(scores.shape[:2]) != expected:
            raise TextsegError(
                f"{type(self.method).__name__}.segment returned scores of shape {tuple(scores.shape)} for "
                f"{len(entries)} crops and {expected[1]} score channels; expected [{expected[0]}, {expected[1]}, h, w]"
            )
        done = []
        for (job, w), window_scores in zip(entries, scores.float()):
            if tuple(window_scores.shape[1:]) != shape:  # one window at a time: smaller temporaries
                window_scores = F.interpolate(
                    window_scores[None], size=shape, mode="bilinear", align_corners=False
                )[0]
            self._deposit(job, w, window_scores)
            job.remaining -= 1
            if job.remaining == 0:
                done.append(self._average(job))
        return done

    @staticmethod
    def _deposit(job: ScoredImage, w: Window, window_scores: Tensor) -> None:
        """Add one window's scores to its image's canvas (the first window is copied, not added)."""
        if len(job.windows) == 1:
            job.scores = window_scores  # the whole image: nothing to sum or average
            return
        if job.scores is None:
            canvas = window_scores.new_empty((window_scores.shape[0], *job.image.shape[1:]))
            canvas[:, : w.top].zero_()
            canvas[:, w.bottom :].zero_()
            canvas[:, w.top : w.bottom, : w.left].zero_()
            canvas[:, w.top : w.bottom, w.right :].zero_()
            canvas[:, w.top : w.bottom, w.left : w.right] = window_scores
            job.scores = canvas
        else:
            job.scores[:, w.top : w.bottom, w.left : w.right] += window_scores

    def _average(self, job: ScoredImage) -> ScoredImage:
        """Divide the summed scores by the number of windows covering each pixel."""
        assert job.scores is not None
        if len(job.windows) > 1:
            job.scores /= self._counts(job.image.shape[1], job.image.shape[2], job.scores.device)
        self._pending.remove(job)
        return job

    def _counts(self, height: int, width: int, device: torch.device) -> Tensor:
        """How many windows cover each pixel (cached: most images of a benchmark share a few sizes)."""
        key = (height, width, device)
        if key not in self._count_cache:
            counts = torch.zeros((height, width), device=device)
            for w in window_grid(height, width, self.crop, self.stride):
                counts[w.top : w.bottom, w.left : w.right] += 1
            if len(self._count_cache) >= 64:
                self._count_cache.pop(next(iter(self._count_cache)))
            self._count_cache[key] = counts
        return self._count_cache[key]


def assign_labels(scores: Tensor, threshold: float | None, background_query: bool) -> Tensor:
    """Per-pixel class indices ``[B, H, W]`` from ``[B, K, H, W]`` scores.

    ``threshold`` is None on benchmarks without background: plain argmax. Otherwise class 0 is
    background: with ``background_query`` False (the TCL protocol) the scores hold no background
    channel and a constant one at ``threshold`` is put first; with it True (background names scored
    as text, the SCLIP family) channel 0 becomes ``max(channel 0, threshold)``, in place. Ties go to
    the lower index, as ``argmax`` does, so a pixel whose best score equals the threshold is background.
    """
    if threshold is None:
        return scores.argmax(1)
    if background_query:
        scores[:, 0].clamp_(min=threshold)
        return scores.argmax(1)
    best, index = scores.max(1)
    return torch.where(best > threshold, index + 1, 0)


def image_scores(batcher: WindowBatcher, job: ScoredImage, size: tuple[int, int]) -> Tensor:
    """Per-class scores ``[1, K, H, W]`` of a scored image at ``size`` (the label's): its merged window
    scores upsampled bilinearly, then the method's whole-image post-processing."""
    assert job.scores is not None
    scores = F.interpolate(job.scores[None], size=size, mode="bilinear", align_corners=False)
    with batcher.autocast():
        scores = batcher.method.postprocess(scores, job.image[None], batcher.text)
    return scores.float()


def image_labels(
    batcher: WindowBatcher,
    job: ScoredImage,
    size: tuple[int, int],
    threshold: float | None,
    background_query: bool,
) -> Tensor:
    """Class index per pixel ``[H, W]`` of a scored image: :func:`image_scores`, background, argmax."""
    return assign_labels(image_scores(batcher, job, size), threshold, background_query)[0]


def prediction_vocabulary(
    method: SegMethod, classes: Sequence[Sequence[str]], templates: Sequence[str], background: bool
) -> tuple[Vocabulary, float | None]:
    """The vocabulary and background threshold for segmenting free-form ``classes``: with
    ``background``, a method that decides background itself (``scores_background``, GroupViT) gets
    it as class 0 of the vocabulary, any other is thresholded at its ``bg_thresh``."""
    own = background and method.scores_background
    names = ((("background",),) if own else ()) + tuple(tuple(c) for c in classes)
    threshold = method.background_threshold() if background and not own else None
    return Vocabulary(names, tuple(templates), background_query=own), threshold


def segment_image(
    method: SegMethod, text: TextState, image: Any, protocol: Protocol, threshold: float | None
) -> tuple[Tensor, Tensor]:
    """One ``[H, W, 3]`` uint8 image through the harness's steps (resize, normalisation, windows,
    merge, upsampling, post-processing, background, argmax) as ``textseg bench`` scores it: labels
    ``[H, W]`` and per-class scores ``[K, H, W]`` (before background), at the image's size."""
    from textseg.evaluation.preprocess import preprocess

    inputs = preprocess(image, (protocol.max_long_side, protocol.short_side), protocol.mean, protocol.std)
    batcher = WindowBatcher(method, text, protocol.crop, protocol.stride)
    (job,) = batcher.add(inputs.to(method.device)) + batcher.finish()
    scores = image_scores(batcher, job, tuple(image.shape[:2]))
    labels = assign_labels(scores.clone(), threshold, background_query=False)[0]
    return labels, scores[0]
