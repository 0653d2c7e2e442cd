"""MESS's engineering domain: DeepCrack, ZeroWaste-f and Corrosion CS (public downloads).

* ``mess_deepcrack`` (Liu et al., Neurocomputing 2019): ``DeepCrack.zip`` of github.com/yhlleo/DeepCrack
  (``dataset/``); 237 test images ``test_img/*.jpg`` used as they are; labels
  ``annotations_detectron2/test/*.png`` = ``uint8(test_lab / 255)`` (1 = crack; MESS
  ``prepare_deepcrack.py``).
* ``mess_zerowaste`` (Bashkirova et al., CVPR 2022): ``zerowaste-f-final.zip`` (zenodo 6412647);
  929 test images, ``splits_final_deblurred/test/{data,sem_seg}/*.PNG`` used as they are (MESS
  ``prepare_zerowaste.py`` only unpacks).
* ``mess_corrosion_cs`` (Bianchi & Hebdon, Virginia Tech 2021): figshare file 31729733 (a zip);
  44 test images ``original/Test/images/*.jpeg``; masks ``original/Test/masks/*.png`` (0..3) read
  and written again as single-channel PNGs, as MESS ``prepare_corrosion_cs.py`` does in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._files import link_files, save_as_pil_does, save_png
from .._layout import Archive
from .._synthetic import random_label, random_size, render_image
from ._common import MessLayout, convert_labels, find_tree, mess_benchmark

DEEPCRACK_ZIP = Archive(
    "DeepCrack.zip",
    "https://github.com/yhlleo/DeepCrack/raw/master/dataset/DeepCrack.zip",
    extract_to="DeepCrack",
)
ZEROWASTE_ZIP = Archive(
    "zerowaste-f-final.zip",
    "https://zenodo.org/record/6412647/files/zerowaste-f-final.zip",
    extract_to="zerowaste-f",
    members="test",
)
CORROSION = "Corrosion Condition State Classification"
CORROSION_ZIP = Archive("31729733", "https://figshare.com/ndownloader/files/31729733")


def deepcrack_rule(mask: np.ndarray) -> np.ndarray:
    """``np.uint8(mask / 255)``: 255 -> 1 (crack), anything below -> 0."""
    return (mask / 255).astype(np.uint8)


def same_values(mask: np.ndarray) -> np.ndarray:
    """The mask's values unchanged (a palette PNG becomes its indices)."""
    return mask


@dataclass(frozen=True)
class DeepCrackLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        src = find_tree(
            raw,
            [raw / "DeepCrack", raw],
            ["test_img", "test_lab"],
            "the extracted DeepCrack.zip",
            f"Put {DEEPCRACK_ZIP.filename} (dataset/ of github.com/yhlleo/DeepCrack) or its contents in {raw}.",
        )
        out = root / self.base
        images = sorted((src / "test_img").glob("*.jpg"))
        link_files([(p, out / self.img_dir / p.name) for p in images], "deepcrack images")
        pairs = [(p, out / self.ann_dir / p.name) for p in sorted((src / "test_lab").glob("*.png"))]
        convert_labels(pairs, deepcrack_rule, "deepcrack labels", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The unpacked zip: ``{test,train}_{img,lab}`` with ``n`` and ``n // 2 + 1`` pairs; labels are
        greyscale 0 / 255 with some grey edge values."""
        rng = np.random.default_rng(seed)
        for split, count in (("test", n), ("train", n // 2 + 1)):
            for k in range(count):
                label = random_label(rng, *random_size(rng), values=[0, 255])
                label[rng.random(label.shape) < 0.02] = 128
                stem = f"{11100 + k}-{split}"
                save_as_pil_does(
                    raw / "DeepCrack" / f"{split}_img" / f"{stem}.jpg", render_image(rng, label), "JPEG"
                )
                save_png(raw / "DeepCrack" / f"{split}_lab" / f"{stem}.png", label)


@dataclass(frozen=True)
class ZeroWasteLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        test = "splits_final_deblurred/test"
        src = find_tree(
            raw,
            [raw / "zerowaste-f", raw],
            [f"{test}/data", f"{test}/sem_seg"],
            "the extracted zerowaste-f-final.zip",
            f"Put {ZEROWASTE_ZIP.filename} (zenodo record 6412647) or its contents in {raw}.",
        )
        out = root / self.base
        files = sorted(p for folder in ("data", "sem_seg") for p in (src / test / folder).glob("*.PNG"))
        link_files([(p, out / p.relative_to(src)) for p in files], "zerowaste files")

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The unpacked zip's ``splits_final_deblurred/{test,train}/{data,sem_seg}/*.PNG``."""
        rng = np.random.default_rng(seed)
        for split, count in (("test", n), ("train", n // 2 + 1)):
            for k in range(count):
                label = random_label(rng, *random_size(rng), values=range(num_classes))
                folder = raw / "zerowaste-f/splits_final_deblurred" / split
                save_as_pil_does(folder / "data" / f"{split}_{k:05d}.PNG", render_image(rng, label), "PNG")
                save_png(folder / "sem_seg" / f"{split}_{k:05d}.PNG", label)


@dataclass(frozen=True)
class CorrosionLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        src = find_tree(
            raw,
            [raw / CORROSION / "original/Test", raw / "original/Test"],
            ["images", "masks"],
            f"the extracted figshare file 31729733 ({CORROSION}/original/Test)",
            f"Put {CORROSION_ZIP.filename} (https://figshare.com/ndownloader/files/31729733) or its contents in {raw}.",
        )
        out = root / self.base
        images = sorted((src / "images").glob("*.jpeg"))
        link_files([(p, out / self.img_dir / p.name) for p in images], "corrosion images")
        pairs = [(p, out / self.ann_dir / p.name) for p in sorted((src / "masks").glob("*.png"))]
        convert_labels(pairs, same_values, "corrosion labels", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The unpacked zip: ``original/{Test,Train}/{images/*.jpeg, masks/*.png}`` (palette masks 0..3)."""
        rng = np.random.default_rng(seed)
        for split, count in (("Test", n), ("Train", n // 2 + 1)):
            for k in range(count):
                label = random_label(rng, *random_size(rng), values=range(num_classes))
                folder = raw / CORROSION / "original" / split
                save_as_pil_does(
                    folder / "images" / f"{split}_{k:03d}.jpeg", render_image(rng, label), "JPEG"
                )
                save_png(
                    folder / "masks" / f"{split}_{k:03d}.png",
                    label,
                    palette=[0, 0, 0, 0, 255, 0, 255, 255, 0, 255, 0, 0],
                )


DEEPCRACK = mess_benchmark(
    "mess_deepcrack",
    "MESS engineering: DeepCrack test, cracks in concrete and asphalt, 2 classes, 237 images",
    DeepCrackLayout(
        benchmark="mess_deepcrack",
        title="DeepCrack test (MESS)",
        base="DeepCrack",
        img_dir="test_img",
        ann_dir="annotations_detectron2/test",
        img_suffix=".jpg",
        seg_suffix=".png",
        split_file=None,
        raw_hint=f"folder with {DEEPCRACK_ZIP.filename} or its contents",
        archives=(DEEPCRACK_ZIP,),
        scan_labels=True,
    ),
    split_size=237,
)
ZEROWASTE = mess_benchmark(
    "mess_zerowaste",
    "MESS engineering: ZeroWaste-f test, waste sorting, 5 classes, 929 images",
    ZeroWasteLayout(
        benchmark="mess_zerowaste",
        title="ZeroWaste-f test (MESS)",
        base="zerowaste-f",
        img_dir="splits_final_deblurred/test/data",
        ann_dir="splits_final_deblurred/test/sem_seg",
        img_suffix=".PNG",
        seg_suffix=".PNG",
        split_file=None,
        raw_hint=f"folder with {ZEROWASTE_ZIP.filename} or its contents",
        archives=(ZEROWASTE_ZIP,),
        scan_labels=True,
    ),
    split_size=929,
)
CORROSION_CS = mess_benchmark(
    "mess_corrosion_cs",
    "MESS engineering: Corrosion Condition State test, steel corrosion, 4 classes, 44 images",
    CorrosionLayout(
        benchmark="mess_corrosion_cs",
        title="Corrosion CS test (MESS)",
        base=CORROSION,
        img_dir="original/Test/images",
        ann_dir="original/Test/masks",
        img_suffix=".jpeg",
        seg_suffix=".png",
        split_file=None,
        raw_hint=f"folder with the figshare file {CORROSION_ZIP.filename} (a zip) or its contents",
        archives=(CORROSION_ZIP,),
        scan_labels=True,
    ),
    split_size=44,
)
