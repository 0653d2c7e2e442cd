"""The eight built-in benchmarks: class lists as the protocol has them, and their on-disk layouts."""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from textseg.cli import main
from textseg.errors import DatasetNotFoundError
from textseg.registry import BENCHMARKS

NAMES = ("voc21", "voc20", "context60", "context59", "coco_object", "coco_stuff", "cityscapes", "ade20k")
#: (classes, background, reduce_zero_label, val size) from mmseg 0.27 / TCL's dataset classes.
FACTS = {
    "voc21": (21, True, False, 1449),
    "voc20": (20, False, True, 1449),
    "context60": (60, True, False, 5104),
    "context59": (59, False, True, 5104),
    "coco_object": (81, True, False, 5000),
    "coco_stuff": (171, False, False, 5000),
    "cityscapes": (19, False, False, 500),
    "ade20k": (150, False, True, 2000),
}
#: sha256 of SCLIP's configs/cls_*.txt at b56bd30 (the package copies must be byte-identical).
SCLIP_SHA256 = {
    "voc21": "80e643a9a143966800cd4a49324fd0be2f94c0d7bac817ea16a5f66ed706bc38",
    "voc20": "c68f65a2b342397cdfe05ff5289517e1e370b1d574a218ff1a17db27f2576db1",
    "context60": "5e620446a8699f292a4c2e37fa8918a33dd4f14713dc1b3f22884d2be68b45a1",
    "context59": "cd808465f06a16169edc25580073f0eda347e64f06cc1c2e24acd0b237f6497d",
    "coco_object": "3475d03d61f85ce03812ce62d019de8f2ea51053885374629d29a17fbd3f02a6",
    "coco_stuff": "fb98709b9ab1baff4fd930bac4a77772a0458c7d534911de545f9a4081e14a3e",
    "cityscapes": "6f6782fc1bf92bfd9f5562192e92045e0e093870e613f387f6c98fc66d4ceba4",
    "ade20k": "e53ded02c488bdb903ef000a2d207e4ac4f2bb4502a72572e4aab7c2504aef3a",
}
#: Git blob ids of ClearCLIP's configs/cls_*.txt (mc-lan/ClearCLIP at ad68a40, `git ls-tree`).
CLEARCLIP_BLOBS = {
    "voc21": "913c968f5a11102741b5fa17cf6aba9c1814b419",
    "voc20": "3f073de079b698e44eab182776ea0026009b8973",
    "context60": "a6209938e2a6e57018af0ed6896176a7f1ace54f",
    "context59": "f9fb2a22f62cbd5a5a27cb2677636506fbbbc551",
    "coco_object": "e290149963116c873fe6c54d28337a78bc500d8a",
    "coco_stuff": "b76c5a676308c9f328635938cf86f6fd27a985bb",
    "cityscapes": "a1560efb268b4c8a52a68e41df402a4b33171d44",
    "ade20k": "dba5aa2ce0c703b9dbf07dea5ee5e5230c8b51d3",
}
#: Git blob ids of mc-lan/ProxyCLIP ``configs/cls_*.txt`` at e7b767f (synonyms separated by ``"; "``).
PROXYCLIP_BLOBS = {
    **CLEARCLIP_BLOBS,
    "voc21": "5b8dc7e2b75c5e604fcb772c8fe9bbb877719624",
    "coco_object": "db0f477941c551be23719fdff5036961366d05c9",
}
#: The raw label values each synthetic layout may hold (the real encodings).
RAW_VALUES = {
    "voc21": {*range(21), 255},
    "voc20": {*range(21), 255},
    "context60": set(range(60)),
    "context59": set(range(60)),
    "coco_object": set(range(81)),
    "coco_stuff": {*range(171), 255},
    "cityscapes": {*range(19), 255},
    "ade20k": set(range(151)),
}


def test_all_eight_are_registered_builtins() -> None:
    assert set(NAMES) <= set(BENCHMARKS.names())
    for name in NAMES:
        assert BENCHMARKS.entry(name).builtin


@pytest.mark.parametrize("name", NAMES)
def test_spec_facts(name: str) -> None:
    spec = BENCHMARKS.get(name)
    classes, background, reduce, size = FACTS[name]
    assert (spec.num_classes, spec.background, spec.reduce_zero_label, spec.split_size) == (
        classes,
        background,
        reduce,
        size,
    )
    assert spec.ignore_index == 255 and spec.version == "1"
    assert len(set(spec.classes)) == spec.num_classes
    assert len(spec.synonyms["sclip"]) == spec.num_classes


@pytest.mark.parametrize("name", NAMES)
def test_sclip_files_are_verbatim(name: str) -> None:
    data = resources.files("textseg.benchmarks").joinpath("classnames", "sclip", f"{name}.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCLIP_SHA256[name]


@pytest.mark.parametrize("name", NAMES)
def test_clearclip_files_are_verbatim(name: str) -> None:
    data = (
        resources.files("textseg.benchmarks").joinpath("classnames", "clearclip", f"{name}.txt").read_bytes()
    )
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == CLEARCLIP_BLOBS[name]
    assert len(BENCHMARKS.get(name).synonyms["clearclip"]) == BENCHMARKS.get(name).num_classes


@pytest.mark.parametrize("name", NAMES)
def test_proxyclip_files_are_verbatim_but_the_separator(name: str) -> None:
    data = (
        resources.files("textseg.benchmarks").joinpath("classnames", "proxyclip", f"{name}.txt").read_bytes()
    )
    official = data.replace(b", ", b"; ")  # ProxyCLIP splits on "; ", textseg's name files on ", "
    assert hashlib.sha1(b"blob %d\0" % len(official) + official).hexdigest() == PROXYCLIP_BLOBS[name]
    assert len(BENCHMARKS.get(name).synonyms["proxyclip"]) == BENCHMARKS.get(name).num_classes


def test_class_lists_agree_across_families() -> None:
    get = BENCHMARKS.get
    assert get("voc20").classes == get("voc21").classes[1:]
    assert get("context59").classes == get("context60").classes[1:]
    assert get("coco_object").classes[1:] == get("coco_stuff").classes[:80]
    assert get("voc21").classes[11] == "diningtable" and get("coco_stuff").classes[84] == "building-other"
    assert get("cityscapes").classes[6:8] == ("traffic light", "traffic sign")


def test_ade_keeps_mmseg_trailing_space_and_sclip_names() -> None:
    ade = BENCHMARKS.get("ade20k")
    assert ade.classes[7] == "bed " and ade.classes[44] == "chest of drawers"
    assert ade.synonyms["sclip"][44] == "chestofdrawers"
    assert BENCHMARKS.get("context60").synonyms["sclip"][59] == "wood "


def test_sclip_vocabulary_has_background_words_and_synonyms() -> None:
    voc = BENCHMARKS.get("voc21").vocabulary(("a photo of a {}.",), synonyms="sclip", background_query=True)
    assert len(voc.classes[0]) == 26 and voc.classes[0][0] == "sky"
    assert voc.classes[20] == ("television monitor", "tv monitor", "monitor", "television", "screen")
    tcl = BENCHMARKS.get("voc21").vocabulary(("a photo of a {}.",))
    assert tcl.num_classes == 20 and tcl.classes[0] == ("aeroplane",)


@pytest.mark.parametrize("name", NAMES)
def test_every_benchmark_loads_its_synthetic_layout(name: str, tmp_path: Path) -> None:
    spec = BENCHMARKS.get(name)
    assert main(["data", "synthetic", name, "--out", str(tmp_path), "-n", "3"]) == 0
    source = spec.open(tmp_path)
    assert len(source) == 3
    raw_values: set[int] = set()
    for sample in (source[i] for i in range(3)):
        assert sample.image.dtype == np.uint8 and sample.image.ndim == 3
        assert sample.label.shape == sample.image.shape[:2]
        assert min(sample.label.shape) >= 60 and max(sample.label.shape) <= 120
        scored = sample.label[sample.label != spec.ignore_index]
        assert scored.size and scored.max() < spec.num_classes
    for s in spec.samples(tmp_path):
        with Image.open(s.label) as label:
            raw_values |= set(np.unique(np.array(label)).tolist())
    assert raw_values <= RAW_VALUES[name]


def test_voc_synthetic_labels_are_palette_pngs_with_void_borders(tmp_path: Path) -> None:
    spec = BENCHMARKS.get("voc21")
    spec.write_synthetic(tmp_path, 2)
    with Image.open(spec.samples(tmp_path)[0].label) as label:
        assert label.mode == "P"
        assert label.getpalette()[255 * 3 : 256 * 3] == [224, 224, 192]  # VOC's void colour
        assert label.getpalette()[15 * 3 : 16 * 3] == [192, 128, 128]  # person
        assert 255 in np.array(label)


def test_reduce_zero_label_on_read(tmp_path: Path) -> None:
    ade = BENCHMARKS.get("ade20k")
    ade.write_synthetic(tmp_path, 1)
    sample = ade.samples(tmp_path)[0]
    Image.fromarray(np.array([[0, 1, 150]] * 60 + [[2, 3, 4]] * 60, dtype=np.uint8)).save(sample.label)
    Image.fromarray(np.zeros((120, 3, 3), np.uint8)).save(sample.image)
    label = ade.open(tmp_path)[0].label
    assert label[0].tolist() == [255, 0, 149] and label[-1].tolist() == [1, 2, 3]


def test_missing_dataset_names_paths_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        BENCHMARKS.get("voc21").samples(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt") in message
    assert str(tmp_path / "VOCdevkit/VOC2012/SegmentationClass/<id>.png") in message
    assert f"textseg data download voc21 --out {tmp_path}" in message
    assert "textseg data prepare voc21 --raw <" in message
    assert f"found: {tmp_path}/ holds: nothing" in message


def test_missing_cityscapes_scan_folder_says_what_was_found(tmp_path: Path) -> None:
    (tmp_path / "cityscapes" / "gtFine").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        BENCHMARKS.get("cityscapes").samples(tmp_path)
    message = str(info.value)
    assert f"no image folder {tmp_path / 'cityscapes/leftImg8bit/val'}" in message
    assert f"{tmp_path / 'cityscapes'}/ holds: gtFine/" in message
    assert (
        "textseg data prepare cityscapes --raw" in message
        and "download" not in message.split("to get it:")[1]
    )


def test_incomplete_dataset_lists_missing_files(tmp_path: Path) -> None:
    spec = BENCHMARKS.get("coco_stuff")
    spec.write_synthetic(tmp_path, 3)
    missing = spec.samples(tmp_path)[1].label
    missing.unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        spec.samples(tmp_path)
    assert "1 of 6 image/label files are missing" in str(info.value) and str(missing) in str(info.value)


def test_cli_reports_missing_data_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["data", "prepare", "ade20k", "--raw", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert "textseg: error: cannot find the extracted ADEChallengeData2016/" in err
    assert str(tmp_path / "nothing" / "ADEChallengeData2016") in err and "Traceback" not in err
