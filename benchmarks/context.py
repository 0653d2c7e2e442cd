"""PASCAL Context: ``context60`` (background + 59 classes) and ``context59`` (59 classes).

Both read mmsegmentation's layout ``VOCdevkit/VOC2010/{JPEGImages,SegmentationClassContext}`` with
``ImageSets/SegmentationContext/val.txt`` (5104 ids; the paper's split had 5105). Label PNGs hold
0 = background (every pixel outside the 59 classes) and 1..59, never 255.

* ``context60`` (mmseg ``PascalContextDataset``): class 0 is background, predicted by threshold.
* ``context59`` (mmseg ``PascalContextDataset59``): ``reduce_zero_label``, background ignored.

``prepare`` reproduces mmseg's ``pascal_context.py`` without the Detail API: images and their phase
(train/val) come from ``trainval_merged.json``; each image's semantic mask starts at 0 and every
annotation of ``annos_segmentation`` (JSON order, keyed by annotation id as the Detail API keys
them, so the last one painted wins) paints its decoded RLE mask (pycocotools) with its
``category_id`` in the 459-class space; the 60 ids of mmseg's ``_mapping`` then become 0..59 by
their sorted position. An id outside the mapping fails, as mmseg's assert does.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from textseg.io import write_json

from ._files import (
    PrepareError,
    first_existing,
    is_valid_label,
    link_files,
    run_jobs,
    save_jpeg,
    save_png,
    write_ids,
)
from ._layout import Archive, FolderLayout
from ._spec import builtin
from ._synthetic import random_label, random_shapes, random_size, render_image

#: mmseg's ``_mapping``: the 459-space category ids of background (0) and the 59 classes, sorted;
#: a class's label value is its position here.
CONTEXT_IDS = np.array(
    (
        "0 2 9 18 19 22 23 25 31 33 34 44 45 46 59 65 68 72 80 85 98 104 105 113 115 144 158 159 162 187 "
        "189 207 220 232 258 259 260 284 295 296 308 324 326 347 349 354 355 360 366 368 397 415 416 420 "
        "424 427 440 445 454 458"
    ).split(),
    dtype=np.int64,
)
VOC2010_ARCHIVE = Archive(
    "VOCtrainval_03-May-2010.tar",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
    md5="da459979d0c395079b5c75ee67908abb",
    sha1="bf9985e9f2b064752bf6bd654d89f017c76c395a",
)
JSON_ARCHIVE = Archive(
    "trainval_merged.json",
    "https://codalabuser.blob.core.windows.net/public/trainval_merged.json",
    extract_to=None,
    sha1="169325d9f7e9047537fedca7b04de4dddf10b881",
)
BASE = "VOCdevkit/VOC2010"
SPLITS = "ImageSets/SegmentationContext"
PHASES = ("train", "val")

Segment = tuple[int, dict[str, Any]]  # (459-space category id, RLE)


def context_index(mask: np.ndarray, where: str) -> np.ndarray:
    """459-space ids -> 0..59 (position in :data:`CONTEXT_IDS`); other ids raise."""
    index = np.searchsorted(CONTEXT_IDS, mask).clip(max=len(CONTEXT_IDS) - 1)
    bad = CONTEXT_IDS[index] != mask
    if bad.any():
        raise PrepareError(
            f"{where}: category ids {sorted(set(mask[bad].tolist()))} are not among the 60 PASCAL Context "
            "classes (mmseg's _mapping); is trainval_merged.json the right file?"
        )
    return index.astype(np.uint8)


def _write_mask(dst: Path, height: int, width: int, segments: list[Segment]) -> bool:
    """Paint one image's annotations in order and write its 0..59 label PNG."""
    if is_valid_label(dst, (width, height)):
        return False
    mask = np.zeros((height, width), dtype=np.int64)
    for category, rle in segments:
        if isinstance(rle["counts"], list):
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        decoded = mask_utils.decode(rle)
        if decoded.shape != mask.shape:
            raise PrepareError(f"{dst.stem}: a mask is {decoded.shape}, the image {mask.shape}")
        mask[decoded != 0] = category
    save_png(dst, context_index(mask, dst.stem))
    return True


@dataclass(frozen=True)
class ContextLayout(FolderLayout):
    """``VOCdevkit/VOC2010`` under the data root; see the module docstring."""

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        hint = f"Put {VOC2010_ARCHIVE.filename} and {JSON_ARCHIVE.filename} (or their contents) in {raw}."
        jpegs = first_existing(
            [raw / BASE / "JPEGImages", raw / "VOC2010/JPEGImages"], "VOC2010 images", hint
        )
        merged = first_existing(
            [raw / JSON_ARCHIVE.filename, raw / BASE / JSON_ARCHIVE.filename], "the JSON", hint
        )
        with open(merged, encoding="utf-8") as handle:
            data = json.load(handle)
        images = [img for img in data["images"] if img.get("phase") in PHASES]
        if not images:
            raise PrepareError(f"{merged} has no images in phases {PHASES}")
        # Keyed by annotation id like the Detail API: a repeated id keeps its first place, last value.
        annotations = {ann["id"]: ann for ann in data["annos_segmentation"]}
        segments: dict[int, list[Segment]] = defaultdict(list)
        for ann in annotations.values():
            segments[ann["image_id"]].append((ann["category_id"], ann["segmentation"]))
        del data, annotations
        out = root / BASE
        link_files([(merged, out / JSON_ARCHIVE.filename)], "annotations")
        link_files(
            [(jpegs / img["file_name"], out / "JPEGImages" / img["file_name"]) for img in images], "images"
        )
        jobs = [
            (
                out / "SegmentationClassContext" / f"{Path(img['file_name']).stem}.png",
                img["height"],
                img["width"],
                segments.get(img["image_id"], []),
            )
            for img in images
        ]
        run_jobs(_write_mask, jobs, "context labels", workers)
        for phase in PHASES:
            stems = sorted(Path(img["file_name"]).stem for img in images if img["phase"] == phase)
            write_ids(out / SPLITS / f"{phase}.txt", stems)

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        ids = [f"2008_{i:06d}" for i in range(n)]
        for i in ids:
            label = random_label(rng, *random_size(rng), values=range(60))
            save_jpeg(root / BASE / "JPEGImages" / f"{i}.jpg", render_image(rng, label))
            save_png(root / BASE / "SegmentationClassContext" / f"{i}.png", label)
        write_ids(root / BASE / SPLITS / "val.txt", ids)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """VOC2010 JPEGs and a ``trainval_merged.json`` with ``n`` val images, ``n // 2 + 1`` train
        images and one test image, each with overlapping RLE-encoded polygons of the 59 classes."""
        rng = np.random.default_rng(seed)
        phases = ["val"] * n + ["train"] * (n // 2 + 1) + ["test"]
        images, annotations = [], []
        for k, phase in enumerate(phases):
            stem = f"2008_{k:06d}"
            height, width = random_size(rng)
            image_id = int(stem.replace("_", ""))
            images.append(
                {
                    "image_id": image_id,
                    "file_name": f"{stem}.jpg",
                    "height": height,
                    "width": width,
                    "phase": phase,
                }
            )
            for polygon in random_shapes(rng, 4, height, width):
                canvas = Image.new("L", (width, height), 0)
                ImageDraw.Draw(canvas).polygon(polygon, fill=1)
                rle = mask_utils.encode(np.asfortranarray(np.array(canvas)))
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(rng.choice(CONTEXT_IDS[1:])),
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                        "area": int(mask_utils.area(rle)),
                        "bbox": mask_utils.toBbox(rle).tolist(),
                        "iscrowd": 0,
                        "parts": [],
                    }
                )
            save_jpeg(
                raw / BASE / "JPEGImages" / f"{stem}.jpg",
                render_image(rng, np.zeros((height, width), np.uint8)),
            )
        categories = [
            {
                "category_id": int(c),
                "name": name,
                "supercategory": "object",
                "onlysemantic": False,
                "parts": [],
            }
            for c, name in zip(CONTEXT_IDS[1:], CONTEXT60.classes[1:])
        ]
        write_json(
            raw / JSON_ARCHIVE.filename,
            {"images": images, "annos_segmentation": annotations, "categories": categories, "parts": []},
        )


def _layout(benchmark: str) -> ContextLayout:
    return ContextLayout(
        benchmark=benchmark,
        title="PASCAL Context val",
        base=BASE,
        img_dir="JPEGImages",
        ann_dir="SegmentationClassContext",
        img_suffix=".jpg",
        seg_suffix=".png",
        split_file=f"{SPLITS}/val.txt",
        raw_hint=f"folder with {VOC2010_ARCHIVE.filename} (or VOCdevkit/VOC2010/) and {JSON_ARCHIVE.filename}",
        archives=(VOC2010_ARCHIVE, JSON_ARCHIVE),
    )


CONTEXT60 = builtin(
    "context60",
    "PASCAL Context val: background + 59 classes (background by threshold), 5104 images",
    _layout("context60"),
    split_size=5104,
    background=True,
)
CONTEXT59 = builtin(
    "context59",
    "PASCAL Context val: 59 classes, background ignored (reduce_zero_label), 5104 images",
    _layout("context59"),
    split_size=5104,
    reduce_zero_label=True,
)
