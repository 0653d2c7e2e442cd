"""Class-name files and the one constructor every built-in benchmark goes through.

``classnames/<benchmark>.txt`` holds the names the TCL protocol prompts with, one per line in label
order, exactly as mmsegmentation 0.27's ``CLASSES`` (and TCL's two custom datasets) spell them.
``classnames/sclip/<benchmark>.txt`` are the SCLIP family's ``configs/cls_*.txt`` files byte for
byte (no final newline; a line's names are ``", "``-separated; ``'wood '`` in Context60 keeps its
space as SCLIP queries it); NACLIP ships the same files. ``classnames/clearclip/`` are ClearCLIP's
(mc-lan/ClearCLIP ``configs/cls_*.txt`` at ad68a40): SCLIP's files except VOC21, VOC20 and
COCO-Object, which have one plain name per class (``ship``, ``table``, ``tvmonitor`` on VOC).
``classnames/groupvit/`` are the names GroupViT's own evaluation prompts with (its dataset classes in
NVlabs/GroupViT ``segmentation/datasets/*.py``), for the three benchmarks it evaluates on.
``classnames/proxyclip/`` are ProxyCLIP's (mc-lan/ProxyCLIP ``configs/cls_*.txt`` at e7b767f), whose
synonyms are ``"; "``-separated: written here with ``", "`` (no name in those eight files contains
``", "``, so the split is the same); they are SCLIP's files except VOC21, VOC20 and COCO-Object
(ClearCLIP's VOC20; VOC21's background line as SCLIP's; COCO-Object's a shorter background list).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from textseg.benchmark import BenchmarkSpec

from ._layout import FolderLayout

VERSION = "1"


def _lines(relative: str) -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("classnames", relative).read_text(encoding="utf-8")
    # Only the line break is removed: a trailing space is part of a name where the protocol has one.
    return tuple(text.removesuffix("\n").split("\n"))


def class_names(benchmark: str) -> tuple[str, ...]:
    return _lines(f"{benchmark}.txt")


#: The synonym vocabularies of the built-in benchmarks, by folder under ``classnames/``; a benchmark
#: has those whose folder holds its file.
VOCABULARIES = ("sclip", "clearclip", "groupvit", "proxyclip", "clipdinoiser")


def vocabulary_names(vocabulary: str, benchmark: str) -> tuple[str, ...]:
    return _lines(f"{vocabulary}/{benchmark}.txt")


def _vocabularies(benchmark: str) -> dict[str, tuple[str, ...]]:
    folder = resources.files(__package__).joinpath("classnames")
    return {
        vocabulary: vocabulary_names(vocabulary, benchmark)
        for vocabulary in VOCABULARIES
        if folder.joinpath(vocabulary, f"{benchmark}.txt").is_file()
    }


def builtin(
    name: str,
    summary: str,
    layout: FolderLayout,
    split_size: int,
    background: bool = False,
    reduce_zero_label: bool = False,
    ignore_index: int = 255,
) -> BenchmarkSpec:
    """A built-in benchmark, version 1: names and synonym vocabularies from the files above (the
    benchmarks beyond the eight have no synonym files)."""
    return BenchmarkSpec(
        name=name,
        version=VERSION,
        summary=summary,
        classes=class_names(name),
        background=background,
        layout=layout,
        ignore_index=ignore_index,
        reduce_zero_label=reduce_zero_label,
        split_size=split_size,
        synonyms=_vocabularies(name),
        data_hint=" or ".join(layout.fix_commands(Path("<data root>"))),
    )
