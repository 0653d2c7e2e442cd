"""A benchmark's evaluation samples from a Hugging Face ``datasets`` dataset.

``BenchmarkSpec.open("hf:<hub id or local path>[?split=..&image=..&label=..&id=..&config=..]")``
reads a dataset with an image column and a label column:

* a local folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or any local
  folder ``datasets.load_dataset`` reads (parquet, image folders, a cloned dataset repo);
* otherwise a hub id, through ``datasets.load_dataset`` (needs the network, or the local cache).

**Label convention.** The label column must hold the *raw ids of the benchmark's on-disk layout*
as a single-channel image (or a 2-D array): VOC palette indices with 255 borders, Context 0..59,
COCO-Stuff trainIds 0..170 with 255, COCO-Object 0..80, Cityscapes trainIds with 255, ADE20K
0..150 with 0 = other. The benchmark then applies its own reduction exactly as for files (e.g.
``reduce_zero_label`` for ``ade20k``, ``voc20`` and ``context59``). Colour-coded (RGB) masks are
refused. Hub uploads rarely document their convention: check a few masks before trusting a score.

``split`` defaults to ``validation`` (or the only split); ``image`` to ``image``; ``label`` to the
first of :data:`LABEL_COLUMNS` present; ``id`` (a column naming each sample) to the row number.
"""

from __future__ import annotations

import io
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from textseg.benchmark import LoadedSample, UnreadableImageError
from textseg.errors import ConfigError, DatasetNotFoundError

if TYPE_CHECKING:
    from datasets import Dataset

    from textseg.benchmark import BenchmarkSpec

PREFIX = "hf:"
LABEL_COLUMNS = ("label", "annotation", "mask", "semantic_segmentation", "segmentation", "gt")
OPTIONS = ("split", "config", "image", "label", "id")


@dataclass(frozen=True)
class HFLocation:
    """A parsed ``hf:`` location."""

    path: str
    split: str | None = None
    config: str | None = None
    image: str = "image"
    label: str | None = None
    id: str | None = None

    @classmethod
    def parse(cls, location: str) -> HFLocation:
        body = location.removeprefix(PREFIX)
        path, _, query = body.partition("?")
        if not path:
            raise ConfigError(f"{location!r}: give a hub id or a local path after 'hf:'")
        options = dict(urllib.parse.parse_qsl(query, keep_blank_values=False))
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise ConfigError(f"{location!r}: unknown option(s) {unknown}; known: {', '.join(OPTIONS)}")
        return cls(path, **options)


class HFSource:
    """Rows of a ``datasets.Dataset`` as :class:`LoadedSample` (see the module docstring)."""

    def __init__(self, spec: BenchmarkSpec, dataset: Dataset, location: HFLocation, name: str) -> None:
        columns = list(dataset.column_names)
        label = location.label or next((c for c in LABEL_COLUMNS if c in columns), None)
        wanted = {"image": location.image, "label": label or "/".join(LABEL_COLUMNS)}
        if location.id is not None:
            wanted["id"] = location.id
        for role, column in wanted.items():
            if column not in columns:
                raise ConfigError(
                    f"{name}: no {role} column {column!r} among {columns}; name it with ?{role}=<column>"
                )
        self.spec = spec
        self.dataset = dataset
        self.image_column = location.image
        self.label_column = label
        self.id_column = location.id
        self.name = name

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> LoadedSample:
        where = f"{self.name} row {index}"
        try:
            row = self.dataset[index]
            image = np.array(_as_image(row[self.image_column]).convert("RGB"))
            label = self.spec.reduce_label(_label_array(row[self.label_column], where))
        except (OSError, SyntaxError) as exc:  # PIL's errors for truncated or non-image bytes
            raise UnreadableImageError(
                f"{where}: an image cannot be decoded ({exc}); the dataset is damaged"
            ) from exc
        sample_id = str(row[self.id_column]) if self.id_column else f"{index:06d}"
        return LoadedSample.checked(sample_id, image, label, where)


def _as_image(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict) and value.get("bytes") is not None:  # an undecoded Image feature
        return Image.open(io.BytesIO(value["bytes"]))
    return Image.fromarray(np.asarray(value, dtype=np.uint8))


def _label_array(value: Any, where: str) -> np.ndarray:
    if isinstance(value, Image.Image) and value.mode in ("RGB", "RGBA"):
        raise ConfigError(
            f"{where}: the label is a colour ({value.mode}) image; the label column must hold raw class "
            "ids as a single-channel image (see textseg.hf_source)"
        )
    array = np.asarray(value if not isinstance(value, dict) else _as_image(value))
    if array.ndim != 2:
        raise ConfigError(f"{where}: the label has shape {array.shape}; expected a 2-D map of class ids")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ConfigError(f"{where}: label ids span {array.min()}..{array.max()}; expected 0..255")
    return array.astype(np.uint8)


def _load(location: HFLocation, name: str) -> Any:
    import datasets

    local = Path(location.path).expanduser()
    try:
        if (local / "state.json").is_file() or (local / "dataset_dict.json").is_file():
            return datasets.load_from_disk(str(local))
        source = str(local) if local.exists() else location.path
        return datasets.load_dataset(source, location.config, split=location.split)
    except Exception as exc:  # datasets raises many types (missing repo, offline, bad files)
        raise DatasetNotFoundError(
            f"cannot load the Hugging Face dataset {name}: {type(exc).__name__}: {exc}. Give a hub id "
            "(network or cache needed) or a local folder, e.g. one written with save_to_disk."
        ) from exc


def open_hf(spec: BenchmarkSpec, location: str) -> HFSource:
    """The evaluation samples of ``spec`` in the dataset at ``location`` (``hf:...``)."""
    import datasets

    parsed = HFLocation.parse(location)
    loaded = _load(parsed, location)
    if isinstance(loaded, datasets.Dataset):
        dataset = loaded  # one split: saved that way, or chosen with ?split= while loading
    else:
        splits = list(loaded)
        split = parsed.split or ("validation" if "validation" in splits or len(splits) != 1 else splits[0])
        if split not in splits:
            raise ConfigError(
                f"{location}: no split {split!r}; it has {splits}. Choose one with ?split=<name>"
            )
        dataset = loaded[split]
    return HFSource(spec, dataset, parsed, location)
