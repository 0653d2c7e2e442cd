"""The benchmark contract: a frozen description of one evaluation set.

A benchmark says which classes it has (with optional synonym vocabularies), whether class 0 is a
background predicted by threshold, how labels are reduced or ignored, and — through its
:class:`DatasetLayout` — where its (image, label) pairs live in the standard on-disk layout and
how to build that layout. Any change to classes, labels or split bumps ``version``; every results
record carries it.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image

from textseg.errors import ConfigError, DatasetNotFoundError, TextsegError

if TYPE_CHECKING:  # textseg.api imports torch; `textseg data` and `textseg list` do not need it
    from textseg.api import Vocabulary


@dataclass(frozen=True)
class Sample:
    """One evaluation pair on disk."""

    id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class LoadedSample:
    """One evaluation pair in memory, as the harness consumes it."""

    id: str
    image: np.ndarray  # [H, W, 3] uint8 RGB
    label: np.ndarray  # [H, W] class indices (uint8; uint16 past 255 classes); ignore_index where not scored

    @classmethod
    def checked(cls, id: str, image: np.ndarray, label: np.ndarray, where: str) -> LoadedSample:
        """A sample whose label and image sizes agree (``where`` names its source in the error)."""
        if label.shape != image.shape[:2]:
            raise TextsegError(
                f"{where}: the label is {label.shape[1]}x{label.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return cls(id, image, label)


class IncompleteSplitError(DatasetNotFoundError):
    """A data folder holds another number of evaluation samples than the benchmark's split."""


@dataclass(frozen=True)
class SplitCheck:
    """How many samples a data root holds, against what the benchmark's split has.

    ``expected`` is the official split size, or the size a synthetic dataset declares; None when the
    benchmark declares none. Complete means exactly the expected number was found."""

    found: int
    expected: int | None
    synthetic: bool
    missing: str = ""

    @property
    def complete(self) -> bool:
        return self.expected is None or self.found == self.expected

    def describe(self, benchmark: str, where: str) -> str:
        kind = "synthetic " if self.synthetic else ""
        text = f"{benchmark} under {where}: found {self.found} evaluation samples, but its {kind}split has {self.expected}"
        return text + (f"; missing: {self.missing}" if self.missing else "")


class UnreadableImageError(TextsegError):
    """An image or label file that cannot be decoded (truncated, damaged, or not an image)."""


def read_image(path: str | Path, what: str = "image", mode: str | None = "RGB") -> np.ndarray:
    """Decode an image file fully (``mode`` None keeps label maps' raw values), or fail in one line
    naming the file."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later without its name
            return np.array(img.convert(mode) if mode else img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnreadableImageError(
            f"{what} {path} cannot be read ({reason}); it is truncated, damaged or not an image. Replace it "
            "(extract or download it again)."
        ) from exc


class EvalSource(Protocol):
    """A benchmark's evaluation samples, wherever they come from (folders, a Hugging Face dataset)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> LoadedSample: ...


class FolderSource:
    """Samples found by a benchmark's layout under a data root (the standard on-disk layout)."""

    def __init__(self, spec: BenchmarkSpec, samples: list[Sample]) -> None:
        self.spec = spec
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> LoadedSample:
        sample = self.samples[index]
        image = read_image(sample.image)
        label = self.spec.read_label(sample)
        return LoadedSample.checked(sample.id, image, label, f"{sample.label} (image {sample.image})")


class DatasetLayout(abc.ABC):
    """Where a benchmark's files live under a data root, and how to create them there."""

    @abc.abstractmethod
    def find(self, root: Path) -> list[Sample]:
        """All evaluation samples under ``root``, sorted by id.

        Raises :class:`textseg.errors.DatasetNotFoundError` naming what was expected where and the
        command that prepares it.
        """

    @abc.abstractmethod
    def write_synthetic(self, root: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """Write ``n`` random samples in the real layout and label encoding under ``root``.

        Call it through :meth:`BenchmarkSpec.write_synthetic`, which also declares the data synthetic."""

    def synthetic_marker(self, root: Path) -> Path | None:
        """The file that declares the data under ``root`` synthetic and says how many samples it has
        (None: this layout cannot be declared synthetic, so its split size always applies)."""
        return None

    def describe_missing(self, root: Path, samples: list[Sample]) -> str:
        """What the official split has that ``samples`` lack, as far as the layout can tell (names or
        per-folder counts; empty when it cannot tell)."""
        return ""

    def prepare(self, raw: Path, root: Path, workers: int = 1) -> None:
        """Build the layout under ``root`` from the official downloads in ``raw`` (``workers``
        processes where conversion is per file). Outputs that exist and are valid are skipped."""
        raise TextsegError(f"{type(self).__name__} needs no preparation step")

    def download(self, raw: Path, mirror: str | None = None) -> None:
        """Fetch the official archives into ``raw`` (from ``mirror``, a base URL, if given), verified
        and extracted, ready for :meth:`prepare`."""
        raise TextsegError(f"{type(self).__name__} has no public download; see its documentation")

    def write_synthetic_raw(self, raw: Path, num_classes: int, n: int, seed: int = 0) -> None:
        """Write ``n`` random samples in the official download format (input of :meth:`prepare`)."""
        raise TextsegError(f"{type(self).__name__} has no raw download format to imitate")


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark. ``classes`` are the names the protocol uses, in label order (``background``
    first where ``background`` is True); ``synonyms`` maps a vocabulary name (e.g. ``"sclip"``) to
    one entry per class whose names are ``", "``-separated. ``protocol`` names the protocol a
    benchmark is scored with when the method's protocol has no settings for it (the generated
    ``shapes`` world has its own); None: the method's protocol."""

    name: str
    version: str
    summary: str
    classes: tuple[str, ...]
    background: bool
    layout: DatasetLayout
    ignore_index: int = 255
    reduce_zero_label: bool = False
    split_size: int | None = None
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    data_hint: str = ""
    protocol: str | None = None

    def __post_init__(self) -> None:
        if self.background and self.classes[0] != "background":
            raise TypeError(f"benchmark {self.name!r}: class 0 must be 'background' when background=True")
        if not len(self.classes) <= self.ignore_index <= 65535:
            raise TypeError(
                f"benchmark {self.name!r}: ignore index {self.ignore_index} must be a uint16 value that is "
                f"not one of its {len(self.classes)} classes"
            )
        for vocab, lines in self.synonyms.items():
            if len(lines) != len(self.classes):
                raise TypeError(
                    f"benchmark {self.name!r}: synonym vocabulary {vocab!r} has {len(lines)} entries "
                    f"for {len(self.classes)} classes"
                )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def samples(self, root: Path) -> list[Sample]:
        return self.layout.find(Path(root))

    def write_synthetic(self, root: str | Path, n: int, seed: int = 0) -> None:
        """Write ``n`` random samples in the real layout under ``root`` and declare them synthetic, so
        the harness scores them as a whole (synthetic) split and records say so."""
        self.layout.write_synthetic(Path(root), self.num_classes, n, seed=seed)
        marker = self.layout.synthetic_marker(Path(root))
        if marker is not None:
            from textseg.io import write_json

            write_json(marker, {"samples": n, "seed": seed, "written_by": "textseg data synthetic"})

    def check_split(self, data_root: str | Path, source: EvalSource) -> SplitCheck:
        """Compare what ``source`` (opened from ``data_root``) holds with the split's size."""
        found = len(source)
        if str(data_root).startswith("hf:"):
            return SplitCheck(found, self.split_size, synthetic=False)
        root = Path(data_root)
        marker = self.layout.synthetic_marker(root)
        if marker is not None and marker.is_file():
            import json

            try:
                declared = int(json.loads(marker.read_text(encoding="utf-8"))["samples"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise TextsegError(
                    f"{marker} (written by `textseg data synthetic`) is unreadable: {exc}"
                ) from exc
            return SplitCheck(found, declared, synthetic=True)
        check = SplitCheck(found, self.split_size, synthetic=False)
        if check.complete or not isinstance(source, FolderSource):
            return check
        return SplitCheck(found, self.split_size, False, self.layout.describe_missing(root, source.samples))

    def open(self, data_root: str | Path) -> EvalSource:
        """The evaluation samples under ``data_root`` (the standard layout), or, for
        ``"hf:<hub id or local path>[?split=..&image=..&label=..]"``, a Hugging Face dataset
        (see :mod:`textseg.hf_source` for the label convention)."""
        if str(data_root).startswith("hf:"):
            from textseg.hf_source import open_hf

            return open_hf(self, str(data_root))
        return FolderSource(self, self.samples(Path(data_root)))

    def read_label(self, sample: Sample) -> np.ndarray:
        """The label map as class indices ``[H, W]`` (:attr:`label_dtype`), ignore pixels = ``ignore_index``.

        With ``reduce_zero_label``, raw 0 becomes ignore and every other value drops by one
        (mmsegmentation's rule for ADE20K, Context59 and VOC20).
        """
        label = read_image(sample.label, "label", mode=None)
        if label.ndim != 2:
            raise TextsegError(f"label {sample.label} has shape {label.shape}; expected a single-channel map")
        return self.reduce_label(label)

    def reduce_label(self, label: np.ndarray) -> np.ndarray:
        """Raw ids as stored in the layout -> class indices (``reduce_zero_label`` applied)."""
        if self.reduce_zero_label:
            label = label.astype(np.int64)
            label[label == 0] = 256
            label = label - 1
            label[label >= 254] = self.ignore_index
        return label.astype(self.label_dtype)

    @property
    def label_dtype(self) -> type[np.unsignedinteger]:
        """uint8, or uint16 when the ignore index needs it (more than 255 classes, ignore 65535)."""
        return np.uint8 if self.ignore_index <= 255 else np.uint16

    def protocol_synonyms(self, vocabulary: str | None) -> str | None:
        """The vocabulary a protocol asks for by default, if this benchmark has it; else None (the
        class names). The SCLIP family's name files exist for the eight benchmarks only, so on
        another benchmark those protocols prompt with its class names, and the record says so."""
        return vocabulary if vocabulary in self.synonyms else None

    def vocabulary(
        self, templates: tuple[str, ...], synonyms: str | None = None, background_query: bool = False
    ) -> Vocabulary:
        """The text queries for this benchmark.

        Without ``background_query`` (the TCL protocol) background is never a text query: the harness
        adds a constant channel at the method's threshold. With it (the SCLIP family), class 0's
        names are scored like any other class and the threshold still applies.
        """
        if synonyms is None:
            lines: tuple[str, ...] = self.classes
        elif synonyms in self.synonyms:
            lines = self.synonyms[synonyms]
        else:
            known = ", ".join(self.synonyms) or "none"
            raise ConfigError(
                f"benchmark {self.name!r} has no synonym vocabulary {synonyms!r} (known: {known})"
            )
        if self.background and not background_query:
            lines = lines[1:]
        from textseg.api import Vocabulary

        return Vocabulary.from_names(lines, templates, background_query=self.background and background_query)
