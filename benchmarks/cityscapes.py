"""Cityscapes (``cityscapes``): 19 classes on the 500 fine-annotated val images.

Reads mmsegmentation's layout ``cityscapes/leftImg8bit/val/<city>/<name>_leftImg8bit.png`` with
``cityscapes/gtFine/val/<city>/<name>_gtFine_labelTrainIds.png`` (found by scanning, sorted);
trainIds 0..18 in ``CityscapesDataset.CLASSES`` order, 255 ignored.

``prepare`` rasterises every ``*_gtFine_polygons.json`` as cityscapesScripts' ``json2labelImg``
does with ``'trainIds'``: a canvas of 255 ("unlabeled"), then each object in file order drawn as a
filled polygon (Pillow's ``ImageDraw.polygon``, no outline) with its trainId, later objects over
earlier ones; deleted objects and ``license plate`` (id −1) are skipped, a ``...group`` label
falls back to its base label, void labels paint 255, and an unknown label is an error. The
rasteriser is Pillow's, as in cityscapesScripts, so edge pixels can differ only across Pillow
versions (unverified). The data needs a login at cityscapes-dataset.com, so there is no
``download``; ``prepare`` unpacks the two zips (their ``val`` folders) if they lie in ``--raw``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from textseg.benchmark import Sample
from textseg.errors import TextsegError
from textseg.io import write_json

from ._files import PrepareError, is_valid_label, link_files, run_jobs, save_png
from ._layout import Archive, FolderLayout
from ._spec import builtin
from ._synthetic import random_shapes, random_size, render_image

#: Images per city of the official val split (500 in all).
VAL_CITIES = {"frankfurt": 267, "lindau": 59, "munster": 174}

#: cityscapesScripts' label table as ``name: (id, trainId)``; trainId 255 = ignored in evaluation.
LABELS: dict[str, tuple[int, int]] = {
    "unlabeled": (0, 255),
    "ego vehicle": (1, 255),
    "rectification border": (2, 255),
    "out of roi": (3, 255),
    "static": (4, 255),
    "dynamic": (5, 255),
    "ground": (6, 255),
    "road": (7, 0),
    "sidewalk": (8, 1),
    "parking": (9, 255),
    "rail track": (10, 255),
    "building": (11, 2),
    "wall": (12, 3),
    "fence": (13, 4),
    "guard rail": (14, 255),
    "bridge": (15, 255),
    "tunnel": (16, 255),
    "pole": (17, 5),
    "polegroup": (18, 255),
    "traffic light": (19, 6),
    "traffic sign": (20, 7),
    "vegetation": (21, 8),
    "terrain": (22, 9),
    "sky": (23, 10),
    "person": (24, 11),
    "rider": (25, 12),
    "car": (26, 13),
    "truck": (27, 14),
    "bus": (28, 15),
    "caravan": (29, 255),
    "trailer": (30, 255),
    "train": (31, 16),
    "motorcycle": (32, 17),
    "bicycle": (33, 18),
    "license plate": (-1, -1),
}
IMG_SUFFIX, POLY_SUFFIX, LABEL_SUFFIX = (
    "_leftImg8bit.png",
    "_gtFine_polygons.json",
    "_gtFine_labelTrainIds.png",
)
SPLITS = ("val", "train")
DOWNLOADS = "https://www.cityscapes-dataset.com/downloads/"
#: The two packages (login needed, no public checksums). Only their val folders are unpacked;
#: train is converted too when it was unpacked by hand.
PACKAGES = (
    Archive("gtFine_trainvaltest.zip", DOWNLOADS, members="val"),
    Archive("leftImg8bit_trainvaltest.zip", DOWNLOADS, members="val"),
)


def rasterise(polygons: dict) -> np.ndarray:
    """A ``*_gtFine_polygons.json`` document -> its trainId map (see the module docstring)."""
    canvas = Image.new("L", (int(polygons["imgWidth"]), int(polygons["imgHeight"])), LABELS["unlabeled"][1])
    draw = ImageDraw.Draw(canvas)
    for obj in polygons["objects"]:
        if obj.get("deleted", 0):
            continue
        label = obj["label"]
        if label not in LABELS and label.endswith("group"):
            label = label[: -len("group")]
        if label not in LABELS:
            raise PrepareError(f"unknown Cityscapes label {obj['label']!r}")
        label_id, train_id = LABELS[label]
        if label_id < 0:
            continue
        draw.polygon([(p[0], p[1]) for p in obj["polygon"]], fill=train_id)
    return np.array(canvas)


def _convert(src: Path, dst: Path) -> bool:
    with open(src, encoding="utf-8") as handle:
        polygons = json.load(handle)
    if is_valid_label(dst, (int(polygons["imgWidth"]), int(polygons["imgHeight"]))):
        return False
    try:
        save_png(dst, rasterise(polygons))
    except PrepareError as exc:
        raise PrepareError(f"{src}: {exc}") from exc
    return True


@dataclass(frozen=True)
class CityscapesLayout(FolderLayout):
    """``cityscapes`` under the data root; see the module docstring."""

    def download(self, raw: Path, mirror: str | None = None) -> None:
        raise TextsegError(
            f"Cityscapes needs a login: download {' and '.join(p.filename for p in PACKAGES)} from "
            f"{DOWNLOADS} into {raw}, then run textseg data prepare cityscapes --raw {raw}"
        )

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        for package in PACKAGES:
            package.extract(raw)
        if (
            raw / "cityscapes" / "gtFine"
        ).is_dir():  # --raw is a data root already holding the zips' contents
            raw = raw / "cityscapes"
        out = root / "cityscapes"
        links, jobs = [], []
        for split in SPLITS:
            polygons = sorted((raw / "gtFine" / split).glob(f"*/*{POLY_SUFFIX}"))
            if not polygons:
                if split == "val":
                    raise PrepareError(
                        f"no {raw / 'gtFine/val/<city>/*' + POLY_SUFFIX}: put "
                        f"{' and '.join(p.filename for p in PACKAGES)} (or their contents) in {raw}"
                    )
                continue
            for src in polygons:
                name = src.name[: -len(POLY_SUFFIX)]
                city = src.parent.name
                links.append(
                    (
                        raw / "leftImg8bit" / split / city / f"{name}{IMG_SUFFIX}",
                        out / "leftImg8bit" / split / city / f"{name}{IMG_SUFFIX}",
                    )
                )
                jobs.append((src, out / "gtFine" / split / city / f"{name}{LABEL_SUFFIX}"))
        link_files(links, "images")
        run_jobs(_convert, jobs, "cityscapes labels", workers)

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        for city, name in _names(n):
            label = rasterise(_random_polygons(rng))
            _write_image(root / "cityscapes", city, name, label, rng)
            save_png(root / "cityscapes" / "gtFine" / "val" / city / f"{name}{LABEL_SUFFIX}", label)

    def describe_missing(self, root: Path, samples: list[Sample]) -> str:
        """Images found per city against the official val counts (the names are not derivable)."""
        found = {city: 0 for city in VAL_CITIES}
        for sample in samples:
            city = sample.id.split("/")[0]
            found[city] = found.get(city, 0) + 1
        return ", ".join(
            f"{city} {found[city]} of {VAL_CITIES.get(city, 0)}"
            for city in found
            if found[city] != VAL_CITIES.get(city, 0)
        )

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """``gtFine/val/<city>/*_gtFine_polygons.json`` with random objects (void, group, deleted and
        license-plate ones included) and the matching ``leftImg8bit`` PNGs, as the zips unpack."""
        rng = np.random.default_rng(seed)
        for city, name in _names(n):
            polygons = _random_polygons(rng)
            write_json(raw / "gtFine" / "val" / city / f"{name}{POLY_SUFFIX}", polygons)
            _write_image(raw, city, name, rasterise(polygons), rng)


def _names(n: int) -> list[tuple[str, str]]:
    cities = ("frankfurt", "lindau", "munster")
    return [(cities[k % 3], f"{cities[k % 3]}_000000_{k:06d}") for k in range(n)]


def _write_image(base: Path, city: str, name: str, label: np.ndarray, rng: np.random.Generator) -> None:
    save_png(base / "leftImg8bit" / "val" / city / f"{name}{IMG_SUFFIX}", render_image(rng, label))


def _random_polygons(rng: np.random.Generator) -> dict:
    height, width = random_size(rng)
    names = [*LABELS, "cargroup", "persongroup"]
    objects = [
        {"label": "road", "polygon": [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]}
    ]
    for polygon in random_shapes(rng, 6, height, width):
        obj = {"label": str(rng.choice(names)), "polygon": [list(p) for p in polygon]}
        if rng.random() < 0.1:
            obj["deleted"] = 1
        objects.append(obj)
    return {"imgHeight": height, "imgWidth": width, "objects": objects}


CITYSCAPES = builtin(
    "cityscapes",
    "Cityscapes val (gtFine): 19 classes, void ignored, 500 images",
    CityscapesLayout(
        benchmark="cityscapes",
        title="Cityscapes val",
        base="cityscapes",
        img_dir="leftImg8bit/val",
        ann_dir="gtFine/val",
        img_suffix=IMG_SUFFIX,
        seg_suffix=LABEL_SUFFIX,
        split_file=None,
        raw_hint="folder with gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, or their contents",
    ),
    split_size=sum(VAL_CITIES.values()),
)
