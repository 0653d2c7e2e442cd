"""MESS's medical sciences domain: Kvasir-Instrument and CHASE DB1 (public downloads).

* ``mess_kvasir_instrument`` (Jha et al., MMM 2021): ``kvasir-instrument.zip`` of datasets.simula.no,
  holding ``kvasir-instrument/{images,masks}.tar.gz`` and ``test.txt``; for the 118 test ids the
  JPEG is saved as ``images_detectron2/test/<id>.png`` (RGB) and the label is
  ``uint8(mask[:, :, 0] / 255)`` (1 = tool; MESS ``prepare_kvasir_instrument.py``).
* ``mess_chase_db1`` (Fraz et al., TBME 2012): ``CHASEDB1.zip`` (Kingston University); of the 28
  ``Image_*.jpg`` sorted by name the first 8 are left for training and the other 20 are the test
  images, saved again as JPEGs (``images_detectron2/test``); the label is the first observer's
  ``<name>_1stHO.png`` as ``np.array(...).astype(uint8)`` (MESS ``prepare_chase_db1.py``). That
  gives 0 / 1 for a 1-bit PNG; whether every file of the real zip is 1-bit is UNVERIFIED (an 8-bit
  0 / 255 file would give 255 = ignore, in MESS as here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from textseg.io import atomic_path

from .._files import PrepareError, read_ids, save_as_pil_does, save_png, write_ids
from .._layout import Archive
from .._synthetic import random_label, random_size, render_image
from ._common import MessLayout, convert_labels, find_tree, mess_benchmark, resave_images

KVASIR_ZIP = Archive("kvasir-instrument.zip", "https://datasets.simula.no/downloads/kvasir-instrument.zip")
KVASIR_TARS = (Archive("images.tar.gz", ""), Archive("masks.tar.gz", ""))
CHASE_ZIP = Archive(
    "CHASEDB1.zip",
    "https://staffnet.kingston.ac.uk/~ku15565/CHASE_DB1/assets/CHASEDB1.zip",
    extract_to="CHASEDB1",
)
CHASE_TRAIN = 8  # MESS: the first 8 images by name are the training split


def kvasir_rule(mask: np.ndarray) -> np.ndarray:
    """``np.uint8(mask[:, :, 0] / 255)``: the red channel, 255 -> 1."""
    if mask.ndim != 3:
        raise PrepareError(f"a Kvasir-Instrument mask is {mask.shape}; MESS reads channel 0 of an RGB mask")
    return (mask[:, :, 0] / 255).astype(np.uint8)


def chase_rule(mask: np.ndarray) -> np.ndarray:
    """``mask.astype(uint8)`` (a 1-bit PNG reads as booleans: 0 / 1)."""
    return mask.astype(np.uint8)


@dataclass(frozen=True)
class KvasirLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        for inner in (raw / "kvasir-instrument", raw):
            for archive in KVASIR_TARS:
                archive.extract(inner)
        src = find_tree(
            raw,
            [raw / "kvasir-instrument", raw],
            ["test.txt", "images", "masks"],
            "the extracted kvasir-instrument.zip and its images.tar.gz / masks.tar.gz",
            f"Put {KVASIR_ZIP.filename} ({KVASIR_ZIP.url}) or its contents in {raw}.",
        )
        ids = read_ids(src / "test.txt")
        out = root / self.base
        resave_images(
            [(src / f"images/{i}.jpg", out / self.img_dir / f"{i}.png") for i in ids],
            "kvasir images",
            workers,
        )
        pairs = [(src / f"masks/{i}.png", out / self.ann_dir / f"{i}.png") for i in ids]
        convert_labels(pairs, kvasir_rule, "kvasir labels", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """``kvasir-instrument/`` with its tarballs unpacked: ``images/*.jpg``, RGB ``masks/*.png``
        (0 / 255, some JPEG-like 200s), ``test.txt`` (``n`` ids) and ``train.txt``."""
        rng = np.random.default_rng(seed)
        base = raw / "kvasir-instrument"
        ids = [f"ckcu{k:04d}" for k in range(n + n // 2 + 1)]
        for i in ids:
            label = random_label(rng, *random_size(rng), values=[0, 255])
            label[rng.random(label.shape) < 0.02] = 200
            save_as_pil_does(base / "images" / f"{i}.jpg", render_image(rng, label), "JPEG")
            save_png(base / "masks" / f"{i}.png", np.repeat(label[..., None], 3, axis=-1))
        write_ids(base / "test.txt", ids[:n])
        write_ids(base / "train.txt", ids[n:])


@dataclass(frozen=True)
class ChaseLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        src = next((f for f in (raw / "CHASEDB1", raw) if any(f.glob("*.jpg"))), None)
        if src is None:
            raise PrepareError(
                f"no Image_*.jpg in {raw / 'CHASEDB1'} or {raw}: put {CHASE_ZIP.filename} there"
            )
        test = sorted(src.glob("*.jpg"))[CHASE_TRAIN:]
        out = root / self.base
        resave_images([(p, out / self.img_dir / p.name) for p in test], "chase images", workers)
        pairs = [(p.with_name(f"{p.stem}_1stHO.png"), out / self.ann_dir / f"{p.stem}.png") for p in test]
        convert_labels(pairs, chase_rule, "chase labels", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The unpacked zip: ``n + 8`` ``Image_<k><L|R>.jpg`` with 1-bit ``_1stHO.png`` and ``_2ndHO.png``."""
        rng = np.random.default_rng(seed)
        for k in range(n + CHASE_TRAIN):
            stem = f"Image_{k // 2 + 1:02d}{'LR'[k % 2]}"
            label = random_label(rng, *random_size(rng), values=[0, 1])
            save_as_pil_does(raw / "CHASEDB1" / f"{stem}.jpg", render_image(rng, label), "JPEG")
            for observer in ("1stHO", "2ndHO"):
                with atomic_path(raw / "CHASEDB1" / f"{stem}_{observer}.png") as tmp:
                    Image.fromarray(label.astype(bool)).save(tmp, format="PNG")


KVASIR_INSTRUMENT = mess_benchmark(
    "mess_kvasir_instrument",
    "MESS medical: Kvasir-Instrument test, tools in endoscopy, 2 classes, 118 images",
    KvasirLayout(
        benchmark="mess_kvasir_instrument",
        title="Kvasir-Instrument test (MESS)",
        base="kvasir-instrument",
        img_dir="images_detectron2/test",
        ann_dir="annotations_detectron2/test",
        img_suffix=".png",
        seg_suffix=".png",
        split_file=None,
        raw_hint=f"folder with {KVASIR_ZIP.filename} or its contents",
        archives=(KVASIR_ZIP,),
        scan_labels=True,
    ),
    split_size=118,
)
CHASE_DB1 = mess_benchmark(
    "mess_chase_db1",
    "MESS medical: CHASE DB1 test, retinal blood vessels, 2 classes, 20 images",
    ChaseLayout(
        benchmark="mess_chase_db1",
        title="CHASE DB1 test (MESS)",
        base="CHASEDB1",
        img_dir="images_detectron2/test",
        ann_dir="annotations_detectron2/test",
        img_suffix=".jpg",
        seg_suffix=".png",
        split_file=None,
        raw_hint=f"folder with {CHASE_ZIP.filename} or its contents",
        archives=(CHASE_ZIP,),
        scan_labels=True,
    ),
    split_size=20,
)
