"""``BenchmarkSpec.open("hf:...")`` on local datasets written with ``save_to_disk`` (no network)."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from textseg.errors import ConfigError, DatasetNotFoundError
from textseg.hf_source import HFLocation
from textseg.registry import BENCHMARKS

LABEL = np.array([[0, 1, 150], [2, 0, 7]], dtype=np.uint8)


def _rows(n: int, label_mode: str = "L") -> dict[str, list]:
    images = [Image.fromarray(np.full((2, 3, 3), 10 * k, np.uint8)) for k in range(n)]
    labels = [Image.fromarray(LABEL + k).convert(label_mode) for k in range(n)]
    return {"img": images, "annotation": labels, "name": [f"ADE_val_{k:08d}" for k in range(n)]}


def _features() -> datasets.Features:
    return datasets.Features(
        {"img": datasets.Image(), "annotation": datasets.Image(), "name": datasets.Value("string")}
    )


def test_saved_dataset_dict_with_reduce_zero_label(tmp_path: Path) -> None:
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(_rows(1), features=_features()),
            "validation": datasets.Dataset.from_dict(_rows(3), features=_features()),
        }
    )
    splits.save_to_disk(str(tmp_path / "ade"))
    source = BENCHMARKS.get("ade20k").open(f"hf:{tmp_path / 'ade'}?image=img&id=name")
    assert len(source) == 3
    sample = source[1]
    assert sample.id == "ADE_val_00000001"
    assert sample.image.shape == (2, 3, 3) and sample.image[0, 0, 0] == 10
    # row k holds LABEL + k: reduce_zero_label maps 0 -> 255 and v -> v - 1
    assert sample.label.tolist() == [[0, 1, 150], [2, 0, 7]]
    assert source[0].label.tolist() == [[255, 0, 149], [1, 255, 6]]


def test_palette_labels_keep_their_indices(tmp_path: Path) -> None:
    rows = _rows(1, label_mode="P")
    datasets.Dataset.from_dict(rows, features=_features()).save_to_disk(str(tmp_path / "voc"))
    source = BENCHMARKS.get("voc21").open(f"hf:{tmp_path / 'voc'}?image=img&label=annotation&split=ignored")
    assert source[0].label.tolist() == LABEL.tolist() and source[0].id == "000000"


def test_colour_labels_and_missing_columns_are_refused(tmp_path: Path) -> None:
    datasets.Dataset.from_dict(_rows(1, label_mode="RGB"), features=_features()).save_to_disk(
        str(tmp_path / "d")
    )
    with pytest.raises(ConfigError, match="no image column 'image' among"):
        BENCHMARKS.get("ade20k").open(f"hf:{tmp_path / 'd'}")
    source = BENCHMARKS.get("ade20k").open(f"hf:{tmp_path / 'd'}?image=img")
    with pytest.raises(ConfigError, match="row 0: the label is a colour"):
        source[0]


def test_unknown_split_and_options(tmp_path: Path) -> None:
    datasets.DatasetDict(
        {"validation": datasets.Dataset.from_dict(_rows(1), features=_features())}
    ).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ConfigError, match="no split 'test'; it has \\['validation'\\]"):
        BENCHMARKS.get("ade20k").open(f"hf:{tmp_path / 'd'}?split=test&image=img")
    with pytest.raises(ConfigError, match="unknown option"):
        HFLocation.parse("hf:x?colour=1")
    assert HFLocation.parse("hf:user/ds?split=val&label=mask") == HFLocation(
        "user/ds", split="val", label="mask"
    )


def test_unreachable_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="cannot load the Hugging Face dataset hf:"):
        BENCHMARKS.get("ade20k").open(f"hf:{tmp_path / 'nothing-here'}")


def test_local_parquet_folder_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_dict(_rows(2), features=_features()).to_parquet(
        str(tmp_path / "pq/validation.parquet")
    )
    source = BENCHMARKS.get("voc20").open(f"hf:{tmp_path / 'pq'}?split=validation&image=img")
    assert len(source) == 2
    assert source[1].label.tolist() == LABEL.tolist()  # row 1 holds LABEL + 1; reduce_zero_label undoes it
