"""Samples/s of the training data pipeline alone vs the training step alone, on CPU.

The pipeline is the real one (img2dataset-style tar shards -> ImageTextStream -> StreamLoader with
the default number of data workers): JPEG decoding, the method's transform (crop, flip,
normalise, tokenise) and collate in the workers. The step is forward + backward + AdamW on one
batch already in memory. Two tiny models:

* ``dummy``: the test-only dummy method (a strided convolution and a word table, 64x64 input);
* ``tiny-clip``: a CLIP contrastive step on textseg's tiny random CLIP (ViT, width 64, 3 layers,
  224x224 input, 77-token captions), with CoDe's augmentation (RandomResizedCrop 224, scale
  0.9-1, flip, ImageNet mean/std) and CLIP tokenisation in the workers.

    python scripts/throughput.py                       # both models, default worker count
    python scripts/throughput.py --model tiny-clip --workers 4 --batch-size 64

The pipeline is not the bottleneck when its samples/s exceed the step's. Each is measured
``--repeats`` times and the best kept, which filters out some of the noise of a shared machine; the
CPU time one worker spends per sample (measured on one thread, as in a worker) gives what the
workers deliver when each has a core, whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "plugins"))  # the dummy method lives with the tests

from textseg.api import SegMethod, TextState, Vocabulary  # noqa: E402
from textseg.data.sources import open_source  # noqa: E402
from textseg.data.spec import parse_data_spec  # noqa: E402
from textseg.data.stream import ImageTextStream, StreamLoader  # noqa: E402
from textseg.testing.image_text import write_shards  # noqa: E402
from textseg.training.config import TrainConfig  # noqa: E402


class _ClipTransform:
    """CoDe's training augmentation and CLIP tokenisation (picklable: it runs in the data workers)."""

    def __init__(self, folder: str) -> None:
        from torchvision import transforms
        from transformers import CLIPTokenizer

        self.tokenizer = CLIPTokenizer.from_pretrained(folder)
        self.image = transforms.Compose([
            transforms.RandomResizedCrop(224, scale=(0.9, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])  # fmt: skip

    def __call__(self, sample: dict[str, Any]) -> dict[str, Tensor]:
        tokens = self.tokenizer(sample["caption"], padding="max_length", max_length=77, truncation=True)
        return {"image": self.image(sample["image"]), "input_ids": torch.tensor(tokens["input_ids"])}


class _TinyClipStep(SegMethod):
    """Only what the measurement needs: a CLIP contrastive training step."""

    def __init__(self, config: Any = None) -> None:
        from transformers import CLIPModel

        from textseg.testing.tiny_clip import ensure_tiny_clip

        super().__init__(config)
        self.folder = str(ensure_tiny_clip())
        self.clip = CLIPModel.from_pretrained(self.folder)

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        raise NotImplementedError

    def segment(self, images: Tensor, text: TextState) -> Tensor:
        raise NotImplementedError

    def train_transform(self) -> _ClipTransform:
        return _ClipTransform(self.folder)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        out = self.clip(input_ids=batch["input_ids"], pixel_values=batch["image"], return_loss=True)
        return {"loss": out.loss}


def _method(name: str) -> SegMethod:
    if name == "dummy":
        from textseg_dummy_plugin import DUMMY

        return DUMMY.create("tiny")
    return _TinyClipStep()


def _nothing(sample: dict[str, Any]) -> int:
    return 0


def pipeline_rate(
    transform: Any, collate: Any, data: str, batch_size: int, workers: int, batches: int
) -> tuple[float, float, Any]:
    """(samples/s, CPU ms per sample in this process, a batch). Without workers the pipeline runs here on one
    thread, as in a worker, so the CPU time is what one worker spends per sample."""
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)
    sources = [open_source(spec) for spec in parse_data_spec(data)]
    stream = ImageTextStream(
        sources, transform, collate, batch_size, shuffle_buffer=1000, num_workers=workers
    )
    iterator = iter(StreamLoader(stream, workers))
    batch = next(iterator)
    for _ in range(2):  # workers started and the shuffle buffer filled
        next(iterator)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(iterator)
    samples = batches * batch_size
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    iterator.close()  # stop the workers before the step is timed
    torch.set_num_threads(threads)
    return samples / wall, 1000 * cpu / samples, batch


def step_rate(method: SegMethod, batch: Any, batch_size: int, steps: int) -> tuple[float, float]:
    """(samples/s, CPU ms per sample over all threads) of forward + backward + AdamW."""
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)
    method.train()
    for step in range(steps + 5):
        if step == 5:  # the first steps are slow (allocator, kernel caches)
            start, cpu = time.perf_counter(), time.process_time()
        loss = method.training_step(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    samples = steps * batch_size
    return samples / (time.perf_counter() - start), 1000 * (time.process_time() - cpu) / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("dummy", "tiny-clip", "both"), default="both")
    parser.add_argument(
        "--workers", type=int, default=TrainConfig().num_workers, help="default: train.num_workers"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="batches timed (after 3 warm-up batches)")
    parser.add_argument(
        "--image-size", type=int, default=256, help="stored image size (img2dataset --image_size)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="measure this often, keep the best (shared machines)"
    )
    args = parser.parse_args()
    # The random tiny CLIP produces denormal floats that make CPU math ~8x slower for its first few dozen
    # steps (measured); flushing them measures the model, not that artefact.
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workers} data workers, "
          f"batch {args.batch_size}, images stored at {args.image_size}px; best of {args.repeats}")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        write_shards(folder, 4, 200, image_size=args.image_size)
        data = f"{folder}/{{00000..00003}}.tar"
        runs = [
            pipeline_rate(_nothing, len, data, args.batch_size, 0, args.batches) for _ in range(args.repeats)
        ]
        print(f"read + decode only, one process: {max(r[0] for r in runs):6.1f} samples/s, "
              f"{min(r[1] for r in runs):.2f} ms CPU/sample")  # fmt: skip
        for name in ("dummy", "tiny-clip") if args.model == "both" else (args.model,):
            method = _method(name)
            transform = method.train_transform()
            pipeline = max(
                pipeline_rate(transform, method.collate, data, args.batch_size, args.workers, args.batches)[0]
                for _ in range(args.repeats)
            )
            in_process = [pipeline_rate(transform, method.collate, data, args.batch_size, 0, args.batches)
                          for _ in range(args.repeats)]  # fmt: skip
            steps = [
                step_rate(method, in_process[0][2], args.batch_size, args.batches)
                for _ in range(args.repeats)
            ]
            step = max(r[0] for r in steps)
            worker_ms = min(r[1] for r in in_process)
            capacity = args.workers * 1000 / worker_ms
            print(f"{name:>9}: training step {step:7.1f} samples/s | pipeline {pipeline:7.1f} samples/s measured "
                  f"with {args.workers} workers, {worker_ms:.2f} ms CPU/sample per worker = {capacity:7.1f} samples/s "
                  f"on {args.workers} free cores | {'pipeline keeps up' if pipeline >= step else 'PIPELINE IS THE BOTTLENECK'}")  # fmt: skip


if __name__ == "__main__":
    main()
