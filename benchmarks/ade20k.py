"""ADE20K / SceneParsing 150 (``ade20k``): 150 classes on the 2000 validation images.

Reads ``ade/ADEChallengeData2016/{images,annotations}/validation`` (mmsegmentation's layout, found
by scanning, sorted). Label PNGs hold 0 = "other objects" (not evaluated) and 1..150; mmseg's
``ADE20KDataset`` fixes ``reduce_zero_label``, so 0 is ignored and k becomes k − 1.

Class 7 is ``'bed '`` with a trailing space: that is how mmseg 0.27's ``ADE20KDataset.CLASSES``
spells it and TCL prompts with those strings unchanged, so the protocol really embeds it (CLIP's
tokenizer only notices in the ``"a photo of {}s."`` template: ``"bed s"`` vs ``"beds"``). We keep
it; how a method's text encoder treats the space is the text side's business.

``prepare`` takes ``ADEChallengeData2016.zip`` as distributed: it unpacks it if needed and links
its tree into the layout. The newer full ADE20K release (ADE20K_2021_17_01) has another layout and
is not this benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textseg.benchmark import Sample
from textseg.io import atomic_path

from ._files import first_existing, link_files, save_jpeg, save_png
from ._layout import SHOW, Archive, FolderLayout
from ._spec import builtin, class_names
from ._synthetic import random_label, random_size, render_image

ARCHIVE = Archive(
    "ADEChallengeData2016.zip",
    "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
    sha256="7ff1be44964418441f542a7cc1e1a650e7dc0fc275f5d23252bc9bbdbc977b29",
    sha1="219e1696abb36c8ba3a3afe7fb2f4b4606a897c7",
)
TREE = "ADEChallengeData2016"
VAL_IMAGES = 2000
BASE = f"ade/{TREE}"
SPLITS = {"validation": "val", "training": "train"}


@dataclass(frozen=True)
class ADE20KLayout(FolderLayout):
    """``ade/ADEChallengeData2016`` under the data root; see the module docstring."""

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        src = first_existing(
            [raw / TREE, raw / BASE],
            f"the extracted {TREE}/",
            f"Put {ARCHIVE.filename} (or its contents) in {raw}.",
        )
        files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
        link_files([(p, root / BASE / p.relative_to(src)) for p in files], "ADE20K files")

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        _write_split(root / BASE, "validation", n, np.random.default_rng(seed))

    def describe_missing(self, root: Path, samples: list[Sample]) -> str:
        """The validation images are ``ADE_val_00000001`` .. ``ADE_val_00002000``."""
        found = {sample.id for sample in samples}
        missing = [name for k in range(VAL_IMAGES) if (name := f"ADE_val_{k + 1:08d}") not in found]
        shown = ", ".join(missing[:SHOW]) + (", ..." if len(missing) > SHOW else "")
        return f"{len(missing)} images, e.g. {shown}" if missing else ""

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The zip's tree: ``n`` validation and ``n // 2 + 1`` training pairs, ``objectInfo150.txt``
        and ``sceneCategories.txt``."""
        rng = np.random.default_rng(seed)
        stems = _write_split(raw / TREE, "validation", n, rng) + _write_split(
            raw / TREE, "training", n // 2 + 1, rng
        )
        rows = [f"{i}\t0.0\t0\t0\t{name.strip()}" for i, name in enumerate(class_names("ade20k"), 1)]
        for name, lines in (
            ("objectInfo150.txt", ["Idx\tRatio\tTrain\tVal\tName", *rows]),
            ("sceneCategories.txt", [f"{stem} street" for stem in stems]),
        ):
            with atomic_path(raw / TREE / name) as tmp:
                tmp.write_text("\n".join(lines) + "\n")


def _write_split(base: Path, split: str, n: int, rng: np.random.Generator) -> list[str]:
    stems = [f"ADE_{SPLITS[split]}_{k + 1:08d}" for k in range(n)]
    for stem in stems:
        label = random_label(rng, *random_size(rng), values=range(151))
        save_jpeg(base / "images" / split / f"{stem}.jpg", render_image(rng, label))
        save_png(base / "annotations" / split / f"{stem}.png", label)
    return stems


ADE20K = builtin(
    "ade20k",
    "ADE20K (SceneParsing) val: 150 classes, 'other' ignored (reduce_zero_label), 2000 images",
    ADE20KLayout(
        benchmark="ade20k",
        title="ADE20K val",
        base=BASE,
        img_dir="images/validation",
        ann_dir="annotations/validation",
        img_suffix=".jpg",
        seg_suffix=".png",
        split_file=None,
        raw_hint=f"folder with {ARCHIVE.filename} or its extracted {TREE}/",
        archives=(ARCHIVE,),
    ),
    split_size=VAL_IMAGES,
    reduce_zero_label=True,
)
