"""PASCAL Context-459 (``context459``): every class of the full PASCAL Context labels, 5104 val images.

Reads detectron2's layout as CAT-Seg, ov-seg and MESS prepare it: ``VOCdevkit/VOC2010/JPEGImages``
(shared with ``context60``) and ``VOCdevkit/VOC2010/annotations_detectron2/pc459_val/<id>.tif``; the
label files define the split, as detectron2's ``load_sem_seg`` pairs them. Labels are uint16 TIFFs
holding ``LabelMap - 1`` of the ``trainval/<id>.mat`` files: 0..458 are the classes in ``labels.txt``
order and an unlabelled 0 wraps to 65535, the ignore index (ov-seg, ODISE and MESS register 65535;
CAT-Seg registers 459, which no pixel holds). Images are the original JPEGs.

``prepare`` reproduces ov-seg's ``prepare_pascal_context.py`` / CAT-Seg's
``prepare_pascal_context_459.py`` (the MESS in-domain copy is the same) with scipy (``textseg[data]``):
for each id of the val list whose ``.mat`` exists (the others are skipped, as there), the TIFF above.
The val list is ``pascalcontext_val.txt`` (5104 ids; Google Drive file
1BCbiOKtLvozjVnlTJX51koIveUZHCcUh, also ``datasets/pascalcontext_val.txt`` in KU-CVLAB/CAT-Seg) when
it lies in the downloads, else the ``val`` phase of ``trainval_merged.json`` (ODISE takes its list
from there). Both hold 5104 ids; that they are the same ids is UNVERIFIED.

Class names are ``labels.txt``'s, as CAT-Seg's ``pc459.json`` and MESS's ``PASCALCONTEX459_NAMES``
spell them (joined words: ``airconditioner``); no synonym vocabulary exists for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.errors import TextsegError
from textseg.io import atomic_path

from ._files import (
    PrepareError,
    first_existing,
    is_valid_label,
    link_files,
    read_ids,
    run_jobs,
    save_as_pil_does,
    save_jpeg,
    write_ids,
)
from ._layout import Archive, FolderLayout
from ._spec import builtin, class_names
from ._synthetic import random_label, random_size, render_image
from .context import BASE, JSON_ARCHIVE, VOC2010_ARCHIVE

LABELS_ARCHIVE = Archive("trainval.tar.gz", "https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz")
VAL_LIST = "pascalcontext_val.txt"
LABEL_DIR = "annotations_detectron2/pc459_val"
IGNORE = 65535


def _convert(mat: Path, dst: Path) -> bool:
    """``LabelMap - 1`` in uint16 (0 wraps to 65535) as a TIFF, unless ``dst`` is already done."""
    if is_valid_label(dst):
        return False
    try:
        from scipy.io import loadmat
    except ImportError as exc:
        raise PrepareError(
            "reading PASCAL Context's .mat files needs scipy: pip install 'textseg[data]'"
        ) from exc
    label = loadmat(mat)["LabelMap"]
    if label.dtype != np.uint16 or label.ndim != 2:
        raise PrepareError(
            f"{mat}: LabelMap is {label.dtype} {label.shape}; trainval.tar.gz has 2-D uint16 maps"
        )
    save_as_pil_does(dst, label - np.uint16(1), "TIFF")
    return True


def val_ids(raw: Path) -> list[str]:
    """The val ids: ``pascalcontext_val.txt`` if present, else the ``val`` phase of the JSON, sorted."""
    for folder in (raw, raw / BASE):
        if (folder / VAL_LIST).is_file():
            return read_ids(folder / VAL_LIST)
    merged = first_existing(
        [raw / JSON_ARCHIVE.filename, raw / BASE / JSON_ARCHIVE.filename],
        f"the val list ({VAL_LIST}, or {JSON_ARCHIVE.filename} to take it from)",
        f"Put {VAL_LIST} (Google Drive file 1BCbiOKtLvozjVnlTJX51koIveUZHCcUh, or "
        f"datasets/{VAL_LIST} of github.com/KU-CVLAB/CAT-Seg) or {JSON_ARCHIVE.filename} in {raw}.",
    )
    with open(merged, encoding="utf-8") as handle:
        images = json.load(handle)["images"]
    return sorted(Path(img["file_name"]).stem for img in images if img.get("phase") == "val")


@dataclass(frozen=True)
class Context459Layout(FolderLayout):
    """``VOCdevkit/VOC2010`` under the data root; see the module docstring."""

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        hint = (
            f"Put {VOC2010_ARCHIVE.filename} and {LABELS_ARCHIVE.filename} (or their contents) and "
            f"{VAL_LIST} in {raw}."
        )
        jpegs = first_existing(
            [raw / BASE / "JPEGImages", raw / "VOC2010/JPEGImages"], "VOC2010 images", hint
        )
        mats = first_existing(
            [raw / "trainval", raw / BASE / "trainval"],
            f"the LabelMap files (trainval/ of {LABELS_ARCHIVE.filename})",
            hint,
        )
        ids = [i for i in val_ids(raw) if (mats / f"{i}.mat").is_file()]  # the official scripts skip the rest
        if not ids:
            raise PrepareError(f"no id of the val list has a .mat file in {mats}")
        out = root / BASE
        link_files([(jpegs / f"{i}.jpg", out / "JPEGImages" / f"{i}.jpg") for i in ids], "images")
        jobs = [(mats / f"{i}.mat", out / LABEL_DIR / f"{i}.tif") for i in ids]
        run_jobs(_convert, jobs, "context459 labels", workers)

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        for i in (f"2008_{k:06d}" for k in range(n)):
            label = random_label(rng, *random_size(rng), values=[*range(num_classes), IGNORE], wide=True)
            save_jpeg(root / BASE / "JPEGImages" / f"{i}.jpg", render_image(rng, label))
            save_as_pil_does(root / BASE / LABEL_DIR / f"{i}.tif", label.astype(np.uint16), "TIFF")

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The extracted downloads: VOC2010 JPEGs, ``trainval/<id>.mat`` (uint16 ``LabelMap`` 1..459,
        some 0) and ``labels.txt`` of ``trainval.tar.gz`` for ``n`` val and ``n // 2 + 1`` train ids,
        and ``pascalcontext_val.txt`` listing the val ids."""
        try:
            from scipy.io import savemat
        except ImportError as exc:
            raise TextsegError("writing .mat files needs scipy: pip install 'textseg[data]'") from exc
        rng = np.random.default_rng(seed)
        val = [f"2008_{k:06d}" for k in range(n)]
        train = [f"2009_{k:06d}" for k in range(n // 2 + 1)]
        for i in val + train:
            label = random_label(rng, *random_size(rng), values=range(num_classes + 1), wide=True)
            save_jpeg(raw / BASE / "JPEGImages" / f"{i}.jpg", render_image(rng, label))
            with atomic_path(raw / "trainval" / f"{i}.mat") as tmp:
                savemat(tmp, {"LabelMap": label.astype(np.uint16)}, appendmat=False)
        with atomic_path(raw / "labels.txt") as tmp:
            tmp.write_text("".join(f"{k}: {name}\n" for k, name in enumerate(class_names("context459"), 1)))
        write_ids(raw / VAL_LIST, val)


CONTEXT459 = builtin(
    "context459",
    "PASCAL Context-459 val: all 459 classes (uint16 labels, ignore 65535), 5104 images",
    Context459Layout(
        benchmark="context459",
        title="PASCAL Context-459 val",
        base=BASE,
        img_dir="JPEGImages",
        ann_dir=LABEL_DIR,
        img_suffix=".jpg",
        seg_suffix=".tif",
        split_file=None,
        raw_hint=f"folder with {VOC2010_ARCHIVE.filename}, {LABELS_ARCHIVE.filename} and {VAL_LIST}",
        archives=(VOC2010_ARCHIVE, LABELS_ARCHIVE, JSON_ARCHIVE),
        scan_labels=True,
    ),
    split_size=5104,
    ignore_index=IGNORE,
)
