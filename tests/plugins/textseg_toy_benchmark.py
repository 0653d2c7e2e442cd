"""Test-only benchmarks and protocol, installed in tests as an outside plugin distribution (never shipped).

A small real folder layout: ``<root>/<folder>/images/<id>.png`` (RGB) and ``<root>/<folder>/labels/<id>.png``
(single-channel class indices, 255 = ignore). Three benchmarks share it:

* ``toy``: three classes, no background;
* ``toy_bg``: class 0 is background predicted by threshold;
* ``toy_reduce``: stored labels 0 = ignore, 1..3 = classes 0..2 (``reduce_zero_label``).

The ``toy`` protocol is the TCL protocol at a tiny scale so CPU tests run fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from textseg.benchmark import BenchmarkSpec, DatasetLayout, Sample
from textseg.errors import DatasetNotFoundError
from textseg.evaluation.protocol import Protocol


class ToyLayout(DatasetLayout):
    def __init__(self, folder: str, reduce_zero_label: bool = False) -> None:
        self.folder = folder
        self.reduce_zero_label = reduce_zero_label

    def find(self, root: Path) -> list[Sample]:
        images = root / self.folder / "images"
        labels = root / self.folder / "labels"
        if not images.is_dir() or not labels.is_dir():
            raise DatasetNotFoundError(
                f"expected {images} and {labels}; create them with the toy plugin's write_synthetic"
            )
        return [Sample(p.stem, p, labels / p.name) for p in sorted(images.glob("*.png"))]

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """Images of random size (some below 32 px, some not multiples of anything) with block labels."""
        rng = np.random.default_rng(seed)
        (root / self.folder / "images").mkdir(parents=True, exist_ok=True)
        (root / self.folder / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = (int(v) for v in rng.integers(20, 70, 2))
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            low = 1 if self.reduce_zero_label else 0
            blocks = rng.integers(low, num_classes + low, (h // 8 + 1, w // 8 + 1))
            label = np.kron(blocks, np.ones((8, 8), dtype=np.int64))[:h, :w].astype(np.uint8)
            label[rng.random((h, w)) < 0.05] = 0 if self.reduce_zero_label else 255
            Image.fromarray(image).save(root / self.folder / "images" / f"{i:04d}.png")
            Image.fromarray(label).save(root / self.folder / "labels" / f"{i:04d}.png")


TOY = BenchmarkSpec(
    name="toy",
    version="1",
    summary="test-only: three shapes, no background",
    classes=("circle", "square", "triangle"),
    background=False,
    layout=ToyLayout("toy"),
    synonyms={"alt": ("circle, ring", "square, box", "triangle")},
)

TOY_BG = BenchmarkSpec(
    name="toy_bg",
    version="1",
    summary="test-only: background by threshold + two shapes",
    classes=("background", "circle", "square"),
    background=True,
    layout=ToyLayout("toy_bg"),
)

TOY_REDUCE = BenchmarkSpec(
    name="toy_reduce",
    version="1",
    summary="test-only: stored 0 is ignored, 1..3 are the classes",
    classes=("circle", "square", "triangle"),
    background=False,
    layout=ToyLayout("toy_reduce", reduce_zero_label=True),
    reduce_zero_label=True,
)

TOY_PROTOCOL = Protocol(
    name="toy",
    version="1",
    summary="test-only: short side 32, 32 px windows at stride 16",
    short_side=32,
    max_long_side=64,
    crop=32,
    stride=16,
    templates="simple",
)
