"""``evaluate``: score one method on one benchmark under one protocol, on one or many processes.

The same function serves ``textseg bench`` and the trainer's periodic evaluation. Every process of
an Accelerate run must call it (the confusion matrices are summed across processes at the end);
each scores a disjoint share of the images, so the result equals a single-process run exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from textseg.api import SegMethod
from textseg.benchmark import BenchmarkSpec, EvalSource
from textseg.errors import ConfigError, TextsegError
from textseg.evaluation.data import EvalImages, EvalItem, make_loader, shard
from textseg.evaluation.inference import ScoredImage, WindowBatcher, image_labels
from textseg.evaluation.metrics import ConfusionMatrix, compute_metrics
from textseg.evaluation.protocol import Protocol, check_input_normalisation
from textseg.evaluation.windows import default_max_windows
from textseg.text.templates import get_templates

Precision = Literal["fp32", "fp16", "bf16"]
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation produced, summed over every process."""

    benchmark: str
    protocol: Protocol  # with the benchmark's overrides applied
    synonyms: str | None
    confusion: np.ndarray  # [K, K] int64, rows = label, columns = prediction
    metrics: dict[str, float]  # mIoU, mAcc, aAcc in percent
    per_class_iou: dict[str, float | None]  # percent; None where excluded (absent everywhere)
    per_class_acc: dict[str, float | None]  # percent; None where the class is never labelled
    num_images: int
    seconds: float
    images_per_second: float
    precision: str
    device: str
    num_processes: int
    record: Path | None = None  # the results record written for it, if any (textseg.evaluate)


def default_accelerator() -> Any:
    """An ``accelerate.Accelerator`` for evaluation, that also works on machines without GPUs.

    Accelerate sets up several CPU processes (gloo) under ``torchrun`` only when told it runs on CPU
    (``cpu=True``); on a machine with no accelerator device that is the only choice anyway.
    """
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.accelerator.is_available())


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "fp32":
        return contextlib.nullcontext
    if precision not in _AUTOCAST_DTYPES:
        raise ConfigError(f"precision must be fp32, fp16 or bf16, got {precision!r}")
    dtype = _AUTOCAST_DTYPES[precision]
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def profiled(path: str | Path | None, rank: int | None = None) -> Iterator[Path | None]:
    """Run the block under the torch profiler (CPU, and CUDA when available) and write its Chrome
    trace (chrome://tracing, Perfetto) to ``path``, with ``.rank<N>`` before the suffix when ``rank``
    is given; nothing when ``path`` is None. Yields the trace's path. The harness marks its steps
    (``textseg.segment``, ``textseg.labels``) so they stand out in the trace."""
    if path is None:
        yield None
        return
    from torch.profiler import ProfilerActivity, profile

    target = Path(path)
    if rank is not None:
        target = target.with_name(f"{target.stem}.rank{rank}{target.suffix}")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=True) as profiler:
        yield target
    target.parent.mkdir(parents=True, exist_ok=True)
    profiler.export_chrome_trace(str(target))


def _by_name(names: tuple[str, ...], values: np.ndarray) -> dict[str, float | None]:
    return {name: (None if np.isnan(v) else float(v)) for name, v in zip(names, values)}


def evaluate(
    method: SegMethod,
    benchmark: BenchmarkSpec,
    source: EvalSource,
    protocol: Protocol,
    *,
    accelerator: Any = None,
    precision: Precision | str = "fp32",
    limit: int | None = None,
    synonyms: str | None = None,
    progress: bool = True,
    num_workers: int = 2,
    max_windows: int | None = None,
) -> EvalResult:
    """Score ``method`` on ``source`` (samples of ``benchmark``) under ``protocol``.

    ``accelerator`` (an ``accelerate.Accelerator``; one is created if None) gives the device and the
    processes; the method is moved to its device, put in eval mode for the run and back in its
    previous mode after. ``precision`` is fp32 (the official numerics) or fp16 / bf16 autocast
    around the method's calls. ``limit`` scores only the first N samples; ``synonyms`` picks one of
    the benchmark's synonym vocabularies (default: the protocol's where the benchmark has it, else the
    class names). ``num_workers`` DataLoader workers decode and preprocess; ``max_windows`` caps the
    windows sent to one ``segment`` call (default: :func:`~textseg.evaluation.windows.default_max_windows`
    of the device).
    """
    if accelerator is None:
        accelerator = default_accelerator()
    # A model the trainer prepared (DDP, compiled) is unwrapped; a plain SegMethod is used as is
    # (unwrap_model imports torch._dynamo, seconds of start-up for every bench process).
    model: SegMethod = method if isinstance(method, SegMethod) else accelerator.unwrap_model(method)
    device = accelerator.device
    autocast = _autocast(device, precision)
    max_windows = default_max_windows(device.type) if max_windows is None else max_windows
    protocol = protocol.for_benchmark(benchmark.name)
    check_input_normalisation(model, protocol)
    synonyms = synonyms if synonyms is not None else benchmark.protocol_synonyms(protocol.synonyms)
    own_background = benchmark.background and model.scores_background
    vocabulary = benchmark.vocabulary(
        get_templates(protocol.templates), synonyms, protocol.background_query or own_background
    )
    threshold = model.background_threshold() if benchmark.background and not own_background else None
    size = len(source) if limit is None else min(len(source), limit)
    dataset = EvalImages(
        source,
        shard(size, accelerator.process_index, accelerator.num_processes),
        protocol,
        benchmark.ignore_index,
    )
    loader = make_loader(dataset, num_workers, pin_memory=device.type == "cuda")
    bar = tqdm(
        total=len(dataset),
        unit="img",
        desc=benchmark.name,
        disable=not progress or not accelerator.is_main_process,
        dynamic_ncols=True,
    )
    was_training = model.training
    model.to(device).eval()
    start = time.perf_counter()
    try:
        with torch.no_grad():
            with autocast():
                text = model.encode_vocabulary(vocabulary)
            batcher = WindowBatcher(
                model, text, protocol.crop, protocol.stride, max_windows, autocast=autocast
            )
            confusion = _score(batcher, loader, benchmark, threshold, protocol.background_query, device, bar)
    finally:
        bar.close()
        model.train(was_training)
    matrix = confusion.matrix.contiguous()
    counts = torch.tensor([len(dataset)], device=device)
    if accelerator.num_processes > 1:
        matrix = accelerator.reduce(matrix, reduction="sum")
        counts = accelerator.reduce(counts, reduction="sum")
    seconds = time.perf_counter() - start
    num_images = int(counts.item())
    matrix = matrix.cpu().numpy()
    metrics = compute_metrics(matrix)
    return EvalResult(
        benchmark=benchmark.name,
        protocol=protocol,
        synonyms=synonyms,
        confusion=matrix,
        metrics=metrics.summary(),
        per_class_iou=_by_name(benchmark.classes, metrics.iou),
        per_class_acc=_by_name(benchmark.classes, metrics.acc),
        num_images=num_images,
        seconds=seconds,
        images_per_second=num_images / seconds if seconds > 0 else float("nan"),
        precision=precision,
        device=str(device),
        num_processes=accelerator.num_processes,
    )


def _score(
    batcher: WindowBatcher,
    loader: Iterable[EvalItem],
    benchmark: BenchmarkSpec,
    threshold: float | None,
    background_query: bool,
    device: torch.device,
    bar: tqdm,
) -> ConfusionMatrix:
    """Run every image of ``loader`` through ``batcher`` and count its predictions."""
    confusion = ConfusionMatrix(benchmark.num_classes, benchmark.ignore_index, device)

    def count(done: list[ScoredImage]) -> None:
        for job in done:
            with torch.profiler.record_function("textseg.labels"):
                labels = image_labels(batcher, job, tuple(job.key.shape), threshold, background_query)
                confusion.add(labels, job.key)
        bar.update(len(done))

    for item in loader:
        if "error" in item:
            raise TextsegError(item["error"])
        if item["label_max"] >= benchmark.num_classes:
            raise TextsegError(
                f"{benchmark.name} sample {item['id']!r} has label value {item['label_max']}, but the "
                f"benchmark has {benchmark.num_classes} classes (and ignore index {benchmark.ignore_index}); "
                "the label files do not use this benchmark's encoding"
            )
        image = item["image"].to(device, non_blocking=True)
        label = item["label"].to(device, non_blocking=True)
        count(batcher.add(image, key=label))
    count(batcher.finish())
    return confusion
