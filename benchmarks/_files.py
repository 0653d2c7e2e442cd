"""File helpers the preparers share: atomic label writes, cheap validity checks, links instead of
copies, and a process pool with a progress bar for per-file conversions.

Every output is written under a temporary name and renamed into place (``textseg.io``), so a file
under its final name is complete; a rerun skips it. That is what makes preparation resumable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from textseg.errors import TextsegError
from textseg.io import atomic_path

R = TypeVar("R")


class PrepareError(TextsegError):
    """The raw downloads cannot be turned into the layout (missing or malformed input)."""


def save_png(path: Path, array: np.ndarray, palette: Sequence[int] | None = None) -> None:
    """Write a uint8 array as a PNG atomically: a label map ('L', or 'P' with ``palette``) or RGB."""
    image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    if palette is not None:
        image.putpalette(list(palette))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def save_jpeg(path: Path, array: np.ndarray) -> None:
    """Write an RGB uint8 image as a JPEG atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="JPEG", quality=90)


def save_as_pil_does(path: Path, image: np.ndarray, format: str) -> None:
    """Write ``image`` with PIL's defaults for ``format`` (JPEG: quality 75, 4:2:0; TIFF: no
    compression; a uint16 array becomes a 16-bit map), atomically: the bytes the official
    preparation scripts' ``Image.fromarray(x).save(path)`` write."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format=format)


def is_valid_label(path: Path, size: tuple[int, int] | None = None) -> bool:
    """True when ``path`` is a single-channel image (of ``size`` if given): an earlier run's output.

    Outputs are written atomically, so one that opens with the right header is complete."""
    try:
        with Image.open(path) as image:
            return image.mode in ("L", "P", "I;16") and size in (None, image.size)
    except (OSError, ValueError):
        return False


def link_or_copy(src: Path, dst: Path) -> bool:
    """Make ``dst`` a hard link to ``src`` (a copy across file systems); False if it already was.

    An existing ``dst`` of the same size is taken as done; with ``--raw`` equal to ``--out`` the two
    are the same file and nothing happens.
    """
    if dst.exists() and (dst.samefile(src) or dst.stat().st_size == src.stat().st_size):
        return False
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
    return True


def link_files(pairs: Sequence[tuple[Path, Path]], desc: str) -> None:
    """Link every ``(src, dst)`` pair with a progress bar (sources checked first)."""
    missing = [src for src, _ in pairs if not src.is_file()]
    if missing:
        raise PrepareError(
            f"{len(missing)} source files are missing, e.g. {missing[0]}; the download looks incomplete "
            "(extract the archive again)"
        )
    for src, dst in tqdm(pairs, desc=desc, unit="file"):
        link_or_copy(src, dst)


def run_jobs(fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]], desc: str, workers: int) -> list[R]:
    """``fn(*job)`` for every job, in ``workers`` processes when that pays off, with a progress bar."""
    if not jobs:
        return []
    if workers <= 1 or len(jobs) < 4 * workers:
        return [fn(*job) for job in tqdm(jobs, desc=desc, unit="file")]
    chunk = max(1, len(jobs) // (workers * 16))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results: Iterable[R] = pool.map(fn, *zip(*jobs), chunksize=chunk)
        return list(tqdm(results, total=len(jobs), desc=desc, unit="file"))


def first_existing(candidates: Sequence[Path], what: str, hint: str) -> Path:
    """The first candidate that exists, or an error listing every place that was searched."""
    for path in candidates:
        if path.exists():
            return path
    where = "\n".join(f"  {path}" for path in candidates)
    raise PrepareError(f"cannot find {what}; looked for:\n{where}\n{hint}")


def read_ids(path: Path) -> list[str]:
    """The non-empty, stripped lines of a split file."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def write_ids(path: Path, ids: Iterable[str]) -> None:
    """Write a split file (one id per line, newline-terminated) atomically, unless it is current."""
    text = "".join(f"{i}\n" for i in ids)
    if path.is_file() and path.read_text() == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)
