"""MESS's agriculture and biology domain: CWFID (public download).

``mess_cwfid`` (Haug & Ostermann, ECCV workshops 2014): the repository github.com/cwfid/dataset
(``images/<id>_image.png``, ``annotations/<id>_annotation.png`` colour-coded black = ground,
red = crop, green = weed). MESS's ``prepare_cwfid.py`` takes 21 fixed test ids (28 is also in its
training list), maps the colours to 0 / 1 / 2 (any other colour keeps its red value) and writes
``annotations_detectron2/test/<id>_annotation.png``; the images are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._files import link_files, save_as_pil_does
from .._layout import Archive
from .._synthetic import random_label, random_size, render_image
from ._common import MessLayout, colour_classes, convert_labels, find_tree, mess_benchmark

ZIP = Archive("dataset-master.zip", "https://github.com/cwfid/dataset/archive/refs/heads/master.zip")
#: MESS's ``test_ids`` (prepare_cwfid.py).
TEST_IDS = (1, 3, 4, 9, 10, 13, 15, 21, 22, 26, 28, 29, 30, 32, 35, 39, 44, 47, 48, 54, 60)
COLOURS = ((0, 0, 0), (255, 0, 0), (0, 255, 0))  # ground, crop, weed


def cwfid_rule(rgb: np.ndarray) -> np.ndarray:
    return colour_classes(rgb, COLOURS)


@dataclass(frozen=True)
class CWFIDLayout(MessLayout):
    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        self.extract_archives(raw)
        src = find_tree(
            raw,
            [raw / "cwfid", raw / "dataset-master", raw / "cwfid/dataset", raw / "dataset", raw],
            ["images", "annotations"],
            "the CWFID repository (github.com/cwfid/dataset)",
            f"Clone it into {raw / 'cwfid'} or put {ZIP.filename} ({ZIP.url}) in {raw}.",
        )
        out = root / self.base
        # The test ids that are there (MESS stops at a missing one; the split size check reports it).
        ids = [f"{i:03d}" for i in TEST_IDS if (src / f"annotations/{i:03d}_annotation.png").is_file()]
        link_files(
            [(src / f"images/{i}_image.png", out / f"images/{i}_image.png") for i in ids], "cwfid images"
        )
        pairs = [
            (src / f"annotations/{i}_annotation.png", out / self.ann_dir / f"{i}_annotation.png") for i in ids
        ]
        convert_labels(pairs, cwfid_rule, "cwfid labels", workers)

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """The repository's ``images/`` and colour-coded ``annotations/`` for the first ``n`` test ids
        (at most 21) and three training ids."""
        if n > len(TEST_IDS):
            raise ValueError(f"CWFID has {len(TEST_IDS)} test images; asked for {n}")
        rng = np.random.default_rng(seed)
        for i in (*TEST_IDS[:n], 2, 5, 6):
            label = random_label(rng, *random_size(rng), values=range(3))
            colours = np.array(COLOURS, dtype=np.uint8)[label]
            save_as_pil_does(raw / "cwfid/images" / f"{i:03d}_image.png", render_image(rng, label), "PNG")
            save_as_pil_does(raw / "cwfid/annotations" / f"{i:03d}_annotation.png", colours, "PNG")


CWFID = mess_benchmark(
    "mess_cwfid",
    "MESS agriculture: CWFID test, crop and weed seedlings, 3 classes, 21 images",
    CWFIDLayout(
        benchmark="mess_cwfid",
        title="CWFID test (MESS)",
        base="cwfid",
        img_dir="images",
        ann_dir="annotations_detectron2/test",
        img_suffix="_image.png",
        seg_suffix="_annotation.png",
        split_file=None,
        raw_hint="folder with the cloned github.com/cwfid/dataset (as cwfid/) or its archive",
        archives=(ZIP,),
        scan_labels=True,
    ),
    split_size=21,
)
