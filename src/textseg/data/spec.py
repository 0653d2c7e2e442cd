"""The ``--data`` syntax: which image-text sources to read and how to mix them.

A spec is one or more sources joined by ``::`` (open_clip's convention); ``--data`` may also be
given several times. Each source is ``[KIND:]LOCATION[?KEY=VALUE&KEY=VALUE...]``::

    shards/{00000..00331}.tar                             img2dataset webdataset shards (brace ranges)
    cc3m/{00000..00331}.tar?length=2881393::cc12m/{00000..01242}.tar?length=11286526
    hf:user/dataset?split=train&image=jpg&caption=txt     a Hugging Face hub dataset
    hf:/data/my_saved_dataset                             a local ``save_to_disk`` folder
    pairs.parquet?image=path&caption=caption&root=/images a table of image paths and captions
    pairs.csv  /  pairs.tsv                               the same as CSV / tab-separated text
    shapes:?n=20000&seed=0&size=64                        the generated shapes world (textseg.data.shapes)

``KIND`` (``tar``, ``hf``, ``parquet``, ``csv``, ``tsv``, ``shapes``) is inferred from the file extension, or
for a folder from what it holds (a ``save_to_disk`` dataset, ``.tar`` or ``.parquet`` files); a hub
id needs ``hf:``; the generated world needs ``shapes:`` (it has no location). Options:

* every source: ``weight`` (mixing weight), ``length`` (number of samples; the default weight),
  ``name`` (used in logs);
* tables and ``hf``: ``image`` and ``caption`` column names, ``root`` for relative image paths
  (default: the table's folder); ``hf``: ``split`` (default ``train``); ``csv``/``tsv``: ``sep``;
* ``tar``: ``image`` and ``caption`` member extensions, ``;``-separated
  (default ``jpg;jpeg;png;webp`` and ``txt``);
* ``shapes``: ``n`` (scenes per epoch, default 20000), ``seed`` (default 0), ``size`` (pixels, default 64).

Several sources are mixed sample by sample with probability proportional to ``weight``, else to
``length`` (known exactly for tables and hub datasets, read from img2dataset's ``*_stats.json`` for
shards, or given), which is what concatenating the datasets (TCL, CoDe) amounts to.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl

from textseg.errors import ConfigError

KINDS = ("tar", "hf", "parquet", "csv", "tsv", "shapes")
_OPTIONS = {
    "tar": {"image", "caption"},
    "hf": {"image", "caption", "root", "split"},
    "parquet": {"image", "caption", "root"},
    "csv": {"image", "caption", "root", "sep"},
    "tsv": {"image", "caption", "root", "sep"},
    "shapes": {"n", "seed", "size"},
}
_COMMON = {"weight", "length", "name"}
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
#: Files a ``datasets`` ``save_to_disk`` folder holds (a Dataset, or a DatasetDict).
HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class DataSpecError(ConfigError):
    """A ``--data`` value that cannot be understood or points at nothing."""


@dataclass(frozen=True)
class SourceSpec:
    """One parsed source: its kind, where it is, and its options (strings, checked per kind)."""

    kind: str
    location: str
    options: Mapping[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def name(self) -> str:
        return self.options.get("name") or self.text

    def weight(self) -> float | None:
        return _number(self, "weight", float)

    def length(self) -> int | None:
        return _number(self, "length", int)


def _number(spec: SourceSpec, key: str, kind: type) -> float | int | None:
    if key not in spec.options:
        return None
    try:
        value = kind(spec.options[key])
    except ValueError:
        raise DataSpecError(f"--data {spec.text}: {key}={spec.options[key]!r} is not a number") from None
    if value <= 0:
        raise DataSpecError(f"--data {spec.text}: {key} must be positive, got {value}")
    return value


def expand_braces(pattern: str) -> list[str]:
    """``a/{000..002}.tar`` -> three paths (zero padding kept); ``{x,y}`` lists; several groups multiply."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = _RANGE.match(body)
    if numeric:
        first, last = numeric.groups()
        width = len(first) if first.lstrip("-").startswith("0") else 0
        step = 1 if int(last) >= int(first) else -1
        items = [str(i).zfill(width) for i in range(int(first), int(last) + step, step)]
    else:
        items = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [expanded for item in items for expanded in expand_braces(head + item + tail)]


def parse_data_spec(values: str | Iterable[str]) -> list[SourceSpec]:
    """Parse one or more ``--data`` values into sources (nothing is opened yet)."""
    texts = [values] if isinstance(values, str) else list(values)
    specs = [_parse_source(part.strip()) for text in texts for part in text.split("::") if part.strip()]
    if not specs:
        raise DataSpecError(
            "--data is empty; give tar shards, a hub dataset (hf:...), or a parquet/CSV table"
        )
    return specs


def _parse_source(text: str) -> SourceSpec:
    location, _, query = text.partition("?")
    kind = None
    prefix, sep, rest = location.partition(":")
    if sep and prefix in KINDS:
        kind, location = prefix, rest
    options = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
    if kind is None:
        kind = _infer_kind(location, text)
    unknown = set(options) - _COMMON - _OPTIONS[kind]
    if unknown:
        valid = ", ".join(sorted(_COMMON | _OPTIONS[kind]))
        raise DataSpecError(
            f"--data {text}: unknown option(s) {', '.join(sorted(unknown))} for {kind} (valid: {valid})"
        )
    return SourceSpec(kind=kind, location=location, options=options, text=text)


def _infer_kind(location: str, text: str) -> str:
    first = expand_braces(location)[0]
    suffix = Path(first).suffix.lower()
    if suffix in (".tar", ".parquet", ".csv", ".tsv"):
        return suffix[1:]
    path = Path(first).expanduser()
    if path.is_dir():
        if any((path / marker).is_file() for marker in HF_DISK_MARKERS):
            return "hf"
        for kind in ("tar", "parquet"):
            if any(path.glob(f"*.{kind}")):
                return kind
        raise DataSpecError(
            f"--data {text}: the folder holds no save_to_disk dataset, .tar shards or .parquet files"
        )
    if not path.exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", location):
        raise DataSpecError(
            f"--data {text}: no such file; if this is a Hugging Face hub id, write hf:{location}"
        )
    raise DataSpecError(
        f"--data {text}: cannot tell the kind of source; prefix it with one of "
        f"{', '.join(k + ':' for k in KINDS)} or use a .tar/.parquet/.csv/.tsv path"
    )


def resolve_files(spec: SourceSpec, suffix: str) -> list[Path]:
    """The files of a file-based source: brace ranges and globs expanded, or a folder's ``*suffix`` files.

    Every file must exist: a gap in a shard range is reported, not silently skipped.
    """
    paths: list[Path] = []
    for pattern in expand_braces(spec.location):
        path = Path(pattern).expanduser()
        if path.is_dir():
            found = sorted(path.glob(f"*{suffix}"))
            if not found:
                raise DataSpecError(f"--data {spec.text}: the folder {path} has no {suffix} files")
            paths.extend(found)
        elif glob.has_magic(pattern):
            found = sorted(Path(p) for p in glob.glob(str(path)))
            if not found:
                raise DataSpecError(f"--data {spec.text}: nothing matches {pattern}")
            paths.extend(found)
        else:
            paths.append(path)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DataSpecError(
            f"--data {spec.text}: {len(missing)} of {len(paths)} files do not exist ({shown}{more}); "
            "fix the path or the brace range"
        )
    return paths
