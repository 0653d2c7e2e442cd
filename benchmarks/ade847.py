"""ADE20K-Full (``ade847``): the 847 object classes of the ADE20K 2021_17_01 release, 2000 val images.

Reads detectron2's layout as ov-seg, CAT-Seg and MESS prepare it:
``ADE20K_2021_17_01/images_detectron2/validation/ADE_val_<8 digits>.jpg`` and
``ADE20K_2021_17_01/annotations_detectron2/validation/<same>.tif``. Labels are uint16 TIFFs: the
847 classes' train ids 0..846, every other pixel 65535 (the ignore index all of them register).

``prepare`` reproduces ``prepare_ade20k_full_sem_seg.py`` (ov-seg; CAT-Seg's
``prepare_ade20k_full.py`` and MESS's in-domain copy are the same) for the validation images:

* the object class of a pixel is ``int(R / 10) * 256 + G`` of the image's ``*_seg.png``;
* an image whose short side exceeds 512 is shrunk so that it is 512 (the long side
  ``round(long / short * 512)``): the image with OpenCV's bilinear ``cv2.resize`` (reproduced bit for
  bit by :func:`textseg.evaluation.preprocess.resize_bilinear`), the class map with nearest
  neighbour (OpenCV's rule: source index ``floor(i * (1 / (dst / src)))``);
* each of the 847 ADE object ids of ``ade847_object_ids.txt`` becomes its train id (its line), any
  other value 65535; the map is written as an uncompressed uint16 TIFF;
* every image is written again as a JPEG with PIL's defaults (quality 75), resized or not, from the
  decoded pixels as PIL returns them (a greyscale JPEG stays greyscale).

The official script lists the images from ``index_ade20k.pkl``; textseg never unpickles a user's
file, so it finds the same images by scanning ``images/ADE/validation`` for ``ADE_val_*.jpg`` (the
script's test: the second ``_``-separated word is ``val``), and the split size (2000) checks the
result. The release needs a registration (https://groups.csail.mit.edu/vision/datasets/ADE20K/
request_data/): there is no ``textseg data download ade847``.

Class names are the table's ``name`` fields (WordNet synonyms joined by ``", "``, e.g.
``"building, edifice"``), as CAT-Seg's ``ade847.json`` has them; the harness splits a line on
``", "`` into synonyms of one class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from textseg.errors import TextsegError
from textseg.evaluation.preprocess import resize_bilinear

from ._files import (
    PrepareError,
    first_existing,
    is_valid_label,
    run_jobs,
    save_as_pil_does,
    save_jpeg,
    save_png,
)
from ._layout import Archive, FolderLayout
from ._spec import builtin
from ._synthetic import random_label, random_size, render_image

TREE = "ADE20K_2021_17_01"
#: The registered download; it is never fetched, only unpacked when it lies in the downloads folder.
ZIP = Archive(f"{TREE}.zip", "https://groups.csail.mit.edu/vision/datasets/ADE20K/request_data/")
IMAGES = "images_detectron2/validation"
LABELS = "annotations_detectron2/validation"
SOURCE = "images/ADE/validation"
IGNORE = 65535
MAX_SHORT_SIDE = 512
VAL_NAME = re.compile(r"ADE_val_\d{8}\.jpg")


def object_ids() -> np.ndarray:
    """The ADE object id of each of the 847 classes, in train id order."""
    text = resources.files(__package__).joinpath("ade847_object_ids.txt").read_text(encoding="utf-8")
    return np.array([int(line) for line in text.split()], dtype=np.int64)


def train_ids(classes: np.ndarray) -> np.ndarray:
    """ADE object ids -> 0..846, anything else -> 65535 (uint16)."""
    ids = object_ids()
    order = np.argsort(ids)
    position = np.searchsorted(ids, classes, sorter=order).clip(max=len(ids) - 1)
    found = ids[order[position]] == classes
    return np.where(found, order[position], IGNORE).astype(np.uint16)


def object_classes(seg: np.ndarray) -> np.ndarray:
    """``int(R / 10) * 256 + G`` of an RGB ``*_seg.png`` (ADE20K's own decoding)."""
    return (seg[..., 0] // 10).astype(np.int64) * 256 + seg[..., 1]


def shrunk_size(height: int, width: int) -> tuple[int, int] | None:
    """(height, width) with the short side 512 when it is longer, else None (no resize)."""
    if width >= height > MAX_SHORT_SIDE:
        return MAX_SHORT_SIDE, round(width / float(height) * MAX_SHORT_SIDE)
    if height >= width > MAX_SHORT_SIDE:
        return round(height / float(width) * MAX_SHORT_SIDE), MAX_SHORT_SIDE
    return None


def resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cv2.resize(array, (w, h), interpolation=cv2.INTER_NEAREST)``: row ``i`` of the output is
    source row ``min(floor(i * (1 / (h / H))), H - 1)`` (double arithmetic), columns likewise."""

    def index(src: int, dst: int) -> np.ndarray:
        return np.minimum(np.floor(np.arange(dst) * (1.0 / (dst / src))).astype(np.int64), src - 1)

    return array[index(array.shape[0], size[0])][:, index(array.shape[1], size[1])]


def _convert(image_path: Path, image_out: Path, label_out: Path) -> bool:
    """One validation image and its class map, as the official script writes them."""
    if is_valid_label(label_out) and image_out.is_file():
        return False
    with Image.open(image_path) as handle:
        image = np.asarray(handle)
    seg_path = image_path.with_name(f"{image_path.stem}_seg.png")
    if not seg_path.is_file():
        raise PrepareError(f"{image_path} has no {seg_path.name} beside it; the download looks incomplete")
    with Image.open(seg_path) as handle:
        seg = np.asarray(handle)
    if seg.ndim != 3 or seg.shape[:2] != image.shape[:2]:
        raise PrepareError(
            f"{seg_path} is {seg.shape}, its image {image.shape}: expected RGB of the same size"
        )
    classes = object_classes(seg)
    size = shrunk_size(*image.shape[:2])
    if size is not None:
        pixels = torch.from_numpy(np.require(image.reshape(*image.shape[:2], -1), requirements=["C", "W"]))
        image = resize_bilinear(pixels, size).numpy().reshape(*size, *image.shape[2:])
        classes = resize_nearest(classes, size)
    save_as_pil_does(image_out, image, "JPEG")
    save_as_pil_does(label_out, train_ids(classes), "TIFF")
    return True


@dataclass(frozen=True)
class ADE847Layout(FolderLayout):
    """``ADE20K_2021_17_01/{images,annotations}_detectron2/validation``; see the module docstring."""

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        ZIP.extract(raw)
        source = first_existing(
            [raw / TREE / SOURCE, raw / SOURCE],
            f"the validation images of {TREE} ({SOURCE})",
            f"Put {ZIP.filename} (or its extracted {TREE}/) in {raw}; it needs a registration at {ZIP.url}",
        )
        images = sorted(
            (p for p in source.rglob("ADE_val_*.jpg") if VAL_NAME.fullmatch(p.name)), key=lambda p: p.name
        )
        if not images:
            raise PrepareError(f"no ADE_val_*.jpg under {source}")
        out = root / TREE
        jobs = [(p, out / IMAGES / p.name, out / LABELS / f"{p.stem}.tif") for p in images]
        run_jobs(_convert, jobs, "ade847 images and labels", workers)

    def download(self, raw: Path, mirror: str | None = None) -> None:
        raise TextsegError(
            f"{TREE} needs a registration: request it at {ZIP.url}, download {ZIP.filename}, put it in "
            f"{raw} and run: textseg data prepare ade847 --raw {raw}"
        )

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        for k in range(n):
            label = random_label(rng, *random_size(rng), values=[*range(num_classes), IGNORE], wide=True)
            save_jpeg(root / TREE / IMAGES / f"ADE_val_{k + 1:08d}.jpg", render_image(rng, label))
            save_as_pil_does(
                root / TREE / LABELS / f"ADE_val_{k + 1:08d}.tif", label.astype(np.uint16), "TIFF"
            )

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """``ADE20K_2021_17_01/images/ADE/{validation,training}/<scene>/`` with ``n`` val and
        ``n // 2 + 1`` train images and their ``*_seg.png`` (object ids of the 847 and others, some 0);
        the first val image has a short side over 512, so it is shrunk."""
        rng = np.random.default_rng(seed)
        ids = object_ids()
        values = [0, 1, 5, 3000, *ids[:: max(1, len(ids) // 40)].tolist()]
        for split, prefix, count in (("validation", "val", n), ("training", "train", n // 2 + 1)):
            for k in range(count):
                size = (520, 530 + k) if (split, k) == ("validation", 0) else random_size(rng)
                classes = random_label(rng, *size, values=values, wide=True)
                scene = ("urban/street", "home_or_hotel/bedroom")[k % 2]
                stem = f"ADE_{prefix}_{k + 1:08d}"
                folder = raw / TREE / "images/ADE" / split / scene
                save_jpeg(folder / f"{stem}.jpg", render_image(rng, classes))
                seg = np.stack(
                    [
                        (classes // 256) * 10 + rng.integers(0, 10, classes.shape),
                        classes % 256,
                        rng.integers(0, 4, classes.shape),
                    ],
                    axis=-1,
                )
                save_png(folder / f"{stem}_seg.png", seg)


ADE847 = builtin(
    "ade847",
    "ADE20K-Full (2021_17_01) val: 847 classes (uint16 labels, ignore 65535), 2000 images",
    ADE847Layout(
        benchmark="ade847",
        title="ADE20K-Full val",
        base=TREE,
        img_dir=IMAGES,
        ann_dir=LABELS,
        img_suffix=".jpg",
        seg_suffix=".tif",
        split_file=None,
        raw_hint=f"folder with {ZIP.filename} (registration: {ZIP.url}) or its extracted {TREE}/",
        scan_labels=True,
    ),
    split_size=2000,
    ignore_index=IGNORE,
)
