"""Sliding-window inference: windows of several images batched into one ``segment`` call, overlaps averaged.

This is mmsegmentation 0.x ``slide_inference`` (window placement in :mod:`.windows`), except that
windows are not scored one at a time: windows of the same size are queued across images and sent
to the method ``max_windows`` at a time. An image's label map is then computed as mmseg computes it
for one image: each window's scores upsampled bilinearly to the window's size when the method
returns them smaller, summed over the image in window order, divided by how many windows cover each
pixel, upsampled bilinearly to the label's size, the background channel put first where the
benchmark has one, argmax.

Speed without changing a number. The scores of a finished image are ``K`` channels at the image's
and the label's size (150 x 448 x 597 floats for ADE20K: 160 MB, then 210 MB at label size); making
them in full costs more in fresh memory pages and memory traffic than in arithmetic. Every step up
to the argmax works on each channel alone, so on CPU :func:`image_labels` runs them a block of
channels at a time (see :data:`CPU_TAIL_BYTES`) and keeps a running argmax: neither the merged map
nor the label-size map is ever made for all channels. Each float is computed by the same operation
on the same inputs as in the one-window-at-a-time loop, so the labels are identical (tests compare
them exactly). A method whose :meth:`~textseg.api.SegMethod.postprocess` needs all channels at once
gets them in full. Window scores are kept as ``segment`` returned them until their image is
complete, so no canvas is filled window by window either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.errors import TextsegError
from textseg.evaluation.protocol import Protocol, check_input_normalisation
from textseg.evaluation.windows import Window, default_max_windows, window_grid

#: On CPU, the channels of one image's tail processed together take at most about this many bytes
#: (their merged scores plus their scores at the label's size): 13 of ADE20K's 150 channels. Each
#: buffer stays below glibc's 32 MiB mmap threshold, so its pages are reused rather than faulted in
#: fresh (a fresh 120 MB output costs 5x the multiplication that fills it, measured), and a block
#: holds enough channels to amortise the running argmax. Measured on 2 cores for a 2-window ADE20K
#: image at 512 x 683: 0.15 s with 24-48 MiB blocks (8 MiB: 0.18 s; all 150 channels at once: 0.31 s;
#: the canvas-per-image code this replaced: 0.34 s).
CPU_TAIL_BYTES = 32 << 20


@dataclass(eq=False)
class ScoredImage:
    """An image in flight: its windows' scores as ``segment`` returned them, filled in as batches run.

    Once ``remaining`` is 0 the image is complete: :meth:`WindowBatcher.merged` gives its averaged
    ``[K, h, w]`` scores and :func:`image_labels` its label map.
    """

    key: Any
    image: Tensor  # [3, h, w], the normalised input
    windows: list[Window]
    window_scores: list[Tensor | None] = field(default_factory=list)
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
        self._queues: dict[tuple[int, int], list[tuple[ScoredImage, int]]] = {}
        self._pending: list[ScoredImage] = []
        self._count_cache: dict[tuple[int, int, torch.device], Tensor] = {}

    def add(self, image: Tensor, key: Any = None) -> list[ScoredImage]:
        """Queue the windows of ``image`` (``[3, h, w]``, on the method's device)."""
        windows = window_grid(image.shape[1], image.shape[2], self.crop, self.stride)
        job = ScoredImage(key, image, windows, [None] * len(windows), remaining=len(windows))
        self._pending.append(job)
        done: list[ScoredImage] = []
        for index, window in enumerate(windows):
            queue = self._queues.setdefault(window.shape, [])
            queue.append((job, index))
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
        windows = [job.windows[index] for job, index in entries]
        crops = torch.stack(
            [job.image[:, w.top : w.bottom, w.left : w.right] for (job, _), w in zip(entries, windows)]
        )
        with self.autocast(), torch.profiler.record_function("textseg.segment"):
            scores = self.method.segment(crops, self.text)
        expected = (len(entries), self.method.score_channels(self.text.vocabulary))
        if scores.ndim != 4 or tuple(scores.shape[:2]) != expected:
            raise TextsegError(
                f"{type(self.method).__name__}.segment returned scores of shape {tuple(scores.shape)} for "
                f"{len(entries)} crops and {expected[1]} score channels; expected [{expected[0]}, {expected[1]}, h, w]"
            )
        done = []
        for (job, index), window_scores in zip(entries, scores):
            job.window_scores[index] = window_scores
            job.remaining -= 1
            if job.remaining == 0:
                self._pending.remove(job)
                done.append(job)
        return done

    def merged(self, job: ScoredImage, channels: slice = slice(None)) -> Tensor:
        """The averaged float scores ``[k, h, w]`` of a complete image, for ``channels`` only.

        The first window is copied and the others added in window order, as mmseg adds them to a
        zero canvas; then the sum is divided by the window count of each pixel.
        """
        first = self._window(job, 0, channels)
        if len(job.windows) == 1:
            return first  # the whole image: nothing to sum or average
        height, width = job.image.shape[1:]
        canvas = first.new_empty((first.shape[0], height, width))
        w = job.windows[0]
        canvas[:, : w.top].zero_()
        canvas[:, w.bottom :].zero_()
        canvas[:, w.top : w.bottom, : w.left].zero_()
        canvas[:, w.top : w.bottom, w.right :].zero_()
        canvas[:, w.top : w.bottom, w.left : w.right] = first
        for index in range(1, len(job.windows)):
            w = job.windows[index]
            canvas[:, w.top : w.bottom, w.left : w.right] += self._window(job, index, channels)
        return canvas.div_(self._counts(height, width, canvas.device))

    def _window(self, job: ScoredImage, index: int, channels: slice) -> Tensor:
        """One window's float scores for ``channels``, upsampled to the window's size if smaller."""
        scores = job.window_scores[index]
        if scores is None:
            raise ValueError("the image is not complete: some of its windows have not been scored")
        scores = scores[channels].float()
        shape = job.windows[index].shape
        if tuple(scores.shape[1:]) != shape:
            scores = F.interpolate(scores[None], size=shape, mode="bilinear", align_corners=False)[0]
        return scores

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
    as text, the SCLIP family) channel 0 becomes ``max(channel 0, threshold)``, in place. This is
    ``argmax`` of those channels exactly: ties go to the lower index (a pixel whose best score equals
    the threshold is background) and a NaN score wins, as in ``argmax``.
    """
    if threshold is None:
        return scores.argmax(1)
    if background_query:
        scores[:, 0].clamp_(min=threshold)
        return scores.argmax(1)
    best, index = scores.max(1)
    return torch.where((best > threshold) | best.isnan(), index + 1, 0)


def image_scores(batcher: WindowBatcher, job: ScoredImage, size: tuple[int, int]) -> Tensor:
    """Per-class scores ``[1, K, H, W]`` of a complete image at ``size`` (the label's): its merged
    window scores upsampled bilinearly, then the method's whole-image post-processing."""
    scores = F.interpolate(batcher.merged(job)[None], size=size, mode="bilinear", align_corners=False)
    with batcher.autocast():
        scores = batcher.method.postprocess(scores, job.image[None], batcher.text)
    return scores.float()


@torch.no_grad()
def image_labels(
    batcher: WindowBatcher,
    job: ScoredImage,
    size: tuple[int, int],
    threshold: float | None,
    background_query: bool,
) -> Tensor:
    """Class index per pixel ``[H, W]`` of a complete image: upsample its merged window scores to
    ``size`` (the label's), let the method post-process the whole image, add background, argmax.

    Without a post-processing step this runs a block of channels at a time (see the module's
    docstring); the labels are the same as from the whole ``[K, H, W]`` map.
    """
    if type(batcher.method).postprocess is not SegMethod.postprocess:
        return assign_labels(image_scores(batcher, job, size), threshold, background_query)[0]
    return _blockwise_labels(batcher, job, size, threshold, background_query)


def _blockwise_labels(
    batcher: WindowBatcher,
    job: ScoredImage,
    size: tuple[int, int],
    threshold: float | None,
    background_query: bool,
) -> Tensor:
    """:func:`assign_labels` of the upsampled merged scores, computed ``step`` channels at a time.

    Plane 0 of the buffer holds the best score so far (the background threshold to start with, when
    it is a constant channel), planes 1.. the block's upsampled scores; ``max`` over the planes
    returns the first maximal index, so index 0 keeps the earlier label and ties and NaNs resolve
    exactly as one ``argmax`` over all channels does.
    """
    channels = batcher.method.score_channels(batcher.text.vocabulary)
    device = job.image.device
    height, width = job.image.shape[1:]
    step = channels
    if device.type == "cpu":
        step = max(1, min(channels, CPU_TAIL_BYTES // (4 * (height * width + size[0] * size[1]))))
    constant = threshold is not None and not background_query
    buffer = torch.empty((step + 1, *size), device=device)
    labels: Tensor | None = None
    if constant:
        buffer[0].fill_(threshold)
        labels = torch.zeros(size, dtype=torch.int64, device=device)
    for start in range(0, channels, step):
        block = buffer[: min(step, channels - start) + 1]
        merged = batcher.merged(job, slice(start, start + len(block) - 1))
        torch.ops.aten.upsample_bilinear2d.out(
            merged[None], list(size), False, None, None, out=block[None, 1:]
        )
        if background_query and threshold is not None and start == 0:
            block[1].clamp_(min=threshold)
        if labels is None:
            best, labels = block[1:].max(0)
        else:
            best, index = block.max(0)
            labels = torch.where(index == 0, labels, index + (start - 1 + int(constant)))
        if start + step < channels:
            buffer[0].copy_(best)
    assert labels is not None
    return labels


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

    check_input_normalisation(method, protocol)
    inputs = preprocess(image, (protocol.max_long_side, protocol.short_side), protocol.mean, protocol.std)
    device = method.device
    batcher = WindowBatcher(method, text, protocol.crop, protocol.stride, default_max_windows(device.type))
    (job,) = batcher.add(inputs.to(method.device)) + batcher.finish()
    scores = image_scores(batcher, job, tuple(image.shape[:2]))
    labels = assign_labels(scores.clone(), threshold, background_query=False)[0]
    return labels, scores[0]
