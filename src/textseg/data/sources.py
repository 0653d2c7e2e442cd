"""Image-text sources: webdataset tar shards, Hugging Face datasets, parquet and CSV tables (and the
generated shapes world, :mod:`textseg.data.shapes`).

Every source is a list of *units* (a tar shard, a parquet row group, a chunk of rows) that can be
read from any *position* (a byte offset in a shard, a row in a chunk) and asked again for the
record at a position. That is all the stream (``textseg.data.stream``) needs to split units over
processes and workers, shuffle through a buffer, and restore that buffer exactly on resume.
Nothing is read whole into memory: a shard is read member by member, a table one unit at a time.

Shards are read with :mod:`tarfile` rather than the ``webdataset`` package or ``datasets``'
webdataset loader: reading from a byte offset and re-reading one sample by offset (what exact
resume needs) is a few lines on top of :mod:`tarfile`, it adds no dependency, and a truncated or
corrupt member becomes a counted skip instead of an exception inside someone else's iterator.
"""

from __future__ import annotations

import abc
import csv
import io
import json
import math
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textseg.data.spec import HF_DISK_MARKERS, DataSpecError, SourceSpec, resolve_files

#: Default tar member extensions (img2dataset writes jpg by default; png/webp with --encode_format).
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS = ("txt",)
#: Column names tried, in order, when a table or hub dataset does not name its columns.
IMAGE_COLUMNS = (
    "image",
    "jpg",
    "png",
    "webp",
    "img",
    "image_path",
    "path",
    "filepath",
    "file_name",
    "filename",
)
CAPTION_COLUMNS = ("caption", "text", "txt", "title", "sentence")
#: Rows per unit for hub datasets and CSV tables (parquet units are its row groups).
ROWS_PER_UNIT = 256

_KEY = re.compile(r"^((?:.*/)?[^./]+)\.([^/]+)$")


class BadSample(Exception):
    """A record that cannot be used; the stream counts it under ``reason`` and moves on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class RawSample:
    """An undecoded sample, as kept in the shuffle buffer: image bytes (or a path to them) and caption."""

    key: str
    image: Any  # bytes, a Path, or an already decoded PIL image
    caption: str | bytes


@dataclass(frozen=True)
class Record:
    """One sample found while scanning a unit, or the reason the unit ends early (``problem``)."""

    position: int
    next_position: int
    handle: Any = None
    problem: str | None = None


class Source(abc.ABC):
    """A readable image-text source (see the module docstring)."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def length(self) -> int | None:
        """Number of samples if known (the default mixing weight)."""
        return self.spec.length()

    @property
    @abc.abstractmethod
    def num_units(self) -> int: ...

    @abc.abstractmethod
    def scan(self, unit: int, position: int) -> Iterator[Record]:
        """Every record of ``unit`` from ``position`` on, cheaply (no image data is read); a
        ``problem`` record ends the unit."""

    @abc.abstractmethod
    def load(self, unit: int, handle: Any) -> RawSample:
        """The sample behind a record's handle; raises :class:`BadSample`."""

    def fetch(self, unit: int, position: int) -> RawSample:
        """The sample at ``position`` (used to rebuild the shuffle buffer on resume)."""
        for record in self.scan(unit, position):
            if record.problem is None:
                return self.load(unit, record.handle)
            break
        raise BadSample(f"no sample at position {position} of unit {unit} of {self.name}")


# --------------------------------------------------------------------------------------------
# webdataset tar shards (img2dataset layout)
# --------------------------------------------------------------------------------------------
class TarShards(Source):
    """``<key>.jpg`` + ``<key>.txt`` (+ ``<key>.json``) members, grouped by key, in tar shards."""

    def __init__(self, spec: SourceSpec) -> None:
        super().__init__(spec)
        self.files = resolve_files(spec, ".tar")
        self.image_exts = _extensions(spec, "image", IMAGE_EXTENSIONS)
        self.caption_exts = _extensions(spec, "caption", CAPTION_EXTENSIONS)

    @property
    def num_units(self) -> int:
        return len(self.files)

    @property
    def length(self) -> int | None:
        """Given ``length``, else the sum of img2dataset's ``<shard>_stats.json`` "successes"."""
        given = self.spec.length()
        if given is not None:
            return given
        total = 0
        for path in self.files:
            stats = path.with_name(path.stem + "_stats.json")
            try:
                total += int(json.loads(stats.read_text())["successes"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
        return total

    def scan(self, unit: int, position: int) -> Iterator[Record]:
        try:
            f = open(self.files[unit], "rb")  # noqa: SIM115 (only open() may fail here; closed by `with` below)
            tar = tarfile.TarFile(fileobj=f, mode="r")
        except (OSError, tarfile.TarError) as exc:
            yield Record(position, position, problem=f"unreadable tar shard ({exc})")
            return
        with f:
            key, members, start, end = None, {}, position, position
            for offset, item in _members(tar, f, position):
                if isinstance(item, str):  # the shard cannot be read past this point
                    if key is not None:
                        yield Record(start, offset, (key, members))
                    yield Record(offset, offset, problem=item)
                    return
                end = tar.offset
                match = _KEY.match(item.name)
                if not item.isreg() or match is None:
                    continue
                if key is not None and match.group(1) != key:
                    yield Record(start, offset, (key, members))
                    members, start = {}, offset
                key = match.group(1)
                members[match.group(2).lower()] = (item.offset_data, item.size)
            if key is not None:
                yield Record(start, end, (key, members))

    def load(self, unit: int, handle: Any) -> RawSample:
        key, members = handle
        image = next((members[e] for e in self.image_exts if e in members), None)
        caption = next((members[e] for e in self.caption_exts if e in members), None)
        if image is None:
            raise BadSample("no image member")
        if caption is None:
            raise BadSample("no caption member")
        with open(self.files[unit], "rb") as f:
            return RawSample(key=key, image=_read(f, *image), caption=_read(f, *caption))


def _members(tar: tarfile.TarFile, f: Any, position: int) -> Iterator[tuple[int, tarfile.TarInfo | str]]:
    """``(header offset, member)`` from ``position``; a string instead of a member says why reading stopped.

    Headers are read with :meth:`tarfile.TarInfo.fromtarfile` at offsets we choose (so reading can
    start mid-shard); ``tar.offset`` is where it says the next header starts.
    """
    offset = position
    while True:
        f.seek(offset)
        try:
            info = tarfile.TarInfo.fromtarfile(tar)
        except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):
            return  # end-of-archive blocks, or the file simply ends between members
        except tarfile.TruncatedHeaderError:
            yield offset, "truncated tar member"
            return
        except tarfile.HeaderError:
            yield offset, "corrupt tar header"
            return
        yield offset, info
        offset = tar.offset


def _read(f: Any, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) < size:
        raise BadSample("truncated tar member")
    return data


def _extensions(spec: SourceSpec, option: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if option not in spec.options:
        return default
    return tuple(e.strip().lstrip(".").lower() for e in spec.options[option].split(";") if e.strip())


# --------------------------------------------------------------------------------------------
# Tables: Hugging Face datasets, parquet, CSV/TSV
# --------------------------------------------------------------------------------------------
class TableSource(Source):
    """Rows with an image column (bytes, ``{"bytes", "path"}``, or a path) and a caption column.

    Units are read one at a time and the last one is kept, so a worker holds one unit in memory.
    """

    def __init__(self, spec: SourceSpec, columns: Sequence[str], root: Path) -> None:
        super().__init__(spec)
        self.image_column = _column(spec, "image", IMAGE_COLUMNS, columns)
        self.caption_column = _column(spec, "caption", CAPTION_COLUMNS, columns)
        self.root = Path(spec.options.get("root") or root).expanduser()
        self._cached: tuple[int, tuple[Sequence[Any], Sequence[Any]]] | None = None

    @abc.abstractmethod
    def unit_rows(self, unit: int) -> int: ...

    @abc.abstractmethod
    def read_unit(self, unit: int) -> tuple[Sequence[Any], Sequence[Any]]:
        """The image and caption values of every row of ``unit``."""

    def scan(self, unit: int, position: int) -> Iterator[Record]:
        for row in range(position, self.unit_rows(unit)):
            yield Record(row, row + 1, row)

    def load(self, unit: int, handle: Any) -> RawSample:
        if self._cached is None or self._cached[0] != unit:
            self._cached = (unit, self.read_unit(unit))
        images, captions = self._cached[1]
        return RawSample(key=f"{unit}:{handle}", image=self._image(images[handle]), caption=captions[handle])

    def _image(self, value: Any) -> Any:
        if hasattr(value, "as_py"):
            value = value.as_py()
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, str):
            if value.startswith(("http://", "https://")):
                raise BadSample("image is a URL, not a file")
            return self.root / value
        if value is None:
            raise BadSample("no image")
        return value

    def check_first_row(self) -> None:
        """Fail early on a table of URLs (they must be downloaded first, e.g. with img2dataset)."""
        if self.num_units == 0 or self.unit_rows(0) == 0:
            raise DataSpecError(f"--data {self.spec.text}: the table has no rows")
        try:
            self.load(0, 0)
        except BadSample as exc:
            if "URL" in exc.reason:
                raise DataSpecError(
                    f"--data {self.spec.text}: column {self.image_column!r} holds URLs; download the images "
                    "first (img2dataset writes tar shards textseg reads directly)"
                ) from None


class HFDataset(TableSource):
    """A ``datasets.Dataset``: a local ``save_to_disk`` folder or a hub id (downloaded to the HF cache,
    memory-mapped, never loaded into RAM). Image columns are read undecoded."""

    def __init__(self, spec: SourceSpec) -> None:
        import datasets

        split = spec.options.get("split", "train")
        local = Path(spec.location).expanduser()
        if local.is_dir():
            if not any((local / marker).is_file() for marker in HF_DISK_MARKERS):
                raise DataSpecError(f"--data {spec.text}: {local} is not a folder written by save_to_disk")
            dataset = datasets.load_from_disk(str(local))
            root = local
        else:
            dataset = datasets.load_dataset(spec.location, split=split)
            root = Path.cwd()
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise DataSpecError(f"--data {spec.text}: no split {split!r} (splits: {', '.join(dataset)})")
            dataset = dataset[split]
        super().__init__(spec, dataset.column_names, root)
        dataset = dataset.select_columns([self.image_column, self.caption_column])
        if isinstance(dataset.features[self.image_column], datasets.Image):
            dataset = dataset.cast_column(self.image_column, datasets.Image(decode=False))
        self.dataset = dataset
        self.check_first_row()

    @property
    def num_units(self) -> int:
        return math.ceil(len(self.dataset) / ROWS_PER_UNIT)

    @property
    def length(self) -> int:
        return self.spec.length() or len(self.dataset)

    def unit_rows(self, unit: int) -> int:
        return min(ROWS_PER_UNIT, len(self.dataset) - unit * ROWS_PER_UNIT)

    def read_unit(self, unit: int) -> tuple[Sequence[Any], Sequence[Any]]:
        rows = self.dataset[unit * ROWS_PER_UNIT : (unit + 1) * ROWS_PER_UNIT]
        return rows[self.image_column], rows[self.caption_column]


class ParquetTable(TableSource):
    """Parquet files; each row group is a unit, and only the two columns are read."""

    def __init__(self, spec: SourceSpec) -> None:
        import pyarrow.parquet as pq

        self.files = resolve_files(spec, ".parquet")
        self.units: list[tuple[int, int, int]] = []  # (file, row group, rows)
        for index, path in enumerate(self.files):
            metadata = pq.ParquetFile(path).metadata
            self.units += [(index, g, metadata.row_group(g).num_rows) for g in range(metadata.num_row_groups)]
        columns = pq.ParquetFile(self.files[0]).schema_arrow.names
        super().__init__(spec, columns, self.files[0].parent)
        self.check_first_row()

    @property
    def num_units(self) -> int:
        return len(self.units)

    @property
    def length(self) -> int:
        return self.spec.length() or sum(rows for _, _, rows in self.units)

    def unit_rows(self, unit: int) -> int:
        return self.units[unit][2]

    def read_unit(self, unit: int) -> tuple[Sequence[Any], Sequence[Any]]:
        import pyarrow.parquet as pq

        file, group, _ = self.units[unit]
        table = pq.ParquetFile(self.files[file]).read_row_group(
            group, columns=[self.image_column, self.caption_column]
        )
        return table.column(self.image_column), table.column(self.caption_column).to_pylist()


class CSVTable(TableSource):
    """A CSV (quoted fields may hold newlines) or TSV (one row per line, no quoting) file with a header.

    One pass at start-up records the byte offset of every ``ROWS_PER_UNIT``-th row, so units can be
    read on their own and the file is never held in memory.
    """

    def __init__(self, spec: SourceSpec) -> None:
        files = resolve_files(spec, f".{spec.kind}")
        if len(files) != 1:
            raise DataSpecError(
                f"--data {spec.text}: give one {spec.kind} file per source (join sources with ::)"
            )
        self.path = files[0]
        self.quoted = spec.kind == "csv"
        self.sep = spec.options.get("sep", "," if self.quoted else "\t").replace("\\t", "\t")
        header, self.offsets, self.rows = self._index()
        super().__init__(spec, header, self.path.parent)
        self.columns = {name: i for i, name in enumerate(header)}
        self.check_first_row()

    def _index(self) -> tuple[list[str], list[int], int]:
        offsets: list[int] = []
        rows = 0
        with open(self.path, "rb") as f:
            header_text = self._record(f)
            if header_text is None:
                raise DataSpecError(f"--data {self.spec.text}: {self.path} is empty")
            header = self._parse(header_text)[0]
            while True:
                offset = f.tell()
                line = self._record(f)
                if line is None:
                    break
                if not line.strip():
                    continue
                if rows % ROWS_PER_UNIT == 0:
                    offsets.append(offset)
                rows += 1
            offsets.append(f.tell())
        return header, offsets, rows

    def _record(self, f: Any) -> bytes | None:
        """The bytes of one record (several lines when a quoted field holds newlines)."""
        line = f.readline()
        if not line:
            return None
        while self.quoted and line.count(b'"') % 2 and (more := f.readline()):
            line += more
        return line

    def _parse(self, data: bytes) -> list[list[str]]:
        text = data.decode("utf-8", errors="replace")
        quoting = csv.QUOTE_MINIMAL if self.quoted else csv.QUOTE_NONE
        return [
            row
            for row in csv.reader(io.StringIO(text, newline=""), delimiter=self.sep, quoting=quoting)
            if row
        ]

    @property
    def num_units(self) -> int:
        return len(self.offsets) - 1

    @property
    def length(self) -> int:
        return self.spec.length() or self.rows

    def unit_rows(self, unit: int) -> int:
        return min(ROWS_PER_UNIT, self.rows - unit * ROWS_PER_UNIT)

    def read_unit(self, unit: int) -> tuple[Sequence[Any], Sequence[Any]]:
        with open(self.path, "rb") as f:
            f.seek(self.offsets[unit])
            rows = self._parse(f.read(self.offsets[unit + 1] - self.offsets[unit]))
        image, caption = self.columns[self.image_column], self.columns[self.caption_column]
        width = max(image, caption) + 1
        return (
            [row[image] if len(row) >= width else None for row in rows],
            [row[caption] if len(row) >= width else "" for row in rows],
        )


def _column(spec: SourceSpec, option: str, candidates: tuple[str, ...], columns: Sequence[str]) -> str:
    if option in spec.options:
        if spec.options[option] not in columns:
            raise DataSpecError(
                f"--data {spec.text}: no column {spec.options[option]!r} (columns: {', '.join(columns)})"
            )
        return spec.options[option]
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise DataSpecError(
            f"--data {spec.text}: cannot tell which column holds the {option} (columns: {', '.join(columns)}); "
            f"add ?{option}=<column>"
        )
    return found


_KINDS: dict[str, type[Source]] = {
    "tar": TarShards,
    "hf": HFDataset,
    "parquet": ParquetTable,
    "csv": CSVTable,
    "tsv": CSVTable,
}


def open_source(spec: SourceSpec) -> Source:
    """Open one parsed source (reads only metadata and, for CSV, the row offsets)."""
    if spec.kind == "shapes":  # imported here: the generated world's module builds on this one
        from textseg.data.shapes import ShapesSource

        return ShapesSource(spec)
    return _KINDS[spec.kind](spec)
