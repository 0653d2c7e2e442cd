"""MESS's earth monitoring domain: ISPRS Potsdam (manual download).

``mess_isprs_potsdam`` (ISPRS 2D semantic labelling benchmark, BSF Swissphoto 2012) is MESS's main
Potsdam set, ``isprs_potsdam_sem_seg_test_irrg``: the 14 test tiles MESS lists, in IRRG (near
infrared, red, green) colour, cut as MESS's ``prepare_isprs_potsdam.py`` cuts them:

* every 6000 x 6000 tile is split into non-overlapping 1024 x 1024 tiles row by row from the top
  left (36 per tile, 504 in all); edge tiles are padded, the image with 0 and the label with 255, so
  padding is never scored;
* the label (``5_Labels_all``) is binarised per channel at > 128, then the six colours become
  0 impervious surfaces ("road"), 1 building, 2 low vegetation ("grass"), 3 tree, 4 car,
  5 clutter ("others"); any other colour keeps its red value (0 or 255);
* tiles are written as ``images_detectron2/test/irrg/<tile>_<k>.png`` and
  ``annotations_detectron2/test/<tile>_<k>.png`` under ``ISPRS_Potsdam``.

The data is given on request only: fill in the form at
https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx (Potsdam), download
``Potsdam.zip`` and put it, or the unpacked ``3_Ortho_IRRG.zip`` and ``5_Labels_all.zip`` (MESS's
``3_Ortho_IRRG/`` and ``Labels/`` folders), in the ``--raw`` folder. The RGB tiles (MESS's
``_rgb`` variant) are not needed and not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .._files import PrepareError, is_valid_label, run_jobs, save_as_pil_does
from .._layout import Archive
from .._synthetic import random_label, random_size, render_image
from ._common import IGNORE, TILE, MessLayout, colour_classes, mess_benchmark, tiles

ZIP = Archive("Potsdam.zip", "https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx")
#: The parts of Potsdam.zip MESS reads for the IRRG set (unpacked as MESS unpacks them).
INNER = (Archive("3_Ortho_IRRG.zip", ""), Archive("5_Labels_all.zip", "", extract_to="Labels"))
#: MESS's ``test_set``.
TEST_TILES = tuple(
    f"top_potsdam_{t}"
    for t in "2_13 2_14 3_13 3_14 4_13 4_14 4_15 5_13 5_14 5_15 6_13 6_14 6_15 7_13".split()
)
FOLDERS = {"IRRG": ("3_Ortho_IRRG",), "label": ("Labels", "5_Labels_all")}
COLOURS = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))
MANUAL = (
    "Request ISPRS Potsdam at https://www.isprs.org/education/benchmarks/UrbanSemLab/default.aspx, download "
    "Potsdam.zip and put it (or its unpacked 3_Ortho_IRRG/ and 5_Labels_all/ or Labels/ folders) in a folder, then: "
    "textseg data prepare mess_isprs_potsdam --raw <that folder>"
)


def potsdam_label(rgb: np.ndarray) -> np.ndarray:
    """Binarise at > 128 (some labels have graded colours), then the colour lookup."""
    return colour_classes((rgb > 128).astype(np.uint8) * 255, COLOURS)


def _cut(irrg: Path, label: Path, images: Path, labels: Path, tile: int) -> bool:
    """One Potsdam tile -> its IRRG and label tiles (skipped when the last label tile exists)."""
    with Image.open(irrg) as handle:
        image = np.array(handle)
    with Image.open(label) as handle:
        classes = potsdam_label(np.array(handle))
    image_tiles, label_tiles = tiles(image, 0, tile), tiles(classes, IGNORE, tile)
    if len(image_tiles) != len(label_tiles):
        raise PrepareError(f"{irrg} is {image.shape[:2]} but {label} is {classes.shape}")
    stem = irrg.name.removesuffix("_IRRG.tif")
    if is_valid_label(labels / f"{stem}_{len(label_tiles) - 1}.png"):
        return False
    for k, (a, b) in enumerate(zip(image_tiles, label_tiles)):
        save_as_pil_does(images / f"{stem}_{k}.png", a, "PNG")
        save_as_pil_does(labels / f"{stem}_{k}.png", b, "PNG")
    return True


def _folder_of(raw: Path, kind: str, what: str) -> Path:
    """The folder holding the test tiles' ``<tile>_<kind>.tif``: MESS's unpacked folders first, else
    wherever under ``raw`` the first of them lies (the zips nest differently by release)."""
    known = [raw / f / name for f in ("Potsdam", "ISPRS_Potsdam", ".") for name in FOLDERS[kind]]
    for folder in known:
        if any((folder / f"{t}_{kind}.tif").is_file() for t in TEST_TILES):
            return folder
    for tile in TEST_TILES:
        found = sorted(raw.rglob(f"{tile}_{kind}.tif"))
        if found:
            return found[0].parent
    where = "\n".join(f"  {folder}" for folder in known)
    raise PrepareError(
        f"cannot find {what}: no top_potsdam_<test tile>_{kind}.tif under {raw}, e.g. in\n{where}\n{MANUAL}"
    )


@dataclass(frozen=True)
class PotsdamLayout(MessLayout):
    tile: int = TILE

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        ZIP.extract(raw)
        for inner in (raw / "Potsdam", raw):
            for archive in INNER:
                archive.extract(inner)
        irrg = _folder_of(raw, "IRRG", "the IRRG tiles (3_Ortho_IRRG/)")
        labels = _folder_of(raw, "label", "the label tiles (5_Labels_all/, MESS's Labels/)")
        # As MESS, the test tiles that are there (the split size check reports missing ones).
        present = [t for t in TEST_TILES if (irrg / f"{t}_IRRG.tif").is_file()]
        if not present:
            raise PrepareError(f"none of the 14 test tiles is in {irrg}, e.g. {TEST_TILES[0]}_IRRG.tif")
        missing = [labels / f"{t}_label.tif" for t in present if not (labels / f"{t}_label.tif").is_file()]
        if missing:
            raise PrepareError(f"{len(missing)} label tiles are missing, e.g. {missing[0]}")
        out = root / self.base
        jobs = [
            (
                irrg / f"{t}_IRRG.tif",
                labels / f"{t}_label.tif",
                out / self.img_dir,
                out / self.ann_dir,
                self.tile,
            )
            for t in present
        ]
        run_jobs(_cut, jobs, "potsdam tiles", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """MESS's unpacked ``ISPRS_Potsdam/{2_Ortho_RGB,3_Ortho_IRRG,Labels}`` for test tiles (plus one
        training tile) whose sizes give ``n`` tiles of ``self.tile``: the first has 2 x 2 tiles when
        ``n >= 4`` (padded on the right and bottom), the others one; labels have graded colours."""
        rng = np.random.default_rng(seed)
        sizes = [(self.tile + 40, self.tile + 17)] if n >= 4 else []
        sizes += [random_size(rng) for _ in range(n - 4 * len(sizes))]
        if len(sizes) > len(TEST_TILES):
            raise ValueError(f"{n} tiles need more than the {len(TEST_TILES)} test tiles of Potsdam")
        for name, size in zip([*TEST_TILES[: len(sizes)], "top_potsdam_2_10"], [*sizes, random_size(rng)]):
            label = random_label(rng, *size, values=range(len(COLOURS)))
            colours = np.array(COLOURS, dtype=np.int64)[label]
            # graded colours: 0 and 255 disturbed by up to 100 towards the middle, as binarising at 128 undoes
            graded = np.abs(colours - rng.integers(0, 101, colours.shape))
            base = raw / "ISPRS_Potsdam"
            save_as_pil_does(base / "Labels" / f"{name}_label.tif", graded.astype(np.uint8), "TIFF")
            for folder, suffix in (("2_Ortho_RGB", "RGB"), ("3_Ortho_IRRG", "IRRG")):
                save_as_pil_does(base / folder / f"{name}_{suffix}.tif", render_image(rng, label), "TIFF")


ISPRS_POTSDAM = mess_benchmark(
    "mess_isprs_potsdam",
    "MESS earth monitoring: ISPRS Potsdam test in IRRG, 1024 tiles, 6 classes, 504 tiles (manual download)",
    PotsdamLayout(
        benchmark="mess_isprs_potsdam",
        title="ISPRS Potsdam test, IRRG (MESS)",
        base="ISPRS_Potsdam",
        img_dir="images_detectron2/test/irrg",
        ann_dir="annotations_detectron2/test",
        img_suffix=".png",
        seg_suffix=".png",
        split_file=None,
        raw_hint="folder with Potsdam.zip (on request from ISPRS) or its unpacked 3_Ortho_IRRG/ and Labels/",
        scan_labels=True,
        manual=MANUAL,
    ),
    split_size=504,
)
