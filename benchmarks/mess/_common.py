"""What every MESS dataset shares: MESS's prepared layout, label conversion jobs, tiling, manual
downloads and synthetic layouts.

The layout under the data root is the one MESS's ``prepare_*.py`` scripts leave in their
``$DETECTRON2_DATASETS`` folder, so a folder MESS prepared works as a textseg data root. Samples are
found as detectron2's ``load_sem_seg`` finds them: every label file, paired with the image of the
same name. Labels are uint8 PNGs, classes 0..N-1, ignore 255 (MESS's ``ignore_label``).

Images the MESS scripts re-save (``Image.open(src).convert("RGB").save(dst)``) are re-saved the same
way (PIL defaults: a JPEG is encoded again at quality 75), so methods see the pixels MESS evaluates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from textseg.benchmark import BenchmarkSpec
from textseg.errors import TextsegError
from textseg.io import atomic_path

from .._files import PrepareError, is_valid_label, run_jobs, save_as_pil_does
from .._layout import FolderLayout
from .._spec import builtin
from .._synthetic import random_label, random_size, render_image

IGNORE = 255
#: MESS tiles large images into non-overlapping squares of this side, scanned row by row.
TILE = 1024
FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF"}

Rule = Callable[[np.ndarray], np.ndarray]


def image_format(path: Path) -> str:
    """PIL's format name for a file name, as ``Image.save`` picks it from the extension."""
    return FORMATS[path.suffix.lower()]


def find_tree(raw: Path, candidates: Iterable[Path], needs: Sequence[str], what: str, hint: str) -> Path:
    """The first candidate folder holding every path of ``needs``, or an error listing the searched ones."""
    searched = list(candidates)
    for folder in searched:
        if all((folder / need).exists() for need in needs):
            return folder
    listing = "\n".join(f"  {folder}" for folder in searched)
    raise PrepareError(
        f"cannot find {what} (a folder with {', '.join(needs)}); looked in:\n{listing}\n{hint}"
    )


def _convert_label(src: Path, dst: Path, rule: Rule) -> bool:
    if is_valid_label(dst):
        return False
    with Image.open(src) as image:
        array = np.array(image)
    save_as_pil_does(dst, rule(array), "PNG")
    return True


def convert_labels(pairs: Sequence[tuple[Path, Path]], rule: Rule, desc: str, workers: int) -> None:
    """``rule(np.array(Image.open(src)))`` saved as a PNG at ``dst``, for every pair not done yet.
    ``rule`` is a module-level function (it crosses process boundaries)."""
    _check_sources(pairs)
    run_jobs(_convert_label, [(src, dst, rule) for src, dst in pairs], desc, workers)


def _resave_rgb(src: Path, dst: Path) -> bool:
    if dst.is_file():
        return False
    with Image.open(src) as image, atomic_path(dst) as tmp:
        image.convert("RGB").save(tmp, format=image_format(dst))
    return True


def resave_images(pairs: Sequence[tuple[Path, Path]], desc: str, workers: int) -> None:
    """``Image.open(src).convert("RGB").save(dst)`` (format from ``dst``'s name, PIL defaults)."""
    _check_sources(pairs)
    run_jobs(_resave_rgb, pairs, desc, workers)


def _check_sources(pairs: Sequence[tuple[Path, Path]]) -> None:
    missing = [src for src, _ in pairs if not src.is_file()]
    if missing:
        raise PrepareError(
            f"{len(missing)} source files are missing, e.g. {missing[0]}; the download looks incomplete"
        )


def tiles(array: np.ndarray, padding: int, size: int = TILE) -> list[np.ndarray]:
    """Non-overlapping ``size`` x ``size`` tiles, row by row from the top left; the tiles at the right
    and bottom edges are padded with ``padding`` (0 for images, 255 = ignore for labels)."""
    height, width = array.shape[:2]
    out = []
    for top in range(0, height, size):
        for left in range(0, width, size):
            tile = np.full((size, size, *array.shape[2:]), padding, dtype=np.uint8)
            piece = array[top : top + size, left : left + size]
            tile[: piece.shape[0], : piece.shape[1]] = piece
            out.append(tile)
    return out


def colour_classes(rgb: np.ndarray, colours: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """MESS's colour lookup: a pixel of ``colours[k]`` becomes ``k``; any other pixel keeps its red
    value. (MESS sets matching pixels to ``(k, k, k)`` colour by colour, then keeps channel 0; that is
    the same as long as no colour of the list is such a grey, which holds for every list here.)"""
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise PrepareError(f"a colour-coded label is {rgb.shape}; expected an RGB image")
    out = rgb[..., 0].copy()
    for k, colour in enumerate(colours):
        out[(rgb == colour).all(axis=-1)] = k
    return out


@dataclass(frozen=True)
class MessLayout(FolderLayout):
    """A MESS dataset's prepared layout (module docstring). ``manual`` says what to download by hand,
    from where, and where to put it, for the datasets without a public download."""

    manual: str = ""

    def download(self, raw: Path, mirror: str | None = None) -> None:
        if self.manual:
            raise TextsegError(f"{self.benchmark} has no public download. {self.manual}")
        super().download(raw, mirror)

    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        base = root / self.base
        for k in range(n):
            label = random_label(rng, *random_size(rng), values=[*range(num_classes), IGNORE])
            image = base / self.img_dir / f"{k:04d}{self.img_suffix}"
            save_as_pil_does(image, render_image(rng, label), image_format(image))
            save_as_pil_does(base / self.ann_dir / f"{k:04d}{self.seg_suffix}", label, "PNG")


def mess_benchmark(name: str, summary: str, layout: MessLayout, split_size: int) -> BenchmarkSpec:
    """A MESS benchmark: class names in ``classnames/<name>.txt`` (MESS's ``CLASSES``), ignore 255."""
    return builtin(name, summary, layout, split_size=split_size)
