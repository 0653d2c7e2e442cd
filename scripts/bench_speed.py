"""Harness speed on CPU: images/s and the harness overhead ratio (not a test; numbers vary by machine).

    python scripts/bench_speed.py [--model small] [--images 24] [--num-workers 1]

It writes VOC-like JPEGs (500x375 and 375x500, 21 classes with background) to a temporary folder
and scores them under the TCL protocol (short side 448, 448 windows at stride 224: two windows per
image) with a CLIP-like method built here with random weights: a transformers CLIP vision tower
(``--model tiny``: width 64 x 3 layers; ``small``: ViT-S/16, 384 x 12; ``base``: ViT-B/16, 768 x 12)
whose projected patch tokens are compared with one embedding per class (MaskCLIP-style dense
scores at 1/16 resolution). Time inside ``segment`` is measured around the forward pass (CPU ops
are synchronous); the overhead ratio is (evaluate's wall time - time in segment) / time in segment.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from textseg.api import SegMethod, TextState, Vocabulary
from textseg.benchmark import BenchmarkSpec, DatasetLayout, Sample
from textseg.evaluation.evaluator import evaluate
from textseg.evaluation.protocol import TCL

SIZES = {"tiny": (64, 3, 4), "small": (384, 12, 6), "base": (768, 12, 12)}


@dataclass(frozen=True)
class SpeedConfig:
    model: str = "small"
    bg_thresh: float = 0.5


class DenseCLIP(SegMethod):
    """Patch tokens of a CLIP vision tower, projected, cosine against class embeddings."""

    def __init__(self, config: SpeedConfig) -> None:
        super().__init__(config)
        width, layers, heads = SIZES[config.model]
        vision = CLIPVisionConfig(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            image_size=224,
            patch_size=16,
            projection_dim=512,
        )
        self.vision = CLIPVisionModelWithProjection(vision).eval()
        self.segment_seconds = 0.0
        self.segment_calls = 0

    def encode_vocabulary(self, vocab: Vocabulary) -> TextState:
        generator = torch.Generator().manual_seed(0)
        embeddings = torch.randn(vocab.num_classes, 512, generator=generator)
        return TextState(vocab, F.normalize(embeddings, dim=-1).to(self.device))

    def segment(self, images: Tensor, text: TextState) -> Tensor:
        start = time.perf_counter()
        out = self.vision.vision_model(pixel_values=images, interpolate_pos_encoding=True)
        tokens = self.vision.vision_model.post_layernorm(out.last_hidden_state[:, 1:])
        features = F.normalize(self.vision.visual_projection(tokens), dim=-1)
        h, w = images.shape[2] // 16, images.shape[3] // 16
        scores = (features @ text.embeddings.t()).transpose(1, 2).reshape(len(images), -1, h, w)
        self.segment_seconds += time.perf_counter() - start
        self.segment_calls += 1
        return scores


class SpeedLayout(DatasetLayout):
    def find(self, root: Path) -> list[Sample]:
        return [Sample(p.stem, p, root / "labels" / f"{p.stem}.png") for p in sorted(root.glob("images/*"))]

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = (375, 500) if i % 2 == 0 else (500, 375)
            blocks = rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)
            image = np.kron(blocks, np.ones((25, 25, 1), dtype=np.uint8))
            label = np.kron(
                rng.integers(0, num_classes, (h // 25, w // 25)), np.ones((25, 25), dtype=np.int64)
            )
            Image.fromarray(image).save(root / "images" / f"{i:05d}.jpg", quality=90)
            Image.fromarray(label.astype(np.uint8)).save(root / "labels" / f"{i:05d}.png")


VOC_LIKE = BenchmarkSpec(
    name="voc_like",
    version="0",
    summary="synthetic VOC-sized images, 21 classes with background",
    classes=("background", *(f"class{i}" for i in range(1, 21))),
    background=True,
    layout=SpeedLayout(),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(SIZES), default="small")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--max-windows", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    method = DenseCLIP(SpeedConfig(model=args.model))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        VOC_LIKE.layout.write_synthetic(root, VOC_LIKE.num_classes, args.images)
        source = VOC_LIKE.open(root)
        warm = evaluate(method, VOC_LIKE, source, TCL, limit=2, num_workers=0, progress=False)
        assert warm.num_images == 2
        method.segment_seconds, method.segment_calls = 0.0, 0
        result = evaluate(
            method,
            VOC_LIKE,
            source,
            TCL,
            num_workers=args.num_workers,
            max_windows=args.max_windows,
            progress=False,
        )
    inside = method.segment_seconds
    outside = result.seconds - inside
    print(
        f"model {args.model} | {result.num_images} images, {method.segment_calls} segment calls, "
        f"torch threads {torch.get_num_threads()}, {args.num_workers} data workers"
    )
    print(f"wall {result.seconds:.2f} s | {result.images_per_second:.2f} img/s | in segment {inside:.2f} s")
    print(f"harness overhead: {outside:.2f} s = {100 * outside / inside:.1f}% of model time")


if __name__ == "__main__":
    main()
