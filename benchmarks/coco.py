"""COCO-Stuff 164k (``coco_stuff``, 171 classes) and COCO-Object (``coco_object``, background + 80).

Both read mmsegmentation's layout ``coco_stuff164k/{images,annotations}/val2017`` (5000 images,
found by scanning, sorted): ``<id>.jpg`` with ``<id>_labelTrainIds.png`` (COCO-Stuff) or
``<id>_instanceTrainIds.png`` (COCO-Object).

The raw labels are the ``stuffthingmaps_trainval2017.zip`` PNGs: value = COCO category id − 1
(things 0..89 with 11 ids never annotated, stuff 91..181), 255 = unlabeled. ``prepare`` converts
them as the protocol's converters do:

* COCO-Stuff (mmseg ``coco_stuff164k.py``): the 171 annotated ids, in order, become trainIds
  0..170 (things 0..79, stuff 80..170); 255 stays 255 (ignored).
* COCO-Object (GroupViT's ``convert_coco_object.py``, shipped unchanged by TCL and the SCLIP family;
  not from COCO instance JSON): things become 1..80, every stuff id *and* unlabeled 255 become 0
  (background), so COCO-Object has no ignored pixels.

Like both converters, a value outside those tables passes through unchanged; the preparer says so
(the unused ids are documented as never occurring). Raw maps are the PNGs whose name does not
contain ``TrainIds`` (TCL's filter), so the two conversions can run in either order, in place
(``--raw`` = the ``coco_stuff164k`` folder) or not; mmseg's own filter (``_labelTrainIds`` only)
is the reason it must run before the COCO-Object converter there, and the reason we do not use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from textseg.errors import note

from ._files import PrepareError, is_valid_label, link_files, run_jobs, save_jpeg, save_png
from ._layout import Archive, FolderLayout
from ._spec import builtin
from ._synthetic import random_label, random_size, render_image

#: Thing ids of the stuffthingmaps (COCO category id − 1) that have no segmentation annotations.
UNUSED = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
#: The 171 annotated raw ids in trainId order.
ANNOTATED = tuple(i for i in range(182) if i not in UNUSED)
UNLABELED = 255


def _luts() -> dict[str, np.ndarray]:
    stuff = np.arange(256, dtype=np.uint8)  # identity: unknown values pass through, as in mmseg
    obj = stuff.copy()
    for train_id, raw in enumerate(ANNOTATED):
        stuff[raw] = train_id
        obj[raw] = train_id + 1 if raw < 91 else 0
    obj[UNLABELED] = 0
    return {"stuff": stuff, "object": obj}


LUTS = _luts()
SUFFIXES = {"stuff": "_labelTrainIds.png", "object": "_instanceTrainIds.png"}
KNOWN = np.zeros(256, dtype=bool)
KNOWN[[*ANNOTATED, UNLABELED]] = True

VAL_ARCHIVE = Archive(
    "val2017.zip",
    "http://images.cocodataset.org/zips/val2017.zip",
    md5="442b8da7639aecaf257c1dceb8ba8c80",
    sha1="4950dc9d00dbe1c933ee0170f5797584351d2a41",
)
MAPS_ARCHIVE = Archive(
    "stuffthingmaps_trainval2017.zip",
    "http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/stuffthingmaps_trainval2017.zip",
    extract_to="stuffthingmaps_trainval2017",
    members="val2017",  # no published checksum; only the val maps are unpacked
)
BASE = "coco_stuff164k"
SPLITS = ("val2017", "train2017")


def _convert(src: Path, dst: Path, kind: str) -> list[int]:
    """One raw stuffthingmap -> trainIds of ``kind``; returns the raw values outside the tables."""
    with Image.open(src) as image:
        if is_valid_label(dst, image.size):
            return []
        raw = np.array(image)
    if raw.ndim != 2:
        raise PrepareError(f"{src} is not a single-channel label map (shape {raw.shape})")
    save_png(dst, LUTS[kind][raw])
    return np.unique(raw[~KNOWN[raw]]).tolist()


def _raw_maps(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.glob("*.png") if "TrainIds" not in p.name}


@dataclass(frozen=True)
class COCOLayout(FolderLayout):
    """``coco_stuff164k`` under the data root; ``kind`` is ``"stuff"`` or ``"object"``."""

    kind: str = "stuff"

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        out = root / BASE
        jobs, links = [], []
        for split in SPLITS:
            # As the zips unpack into --raw, as mmseg's docs unpack them, or already in the layout.
            image_dirs = (raw / split, raw / "images" / split, raw / BASE / "images" / split)
            map_dirs = (
                raw / MAPS_ARCHIVE.extract_to / split,
                raw / "annotations" / split,
                raw / BASE / "annotations" / split,
                raw / split,
            )
            images = next((d for d in image_dirs if any(d.glob("*.jpg"))), None)
            maps = next((m for m in map(_raw_maps, map_dirs) if m), {})
            if images is None or not maps:
                if split == "val2017":
                    raise PrepareError(
                        f"cannot find the COCO val2017 images (*.jpg in one of {', '.join(map(str, image_dirs))}) "
                        f"and raw stuffthingmaps (*.png in one of {', '.join(map(str, map_dirs))}). Put "
                        f"{VAL_ARCHIVE.filename} and {MAPS_ARCHIVE.filename} (or their contents) in {raw}."
                    )
                continue
            stems = sorted(p.stem for p in images.glob("*.jpg"))
            lacking = [s for s in stems if s not in maps]
            if lacking:
                raise PrepareError(
                    f"{len(lacking)} {split} images have no stuffthingmap, e.g. {lacking[0]}.png; the maps "
                    "download looks incomplete"
                )
            links += [(images / f"{s}.jpg", out / "images" / split / f"{s}.jpg") for s in stems]
            jobs += [
                (maps[s], out / "annotations" / split / f"{s}{SUFFIXES[self.kind]}", self.kind) for s in stems
            ]
        link_files(links, "images")
        unknown = run_jobs(_convert, jobs, f"{self.benchmark} labels", workers)
        odd = sorted({v for values in unknown for v in values})
        if odd:
            count = sum(bool(values) for values in unknown)
            note(
                f"warning: {count} label maps hold raw ids {odd} outside COCO-Stuff's 171 classes; they were "
                "kept unchanged, as the reference converters do"
            )

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """Images with both label files (from one raw map), so ``coco_stuff`` and ``coco_object`` can
        share the folder."""
        rng = np.random.default_rng(seed)
        for k in range(n):
            raw = _random_map(rng)
            stem = f"{k + 1:012d}"
            save_jpeg(root / BASE / "images" / "val2017" / f"{stem}.jpg", render_image(rng, raw))
            for kind, suffix in SUFFIXES.items():
                save_png(root / BASE / "annotations" / "val2017" / f"{stem}{suffix}", LUTS[kind][raw])

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """``val2017/*.jpg`` (``n``) and ``train2017/*.jpg`` (``n // 2 + 1``) as the image zips unpack,
        and their maps as ``stuffthingmaps_trainval2017/{val2017,train2017}/*.png``."""
        rng = np.random.default_rng(seed)
        for split, count in zip(SPLITS, (n, n // 2 + 1)):
            for k in range(count):
                label = _random_map(rng)
                stem = f"{k + 1 + (0 if split == 'val2017' else 500000):012d}"
                save_jpeg(raw / split / f"{stem}.jpg", render_image(rng, label))
                save_png(raw / MAPS_ARCHIVE.extract_to / split / f"{stem}.png", label)


def _random_map(rng: np.random.Generator) -> np.ndarray:
    return random_label(rng, *random_size(rng), values=[*ANNOTATED, UNLABELED], shapes=6)


def _layout(benchmark: str, kind: str) -> COCOLayout:
    return COCOLayout(
        benchmark=benchmark,
        title="COCO-Stuff 164k val2017" if kind == "stuff" else "COCO-Object (from COCO-Stuff 164k) val2017",
        base=BASE,
        img_dir="images/val2017",
        ann_dir="annotations/val2017",
        img_suffix=".jpg",
        seg_suffix=SUFFIXES[kind],
        split_file=None,
        raw_hint=f"folder with {VAL_ARCHIVE.filename} and {MAPS_ARCHIVE.filename}, or their contents",
        archives=(VAL_ARCHIVE, MAPS_ARCHIVE),
        kind=kind,
    )


COCO_STUFF = builtin(
    "coco_stuff",
    "COCO-Stuff 164k val2017: 171 thing and stuff classes, unlabeled ignored, 5000 images",
    _layout("coco_stuff", "stuff"),
    split_size=5000,
)
COCO_OBJECT = builtin(
    "coco_object",
    "COCO-Object val2017: background + 80 things (background by threshold; stuff = background), 5000 images",
    _layout("coco_object", "object"),
    split_size=5000,
    background=True,
)
