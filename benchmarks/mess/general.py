"""MESS's general domain: ATLANTIS (public download).

``mess_atlantis`` (Erfani et al., EMS 2022): the ``atlantis/`` folder of
github.com/smhassanerfani/atlantis, ``images/test/<class>/<id>.jpg`` and ``masks/test/<class>/<id>.png``
with grey values 1..56 (0 = unlabelled). MESS's ``prepare_atlantis.py`` saves every test image again
as ``images_detectron2/test/<id>.jpg`` (RGB, PIL's JPEG defaults) and its mask with ``v -> v - 1``,
``0 -> 255`` as ``annotations_detectron2/test/<id>.png``; 1295 test images. A value above 56 has no
class (MESS's lookup fails on it; here it is an error naming the file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.errors import note

from .._files import PrepareError, save_as_pil_does, save_png
from .._layout import Archive
from .._synthetic import random_label, random_size, render_image
from ._common import IGNORE, MessLayout, convert_labels, find_tree, mess_benchmark, resave_images

ZIP = Archive(
    "atlantis-master.zip",
    "https://github.com/smhassanerfani/atlantis/archive/refs/heads/master.zip",
    members="test",
)
CLASSES = 56


def atlantis_rule(mask: np.ndarray) -> np.ndarray:
    """1..56 -> 0..55, 0 -> 255 (ignored)."""
    if mask.ndim != 2 or mask.max(initial=0) > CLASSES:
        raise PrepareError(
            f"an ATLANTIS mask has values up to {mask.max()} (shape {mask.shape}); expected 0..56"
        )
    return np.where(mask == 0, IGNORE, mask.astype(np.int64) - 1).astype(np.uint8)


@dataclass(frozen=True)
class AtlantisLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        src = find_tree(
            raw,
            [raw / "atlantis", *sorted(raw.glob("*/atlantis")), raw],
            ["images/test", "masks/test"],
            "the atlantis/ folder of github.com/smhassanerfani/atlantis",
            f"Clone the repository and put its atlantis/ folder in {raw}, or put {ZIP.filename} ({ZIP.url}) there.",
        )
        images = sorted((src / "images/test").glob("*/*.jpg"))
        by_name = {
            p.name: p for p in images
        }  # MESS flattens the class folders: a repeated name is written twice
        if len(by_name) != len(images):
            note(
                f"mess_atlantis: {len(images) - len(by_name)} test images share a name; the last by path is kept"
            )
        out = root / self.base
        resave_images(
            [(p, out / self.img_dir / name) for name, p in by_name.items()], "atlantis images", workers
        )
        pairs = [
            (src / "masks/test" / p.parent.name / f"{p.stem}.png", out / self.ann_dir / f"{p.stem}.png")
            for p in by_name.values()
        ]
        convert_labels(pairs, atlantis_rule, "atlantis labels", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """``atlantis/{images,masks}/{test,train}/<class>/``: ``n`` test and ``n // 2 + 1`` train pairs,
        masks of grey values 0..56."""
        rng = np.random.default_rng(seed)
        for split, count in (("test", n), ("train", n // 2 + 1)):
            for k in range(count):
                label = random_label(rng, *random_size(rng), values=range(CLASSES + 1))
                folder = ("canal", "dam", "river")[k % 3]
                stem = f"{49000000000 + 1000 * k + (split == 'train')}"
                image = raw / "atlantis/images" / split / folder / f"{stem}.jpg"
                save_as_pil_does(image, render_image(rng, label), "JPEG")
                save_png(raw / "atlantis/masks" / split / folder / f"{stem}.png", label)


ATLANTIS = mess_benchmark(
    "mess_atlantis",
    "MESS general: ATLANTIS test, waterbodies and what surrounds them, 56 classes, 1295 images",
    AtlantisLayout(
        benchmark="mess_atlantis",
        title="ATLANTIS test (MESS)",
        base="atlantis",
        img_dir="images_detectron2/test",
        ann_dir="annotations_detectron2/test",
        img_suffix=".jpg",
        seg_suffix=".png",
        split_file=None,
        raw_hint=f"folder with the repository's atlantis/ folder or {ZIP.filename}",
        archives=(ZIP,),
        scan_labels=True,
    ),
    split_size=1295,
)
