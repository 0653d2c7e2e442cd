"""Evaluation speed: textseg's harness against a naive official-style loop, side by side (not a test).

    python scripts/bench_speed.py                                  # tiny and ViT-B/16-sized TCL
    python scripts/bench_speed.py --models base --max-windows 1 2 4 16 --rounds 5
    python scripts/bench_speed.py --sizes 512x683 1024x1365 --benchmark voc21

Both loops score the same images with the same method object in the same process, in interleaved
rounds (the order rotates every round); each figure is the median over the rounds. The naive loop
is what the official mmsegmentation 0.x code does, written here independently of textseg's harness:
one image at a time, each window (mmseg's grid) forwarded alone, added to a zero canvas, divided by
a window count, upsampled bilinearly to the label, background channel, argmax, a confusion matrix per
image. It reads images through the same DataLoader workers as textseg (decoding is not what is
compared). Its confusion matrix must equal textseg's at every ``--max-windows``: the script stops
with an error otherwise.

Models (TCL's paper settings: PAMR 10 iterations, kp branch, background 0.4), random weights, built
here without a download: ``tiny`` is the test suite's tiny CLIP (width 64, 3 layers); ``base`` is a
CLIP with a ViT-B/16 vision tower (width 768, 12 layers, 12 heads, projection 512; its text tower is
one small layer, which only changes the one-off vocabulary encoding). Images are random JPEGs of the
``--sizes`` given, written in the benchmark's real layout, resized by the protocol (``tcl``: short side
448, 448 windows at stride 224: a 512x683 image gives 2 windows).

Reported per loop: wall time (vocabulary encoding and loading included), images/s, the share of the
wall time spent outside ``segment`` (timed around each call; on CUDA with a synchronisation, in both
loops), and the peak memory during the run above the level before it (CUDA: allocated; CPU: the
main process's resident set, sampled every 5 ms). The last lines give, per model,
``speedup vs naive: X.XX`` at textseg's default ``--max-windows`` for the device.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from textseg.api import SegMethod, TextState
from textseg.benchmark import BenchmarkSpec, EvalSource
from textseg.evaluation.data import EvalImages, make_loader
from textseg.evaluation.evaluator import default_accelerator, evaluate
from textseg.evaluation.protocol import Protocol
from textseg.evaluation.windows import default_max_windows
from textseg.registry import BENCHMARKS, METHODS, PROTOCOLS
from textseg.testing.tiny_clip import build_tiny_clip
from textseg.text.templates import get_templates

#: The vision towers: (width, layers, heads) of the CLIP built for each model size.
VISION = {"tiny": (64, 3, 4), "base": (768, 12, 12)}


# -- data -------------------------------------------------------------------------------------------
def write_images(benchmark: BenchmarkSpec, root: Path, sizes: list[tuple[int, int]], n: int) -> None:
    """``n`` random image/label pairs cycling through ``sizes`` in ``benchmark``'s folder layout."""
    layout: Any = benchmark.layout
    base = root / layout.base
    (base / layout.img_dir).mkdir(parents=True, exist_ok=True)
    (base / layout.ann_dir).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = []
    for i in range(n):
        height, width = sizes[i % len(sizes)]
        stem = f"speed_{i:05d}"
        blocks = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))[:height, :width]
        # Stored label values: class + 1 where 0 is "ignore" (reduce_zero_label), else the class; some 255.
        values = rng.integers(0, benchmark.num_classes, (height // 32 + 1, width // 32 + 1))
        values = values + int(benchmark.reduce_zero_label)
        values[rng.random(values.shape) < 0.05] = 255
        label = np.kron(values, np.ones((32, 32), dtype=np.int64))[:height, :width].astype(np.uint8)
        Image.fromarray(image).save(base / layout.img_dir / f"{stem}{layout.img_suffix}", quality=90)
        Image.fromarray(label).save(base / layout.ann_dir / f"{stem}{layout.seg_suffix}")
        ids.append(stem)
    if layout.split_file:
        (base / layout.split_file).parent.mkdir(parents=True, exist_ok=True)
        (base / layout.split_file).write_text("\n".join(ids) + "\n")


def build_method(method: str, preset: str, model: str, folder: Path) -> SegMethod:
    width, layers, heads = VISION[model]
    clip = build_tiny_clip(
        folder / f"clip-{model}",
        width=width,
        layers=layers,
        heads=heads,
        text_width=8 * heads,
        text_layers=1,
        embed_dim=512 if model == "base" else 32,
    )
    torch.manual_seed(0)
    return METHODS.get(method).create(preset, {"clip": str(clip)}).eval()


# -- measuring ----------------------------------------------------------------------------------------
class SegmentClock:
    """Replaces ``method.segment`` on the instance with a timed call (both loops call it)."""

    def __init__(self, method: SegMethod, device: torch.device) -> None:
        self.inner = method.segment
        self.device = device
        self.seconds = 0.0
        method.segment = self  # type: ignore[method-assign]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, images: Tensor, text: TextState) -> Tensor:
        self._sync()
        start = time.perf_counter()
        scores = self.inner(images, text)
        self._sync()
        self.seconds += time.perf_counter() - start
        return scores


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[list[int]]:
    """Yields a list that holds, after the block, its peak memory in bytes above the level before it."""
    out: list[int] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield out
        out.append(torch.cuda.max_memory_allocated(device) - before)
        return
    before, peak, stop = _rss(), [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], _rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield out
    finally:
        stop.set()
        sampler.join()
        out.append(max(peak[0], _rss()) - before)


# -- the naive official-style loop ----------------------------------------------------------------------
def naive_loop(
    method: SegMethod,
    benchmark: BenchmarkSpec,
    source: EvalSource,
    protocol: Protocol,
    device: torch.device,
    num_workers: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> np.ndarray:
    """mmseg 0.x ``slide_inference`` + ``intersect_and_union`` per image; returns the summed confusion."""
    protocol = protocol.for_benchmark(benchmark.name)
    vocab = benchmark.vocabulary(
        get_templates(protocol.templates), protocol.synonyms, protocol.background_query
    )
    threshold = method.background_threshold() if benchmark.background else None
    k = benchmark.num_classes
    method.to(device).eval()
    with torch.no_grad():
        with autocast():
            text = method.encode_vocabulary(vocab)
        dataset = EvalImages(source, range(len(source)), protocol, benchmark.ignore_index)
        total = torch.zeros(k * k, dtype=torch.int64, device=device)
        for item in make_loader(dataset, num_workers, pin_memory=device.type == "cuda"):
            image, label = item["image"].to(device)[None], item["label"].to(device)
            logits = slide(method, text, image, protocol.crop, protocol.stride, autocast)
            seg = F.interpolate(logits, size=label.shape, mode="bilinear", align_corners=False)
            with autocast():
                seg = method.postprocess(seg, image, text)
            seg = seg.float()
            if threshold is not None and protocol.background_query:
                seg[:, 0] = seg[:, 0].clamp(min=threshold)
            elif threshold is not None:
                seg = torch.cat([torch.full_like(seg[:, :1], threshold), seg], dim=1)
            pred = seg.argmax(dim=1)[0]
            keep = label != benchmark.ignore_index
            total += torch.bincount(label[keep].long() * k + pred[keep], minlength=k * k)
    return total.view(k, k).cpu().numpy()


def slide(
    method: SegMethod,
    text: TextState,
    image: Tensor,
    crop: int | None,
    stride: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> Tensor:
    """``[1, K, H, W]`` averaged window scores: mmseg's grid, one window per forward."""
    _, _, height, width = image.shape
    crop_h, crop_w = (height, width) if crop is None else (crop, crop)
    rows = max(height - crop_h + stride - 1, 0) // stride + 1
    cols = max(width - crop_w + stride - 1, 0) // stride + 1
    preds = count = None
    for row in range(rows):
        for col in range(cols):
            y1, x1 = row * stride, col * stride
            y2, x2 = min(y1 + crop_h, height), min(x1 + crop_w, width)
            y1, x1 = max(y2 - crop_h, 0), max(x2 - crop_w, 0)
            with autocast():
                logits = method.segment(image[:, :, y1:y2, x1:x2], text)
            logits = logits.float()
            if logits.shape[-2:] != (y2 - y1, x2 - x1):
                logits = F.interpolate(logits, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
            if preds is None:
                preds = image.new_zeros((1, logits.shape[1], height, width))
                count = image.new_zeros((1, 1, height, width))
            preds[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


# -- the comparison ------------------------------------------------------------------------------------
def _autocast(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def compare(args: argparse.Namespace, model: str, folder: Path) -> float:
    device = torch.device(args.device)
    benchmark = BENCHMARKS.get(args.benchmark)
    protocol = PROTOCOLS.get(args.protocol)
    root = folder / "data"
    if not root.exists():
        write_images(benchmark, root, args.sizes, args.images)
    source = benchmark.open(root)
    method = build_method(args.method, args.preset, model, folder)
    clock = SegmentClock(method, device)
    accelerator = default_accelerator()
    default = default_max_windows(device.type)
    windows = sorted(set(args.max_windows or [1, 4, 16]) | {default})
    autocast = _autocast(device, args.precision)

    def run_naive(limit: int | None = None) -> np.ndarray:
        data = source if limit is None else [source[i] for i in range(limit)]
        return naive_loop(method, benchmark, data, protocol, device, args.num_workers, autocast)  # type: ignore[arg-type]

    def run_textseg(max_windows: int, limit: int | None = None) -> np.ndarray:
        result = evaluate(
            method,
            benchmark,
            source,
            protocol,
            accelerator=accelerator,
            precision=args.precision,
            limit=limit,
            num_workers=args.num_workers,
            max_windows=max_windows,
            progress=False,
        )
        return result.confusion

    loops: dict[str, Callable[[], np.ndarray]] = {"naive": run_naive}
    loops.update({f"textseg --max-windows {w}": (lambda w=w: run_textseg(w)) for w in windows})
    run_naive(1), [run_textseg(w, 1) for w in windows]  # warm-up: allocator, kernels, worker start
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    outside: dict[str, list[float]] = {name: [] for name in loops}
    memory: dict[str, list[int]] = {name: [] for name in loops}
    reference = None
    for r in range(args.rounds):
        names = list(loops)
        for name in names[r % len(names) :] + names[: r % len(names)]:
            clock.seconds = 0.0
            with peak_memory(device) as peak:
                start = time.perf_counter()
                confusion = loops[name]()
                wall = time.perf_counter() - start
            if reference is None:
                reference = confusion
            if not np.array_equal(confusion, reference):
                diff = int(np.abs(confusion - reference).sum())
                raise SystemExit(
                    f"{name}: its confusion matrix differs from the naive loop's ({diff} counts)"
                )
            seconds[name].append(wall)
            outside[name].append((wall - clock.seconds) / wall)
            memory[name].append(peak[0])
            print(f"  round {r + 1} {name:<24} {wall:8.2f} s", flush=True)
    naive = statistics.median(seconds["naive"])
    print(
        f"\nmodel {model} ({args.method} --preset {args.preset}, {VISION[model][0]}-wide {VISION[model][1]}-layer "
        f"ViT/16) | {args.benchmark}, {args.images} images {', '.join(f'{h}x{w}' for h, w in args.sizes)} | "
        f"{device}, {torch.get_num_threads()} threads, {args.num_workers} data workers, {args.precision} | "
        f"median of {args.rounds} rounds; confusion matrices identical"
    )
    print(f"{'loop':<26}{'seconds':>9}{'img/s':>8}{'outside segment':>17}{'peak MB':>9}{'speedup':>9}")
    for name in loops:
        median = statistics.median(seconds[name])
        print(
            f"{name:<26}{median:9.2f}{args.images / median:8.3f}{100 * statistics.median(outside[name]):16.1f}%"
            f"{statistics.median(memory[name]) / 2**20:9.0f}{naive / median:9.2f}"
        )
    return naive / statistics.median(seconds[f"textseg --max-windows {default}"])


def _size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", choices=sorted(VISION), default=["tiny", "base"])
    parser.add_argument("--method", default="tcl")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--benchmark", default="ade20k", choices=("ade20k", "voc21"))
    parser.add_argument("--protocol", default="tcl")
    parser.add_argument("--sizes", nargs="+", type=_size, default=[(512, 683), (683, 512)], help="HxW")
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--max-windows",
        type=int,
        nargs="+",
        help="textseg runs to time (default: 1 4 16); the device's default is added",
    )
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for model in args.models:
        with tempfile.TemporaryDirectory() as folder:
            results[model] = compare(args, model, Path(folder))
    device = torch.device(args.device)
    for model, speedup in results.items():
        print(
            f"speedup vs naive: {speedup:.2f} (model {model}, {device}, --max-windows {default_max_windows(device.type)})"
        )


if __name__ == "__main__":
    main()
