"""The shape every built-in layout shares: mmsegmentation's ``CustomDataset`` file enumeration, the
errors that say what is missing and how to get it, and the official archives behind a layout.

mmsegmentation 0.27 finds pairs in one of two ways, and so do we: with a split file, each stripped
line ``id`` gives ``img_dir/<id><img_suffix>`` and ``ann_dir/<id><seg_suffix>`` in file order;
without one, ``img_dir`` is scanned recursively for ``*<img_suffix>`` and the pairs are sorted by
relative path. Layouts in detectron2's style (``load_sem_seg``: the ADE-847, PC-459 and MESS
preparations) are defined by their label files instead: ``scan_labels`` scans ``ann_dir`` for
``*<seg_suffix>``, so an image folder shared with other splits (VOC2010's ``JPEGImages``) is fine. Unlike mmsegmentation we check that every listed file exists, so an incomplete
dataset fails before evaluation starts instead of in the middle of it.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from textseg.benchmark import DatasetLayout, Sample
from textseg.download import DownloadError, download
from textseg.errors import DatasetNotFoundError, TextsegError, note
from textseg.io import file_digest

from ._files import read_ids

#: How many missing paths or folder entries an error message shows.
SHOW = 5


@dataclass(frozen=True)
class Archive:
    """One official download. ``extract_to`` is the folder under the downloads directory it unpacks
    into (None: a plain file such as a JSON); ``members`` keeps only members inside a folder of
    that name (e.g. only ``val2017`` of a train+val archive)."""

    filename: str
    url: str
    extract_to: str | None = "."
    md5: str | None = None
    sha256: str | None = None
    sha1: str | None = None
    members: str | None = None

    def fetch(self, raw: Path, mirror: str | None = None) -> Path:
        """Download (resumably) into ``raw`` and verify every checksum we know; returns the file."""
        url = f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url
        dest = raw / self.filename
        if not (self.md5 or self.sha256 or self.sha1):
            note(f"{self.filename} has no published checksum; it is downloaded unverified")
        download(url, dest, sha256=self.sha256, md5=self.md5)
        if self.sha1 and file_digest(dest, "sha1") != self.sha1:
            dest.unlink()
            raise DownloadError(f"{url}: sha1 does not match {self.sha1}; the file was removed")
        return dest

    def marker(self, raw: Path) -> Path:
        return raw / (self.extract_to or ".") / f".{self.filename}.extracted"

    def extract(self, raw: Path) -> None:
        """Unpack ``raw/<filename>`` once (a marker file records a finished extraction)."""
        archive = raw / self.filename
        if self.extract_to is None or self.marker(raw).exists() or not archive.exists():
            return
        target = raw / self.extract_to
        target.mkdir(parents=True, exist_ok=True)
        bar = tqdm(desc=f"extract {self.filename}", unit="file")
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                for name in filter(self._wanted, handle.namelist()):
                    handle.extract(name, target)  # drops '..' and absolute parts
                    bar.update()
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:  # streamed: a 2 GB tar is read once
                for member in handle:
                    if self._wanted(member.name):
                        handle.extract(member, target, filter="data")
                        bar.update()
        else:
            raise TextsegError(f"{archive} is neither a zip nor a tar archive; delete it and download again")
        bar.close()
        if not bar.n:
            folder = f" under a {self.members!r} folder" if self.members else ""
            raise TextsegError(f"{archive} has no members{folder}; is it the right file?")
        self.marker(raw).touch()

    def _wanted(self, name: str) -> bool:
        return self.members is None or self.members in Path(name).parts[:-1]


def describe_nearest(path: Path) -> str:
    """What exists closest to a missing ``path``: its nearest existing ancestor and some entries."""
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"nothing at {path}"
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in parent.iterdir())
    more = f", ... ({len(entries)} entries)" if len(entries) > SHOW else ""
    listing = ", ".join(entries[:SHOW]) + more if entries else "nothing"
    return f"{parent}/ holds: {listing}"


@dataclass(frozen=True)
class FolderLayout(DatasetLayout):
    """A layout enumerated as mmsegmentation's ``CustomDataset`` does (module docstring)."""

    benchmark: str
    title: str
    base: str
    img_dir: str
    ann_dir: str
    img_suffix: str
    seg_suffix: str
    split_file: str | None
    raw_hint: str
    archives: tuple[Archive, ...] = ()
    scan_labels: bool = False

    def find(self, root: Path) -> list[Sample]:
        base = Path(root) / self.base
        images = base / self.img_dir
        if self.split_file is not None:
            split = base / self.split_file
            if not split.is_file():
                raise self.not_found(root, f"no split file {split}", describe_nearest(split))
            ids = read_ids(split)
        else:
            what, folder, suffix = ("image", images, self.img_suffix)
            if self.scan_labels:
                what, folder, suffix = ("label", base / self.ann_dir, self.seg_suffix)
            if not folder.is_dir():
                raise self.not_found(root, f"no {what} folder {folder}", describe_nearest(folder))
            ids = sorted(str(p.relative_to(folder))[: -len(suffix)] for p in self._scan(folder, suffix))
        if not ids:
            where = split if self.split_file is not None else folder
            raise self.not_found(root, f"{where} lists no samples", describe_nearest(where))
        samples = [
            Sample(i, images / f"{i}{self.img_suffix}", base / self.ann_dir / f"{i}{self.seg_suffix}")
            for i in ids
        ]
        missing = [p for s in samples for p in (s.image, s.label) if not p.is_file()]
        if missing:
            shown = "\n".join(f"  {p}" for p in missing[:SHOW])
            raise self.not_found(
                root,
                f"the dataset is incomplete: {len(missing)} of {2 * len(samples)} image/label files are "
                f"missing, e.g.\n{shown}",
                describe_nearest(missing[0]),
            )
        return samples

    def synthetic_marker(self, root: Path) -> Path:
        # Beside the labels: benchmarks sharing images but not labels (Context-60/459) keep their own.
        return Path(root) / self.base / self.ann_dir / ".textseg-synthetic.json"

    def _scan(self, folder: Path, suffix: str) -> list[Path]:
        return [p for p in folder.rglob(f"*{suffix}") if p.is_file()]

    def expected(self, root: Path) -> list[str]:
        """The paths a complete layout has (for error messages)."""
        base = Path(root) / self.base
        listed = [str(base / self.split_file)] if self.split_file else []
        return [
            *listed,
            str(base / self.img_dir / f"<id>{self.img_suffix}"),
            str(base / self.ann_dir / f"<id>{self.seg_suffix}"),
        ]

    def fix_commands(self, root: Path) -> list[str]:
        """The commands that build this layout under ``root``."""
        commands = [f"textseg data download {self.benchmark} --out {root}"] if self.archives else []
        commands.append(f"textseg data prepare {self.benchmark} --raw <{self.raw_hint}> --out {root}")
        return commands

    def not_found(self, root: Path, problem: str, found: str) -> DatasetNotFoundError:
        lines = [
            f"{self.benchmark} ({self.title}) under data root {root}: {problem}",
            "expected:",
            *(f"  {p}" for p in self.expected(root)),
            f"found: {found}",
            "to get it:",
            *(f"  {c}" for c in self.fix_commands(root)),
            "or point --data-root (or $TEXTSEG_DATA) at the folder that holds it.",
            f"For a dry run on random data in the same layout: textseg data synthetic {self.benchmark} --out DIR, "
            "then --data-root DIR.",
        ]
        return DatasetNotFoundError("\n".join(lines))

    def download(self, raw: Path, mirror: str | None = None) -> None:
        if not self.archives:
            return super().download(raw, mirror)
        for archive in self.archives:
            archive.fetch(raw, mirror)
            archive.extract(raw)

    def extract_archives(self, raw: Path) -> None:
        """Unpack any official archive lying in ``raw`` that is not unpacked yet."""
        for archive in self.archives:
            archive.extract(raw)
