"""PASCAL VOC 2012 segmentation: ``voc21`` (background + 20 classes) and ``voc20`` (20 classes).

Both read mmsegmentation's layout ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}`` with the
1449 ids of ``ImageSets/Segmentation/val.txt``. Labels are palette PNGs whose *indices* are the
classes (0 background, 1..20, 255 void borders); they are read without colour conversion.

* ``voc21`` (mmseg ``PascalVOCDataset``): background is class 0, predicted by threshold.
* ``voc20`` (TCL's ``PascalVOCDataset20``, "borrowed from MaskCLIP"): ``reduce_zero_label``, so
  background pixels are ignored and 1..20 become 0..19.

``prepare`` links the VOC2012 tree from the extracted ``VOCtrainval_11-May-2012.tar`` and, when
SBD's ``benchmark.tgz`` (or its ``benchmark_RELEASE/``) is in the downloads folder too, converts its
``dataset/cls/*.mat`` to ``SegmentationClassAug/*.png`` and writes ``trainaug.txt`` (VOC train ∪
SBD train ∪ SBD val − VOC val, 10582 ids) and ``aug.txt`` as mmseg's ``voc_aug.py`` does, sorted
(mmseg writes them in Python set order). Evaluation never uses SBD.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.errors import note
from textseg.io import atomic_path

from ._files import (
    PrepareError,
    first_existing,
    is_valid_label,
    link_files,
    read_ids,
    run_jobs,
    save_jpeg,
    save_png,
    write_ids,
)
from ._layout import Archive, FolderLayout
from ._spec import builtin
from ._synthetic import random_label, random_size, render_image, void_borders

VOC_ARCHIVE = Archive(
    "VOCtrainval_11-May-2012.tar",
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    md5="6cd6e144f989b92b3379bac3b3de84fd",
    sha1="4e443f8a2eca6b1dac8a6c57641b67dd40621a49",
)
SBD_ARCHIVE = Archive(
    "benchmark.tgz",
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
    md5="82b4d87ceb2ed10f6038a1cba92111cb",
    sha1="7129e0a480c2d6afb02b517bb18ac54283bfaa35",
)
BASE = "VOCdevkit/VOC2012"
SPLITS = "ImageSets/Segmentation"
OFFICIAL_SPLITS = ("train.txt", "val.txt", "trainval.txt")


def voc_palette() -> list[int]:
    """The standard VOC colour map (768 values): index bits spread over R, G, B from the top bit."""
    palette = []
    for index in range(256):
        rgb = [0, 0, 0]
        value = index
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette += rgb
    return palette


@dataclass(frozen=True)
class VOCLayout(FolderLayout):
    """``VOCdevkit/VOC2012`` under the data root; see the module docstring."""

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        SBD_ARCHIVE.extract(raw)
        src = first_existing(
            [raw / BASE, raw / "VOC2012"],
            "the extracted VOC2012 tree",
            f"Put {VOC_ARCHIVE.filename} (or its extracted VOCdevkit/) in {raw}.",
        )
        out = root / BASE
        if not (src / SPLITS / "val.txt").is_file():
            raise PrepareError(f"{src / SPLITS / 'val.txt'} is missing; the VOC2012 download is incomplete")
        # The tar's own lists only: trainaug.txt / aug.txt of an earlier in-place run name SBD ids.
        split_files = [src / SPLITS / f for f in OFFICIAL_SPLITS if (src / SPLITS / f).is_file()]
        labelled = sorted({i for f in split_files for i in read_ids(f)})
        link_files([(f, out / SPLITS / f.name) for f in split_files], "split lists")
        link_files(
            [(p, out / "JPEGImages" / p.name) for p in sorted((src / "JPEGImages").glob("*.jpg"))], "images"
        )
        link_files(
            [
                (src / "SegmentationClass" / f"{i}.png", out / "SegmentationClass" / f"{i}.png")
                for i in labelled
            ],
            "labels",
        )
        sbd = next(
            (p for p in (raw / "benchmark_RELEASE/dataset", raw / "VOCaug/dataset") if p.is_dir()), None
        )
        if sbd is not None:
            _prepare_sbd(sbd, out, workers)
        else:
            note(f"no SBD in {raw} (benchmark_RELEASE/): skipping SegmentationClassAug and trainaug.txt")

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        ids = [f"2007_{i:06d}" for i in range(n)]
        _write_voc2012(root / BASE, ids, np.random.default_rng(seed))
        write_ids(root / BASE / SPLITS / "val.txt", ids)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The extracted VOC tar (val: ``n`` ids, train: ``n // 2 + 1``, plus unlabelled JPEGs) and,
        when scipy is installed, SBD's ``benchmark_RELEASE/dataset`` overlapping both splits."""
        rng = np.random.default_rng(seed)
        val = [f"2007_{i:06d}" for i in range(n)]
        train = [f"2008_{i:06d}" for i in range(n // 2 + 1)]
        extra = [f"2011_{i:06d}" for i in range(2)]  # JPEGs without a VOC mask, as in the real tar
        base = raw / BASE
        _write_voc2012(base, val + train, rng)
        for i in extra:
            save_jpeg(
                base / "JPEGImages" / f"{i}.jpg", render_image(rng, np.zeros(random_size(rng), np.uint8))
            )
        write_ids(base / SPLITS / "val.txt", val)
        write_ids(base / SPLITS / "train.txt", train)
        write_ids(base / SPLITS / "trainval.txt", sorted(train + val))
        try:
            from scipy.io import savemat
        except ImportError:
            note("scipy is not installed: the synthetic download has no SBD part")
            return
        dataset = raw / "benchmark_RELEASE" / "dataset"
        sbd_train, sbd_val = [*extra, train[0]], [val[0]]
        for i in sbd_train + sbd_val:
            with atomic_path(dataset / "cls" / f"{i}.mat") as tmp:
                label = random_label(rng, *random_size(rng), values=range(21))
                savemat(
                    tmp,
                    {"GTcls": {"Segmentation": label, "CategoriesPresent": np.unique(label)}},
                    appendmat=False,
                )
        write_ids(dataset / "train.txt", sbd_train)
        write_ids(dataset / "val.txt", sbd_val)


def _write_voc2012(base: Path, ids: list[str], rng: np.random.Generator) -> None:
    palette = voc_palette()
    for i in ids:
        label = void_borders(random_label(rng, *random_size(rng), values=range(21)))
        save_jpeg(base / "JPEGImages" / f"{i}.jpg", render_image(rng, label))
        save_png(base / "SegmentationClass" / f"{i}.png", label, palette)


def _prepare_sbd(sbd: Path, out: Path, workers: int) -> None:
    """SBD's ``cls/*.mat`` -> ``SegmentationClassAug/*.png``, then ``trainaug.txt`` and ``aug.txt``."""
    mats = sorted((sbd / "cls").glob("*.mat"))
    jobs = [(m, out / "SegmentationClassAug" / f"{m.stem}.png") for m in mats]
    run_jobs(_convert_mat, jobs, "SBD labels", workers)
    voc_train, voc_val = read_ids(out / SPLITS / "train.txt"), read_ids(out / SPLITS / "val.txt")
    sbd_all = read_ids(sbd / "train.txt") + read_ids(sbd / "val.txt")
    write_ids(out / SPLITS / "trainaug.txt", sorted(set(voc_train + sbd_all) - set(voc_val)))
    write_ids(out / SPLITS / "aug.txt", sorted(set(sbd_all) - set(voc_train + voc_val)))


def _convert_mat(src: Path, dst: Path) -> bool:
    """One SBD ``GTcls`` struct -> an 'L' PNG of its ``Segmentation`` field (values as stored)."""
    if is_valid_label(dst):
        return False
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise PrepareError("reading SBD's .mat files needs scipy: pip install 'textseg[data]'") from exc
    save_png(dst, loadmat(src)["GTcls"]["Segmentation"][0, 0])
    return True


def _layout(benchmark: str) -> VOCLayout:
    return VOCLayout(
        benchmark=benchmark,
        title="PASCAL VOC 2012 val",
        base=BASE,
        img_dir="JPEGImages",
        ann_dir="SegmentationClass",
        img_suffix=".jpg",
        seg_suffix=".png",
        split_file=f"{SPLITS}/val.txt",
        raw_hint=f"folder with {VOC_ARCHIVE.filename} or its extracted VOCdevkit/ (+ optional SBD benchmark.tgz)",
        archives=(VOC_ARCHIVE,),
    )


VOC21 = builtin(
    "voc21",
    "PASCAL VOC 2012 val: background + 20 classes (background by threshold), 1449 images",
    _layout("voc21"),
    split_size=1449,
    background=True,
)
VOC20 = builtin(
    "voc20",
    "PASCAL VOC 2012 val: 20 classes, background pixels ignored (reduce_zero_label), 1449 images",
    _layout("voc20"),
    split_size=1449,
    reduce_zero_label=True,
)
