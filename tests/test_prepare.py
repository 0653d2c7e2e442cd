"""Every preparer turns its raw download format into the layout, with the label mappings of the
reference converters checked pixel by pixel on hand-made inputs and on synthetic downloads."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from textseg.cli import main
from textseg.registry import BENCHMARKS


def _array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def _prepare(name: str, raw: Path, out: Path, *extra: str) -> int:
    return main(["data", "prepare", name, "--raw", str(raw), "--out", str(out), "--workers", "1", *extra])


def _mtimes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# -- VOC ------------------------------------------------------------------------------------------
def test_voc_links_labels_unchanged_and_converts_sbd(tmp_path: Path) -> None:
    from scipy.io import loadmat

    raw, out = tmp_path / "raw", tmp_path / "data"
    assert main(["data", "synthetic", "voc21", "--raw", "--out", str(raw), "-n", "4"]) == 0
    assert _prepare("voc21", raw, out, "--allow-subset") == 0
    src, dst = raw / "VOCdevkit/VOC2012", out / "VOCdevkit/VOC2012"
    for sample in BENCHMARKS.get("voc21").samples(out):
        original = src / "SegmentationClass" / sample.label.name
        assert np.array_equal(_array(sample.label), _array(original))  # palette indices, 255 kept
        assert 255 in _array(sample.label)
    for mat in (raw / "benchmark_RELEASE/dataset/cls").glob("*.mat"):
        expected = loadmat(mat)["GTcls"]["Segmentation"][0, 0]
        assert np.array_equal(_array(dst / "SegmentationClassAug" / f"{mat.stem}.png"), expected)
    splits = dst / "ImageSets/Segmentation"
    # trainaug = VOC train (2008_0..2) + SBD (2011_0, 2011_1, 2008_0, 2007_0) - VOC val (2007_*)
    assert (splits / "trainaug.txt").read_text().split() == [
        "2008_000000",
        "2008_000001",
        "2008_000002",
        "2011_000000",
        "2011_000001",
    ]
    assert (splits / "aug.txt").read_text().split() == ["2011_000000", "2011_000001"]
    assert (dst / "JPEGImages/2011_000000.jpg").samefile(src / "JPEGImages/2011_000000.jpg")


def test_prepare_is_idempotent_and_checks_the_split_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, out = tmp_path / "raw", tmp_path / "data"
    BENCHMARKS.get("context60").layout.write_synthetic_raw(raw, 60, 3)
    assert _prepare("context59", raw, out) == 2
    assert "context59 under " in (err := capsys.readouterr().err) and "found 3 evaluation samples" in err
    before = _mtimes(out)
    assert before, "the layout is written even when the count check fails"
    assert _prepare("context59", raw, out, "--allow-subset") == 0
    assert _mtimes(out) == before  # nothing rewritten
    assert "3 evaluation samples ready" in capsys.readouterr().out


def test_split_size_error_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw"
    BENCHMARKS.get("ade20k").layout.write_synthetic_raw(raw, 150, 2)
    assert _prepare("ade20k", raw, tmp_path / "data") == 2
    err = capsys.readouterr().err
    assert (
        "ade20k under " in err
        and "found 2 evaluation samples" in err
        and "its split has 2000" in err
        and "--allow-subset" in err
    )


def test_prepare_in_place_leaves_raw_files(tmp_path: Path) -> None:
    """--raw equal to --out (an mmseg-style folder that was extracted by hand)."""
    BENCHMARKS.get("voc21").layout.write_synthetic_raw(tmp_path, 21, 2)
    before = _mtimes(tmp_path / "VOCdevkit")
    assert _prepare("voc21", tmp_path, tmp_path, "--allow-subset") == 0
    after = _mtimes(tmp_path / "VOCdevkit")
    assert {p: after[p] for p in before} == before
    assert (tmp_path / "VOCdevkit/VOC2012/ImageSets/Segmentation/trainaug.txt").is_file()
    assert _prepare("voc21", tmp_path, tmp_path, "--allow-subset") == 0  # trainaug.txt is not read back
    assert _mtimes(tmp_path / "VOCdevkit") == after


# -- PASCAL Context -------------------------------------------------------------------------------
def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _context_raw(raw: Path, annotations: list[dict]) -> None:
    jpegs = raw / "VOCdevkit/VOC2010/JPEGImages"
    jpegs.mkdir(parents=True)
    Image.new("RGB", (6, 4)).save(jpegs / "2008_000002.jpg")
    Image.new("RGB", (6, 4)).save(jpegs / "2008_000003.jpg")
    images = [
        {"image_id": 2008000002, "file_name": "2008_000002.jpg", "height": 4, "width": 6, "phase": "val"},
        {"image_id": 2008000003, "file_name": "2008_000003.jpg", "height": 4, "width": 6, "phase": "train"},
        {"image_id": 2008000004, "file_name": "2008_000004.jpg", "height": 4, "width": 6, "phase": "test"},
    ]
    (raw / "trainval_merged.json").write_text(
        json.dumps({"images": images, "annos_segmentation": annotations})
    )


def test_context_paints_annotations_in_order_and_maps_459_ids(tmp_path: Path) -> None:
    left = np.zeros((4, 6), np.uint8)
    left[:, :4] = 1
    right = np.zeros((4, 6), np.uint8)
    right[1:3, 2:] = 1
    uncompressed = {"size": [4, 6], "counts": [20, 4]}  # column-major: the last column's 4 pixels
    annotations = [
        {"id": 7, "image_id": 2008000002, "category_id": 284, "segmentation": _rle(left)},  # person
        {"id": 8, "image_id": 2008000002, "category_id": 2, "segmentation": _rle(right)},  # aeroplane
        {"id": 9, "image_id": 2008000003, "category_id": 458, "segmentation": uncompressed},  # wood
    ]
    raw, out = tmp_path / "raw", tmp_path / "data"
    _context_raw(raw, annotations)
    assert _prepare("context60", raw, out, "--allow-subset") == 0
    base = out / "VOCdevkit/VOC2010"
    val = _array(base / "SegmentationClassContext/2008_000002.png")
    expected = np.array(
        [
            [37, 37, 37, 37, 0, 0],
            [37, 37, 1, 1, 1, 1],  # the later annotation (aeroplane, 1) paints over person (37)
            [37, 37, 1, 1, 1, 1],
            [37, 37, 37, 37, 0, 0],
        ]
    )
    assert np.array_equal(val, expected)
    train = _array(base / "SegmentationClassContext/2008_000003.png")
    assert train[:, 5].tolist() == [59] * 4 and train[:, :5].max() == 0
    assert (base / "ImageSets/SegmentationContext/val.txt").read_text() == "2008_000002\n"
    assert (base / "ImageSets/SegmentationContext/train.txt").read_text() == "2008_000003\n"
    assert not (base / "SegmentationClassContext/2008_000004.png").exists()
    c59 = BENCHMARKS.get("context59").open(out)[0].label
    assert c59[0].tolist() == [36, 36, 36, 36, 255, 255]


def test_context_rejects_ids_outside_the_60(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mask = np.ones((4, 6), np.uint8)
    annotations = [{"id": 1, "image_id": 2008000002, "category_id": 3, "segmentation": _rle(mask)}]
    _context_raw(tmp_path / "raw", annotations)
    assert _prepare("context60", tmp_path / "raw", tmp_path / "data") == 2
    assert "2008_000002: category ids [3] are not among the 60" in capsys.readouterr().err


def test_context_synthetic_download(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "data"
    BENCHMARKS.get("context60").layout.write_synthetic_raw(raw, 60, 3)
    assert _prepare("context60", raw, out, "--allow-subset") == 0
    data = json.loads((raw / "trainval_merged.json").read_text())
    from textseg.benchmarks.context import CONTEXT_IDS

    for image in data["images"]:
        if image["phase"] == "test":
            continue
        expected = np.zeros((image["height"], image["width"]), np.int64)
        for ann in data["annos_segmentation"]:
            if ann["image_id"] == image["image_id"]:
                expected[mask_utils.decode(ann["segmentation"]) == 1] = ann["category_id"]
        stem = image["file_name"][:-4]
        got = _array(out / "VOCdevkit/VOC2010/SegmentationClassContext" / f"{stem}.png")
        assert np.array_equal(CONTEXT_IDS[got], expected)


# -- COCO -----------------------------------------------------------------------------------------
UNUSED = {11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90}


def _stuff_train_id(raw: int) -> int:
    """mmseg coco_stuff164k.py, restated: annotated ids in order -> 0..170; 255 and unused unchanged."""
    if raw == 255 or raw in UNUSED or raw > 181:
        return raw
    return raw - sum(u < raw for u in UNUSED)


def _object_id(raw: int) -> int:
    """GroupViT convert_coco_object.py, restated: things +1, stuff and 255 -> 0, unused unchanged."""
    if raw in UNUSED or 181 < raw < 255:
        return raw
    return _stuff_train_id(raw) + 1 if raw <= 89 else 0


def _coco_raw(raw: Path, values: np.ndarray) -> None:
    (raw / "val2017").mkdir(parents=True)
    (raw / "stuffthingmaps_trainval2017/val2017").mkdir(parents=True)
    Image.new("RGB", values.shape[::-1]).save(raw / "val2017/000000000139.jpg")
    Image.fromarray(values.astype(np.uint8)).save(
        raw / "stuffthingmaps_trainval2017/val2017/000000000139.png"
    )


def test_coco_known_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # raw 0 person, 11 street sign (never annotated), 89 toothbrush, 91 banner (COCO category 92),
    # 92 blanket, 181 wood, 255 unlabeled
    values = np.array([[0, 11, 89, 91, 92, 181, 255]] * 3)
    raw, out = tmp_path / "raw", tmp_path / "data"
    _coco_raw(raw, values)
    assert _prepare("coco_stuff", raw, out, "--allow-subset") == 0
    assert "raw ids [11] outside COCO-Stuff's 171 classes" in capsys.readouterr().err
    assert _prepare("coco_object", raw, out, "--allow-subset") == 0
    ann = out / "coco_stuff164k/annotations/val2017"
    assert _array(ann / "000000000139_labelTrainIds.png")[0].tolist() == [0, 11, 79, 80, 81, 170, 255]
    assert _array(ann / "000000000139_instanceTrainIds.png")[0].tolist() == [1, 11, 80, 0, 0, 0, 0]
    stuff = BENCHMARKS.get("coco_stuff")
    assert stuff.classes[80] == "banner" and stuff.classes[170] == "wood"
    assert BENCHMARKS.get("coco_object").classes[80] == "toothbrush"


@pytest.mark.parametrize("order", [("coco_object", "coco_stuff"), ("coco_stuff", "coco_object")])
def test_coco_synthetic_download_either_order_in_place(tmp_path: Path, order: tuple[str, str]) -> None:
    """Both converters in the raw folder itself, in either order (the mmseg-order pitfall)."""
    raw = tmp_path / "coco_stuff164k"  # mmseg's docs unpack the zips here, into images/ and annotations/
    BENCHMARKS.get("coco_stuff").layout.write_synthetic_raw(raw, 171, 3)
    (raw / "images").mkdir()
    (raw / "val2017").rename(raw / "images/val2017")
    (raw / "train2017").rename(raw / "images/train2017")
    (raw / "stuffthingmaps_trainval2017").rename(raw / "annotations")
    for name in order:
        assert _prepare(name, raw, tmp_path, "--allow-subset") == 0
        assert _prepare(name, tmp_path, tmp_path, "--allow-subset") == 0  # --raw = --out = data root
    stuff_lut = np.array([_stuff_train_id(v) for v in range(256)])
    object_lut = np.array([_object_id(v) for v in range(256)])
    for split in ("val2017", "train2017"):
        maps = sorted(p for p in (raw / "annotations" / split).glob("*.png") if "TrainIds" not in p.name)
        assert maps
        for src in maps:
            out = tmp_path / "coco_stuff164k/annotations" / split
            assert np.array_equal(_array(out / f"{src.stem}_labelTrainIds.png"), stuff_lut[_array(src)])
            assert np.array_equal(_array(out / f"{src.stem}_instanceTrainIds.png"), object_lut[_array(src)])


def test_coco_parallel_conversion(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "data"
    BENCHMARKS.get("coco_stuff").layout.write_synthetic_raw(raw, 171, 8)
    assert (
        main(
            [
                "data",
                "prepare",
                "coco_stuff",
                "--raw",
                str(raw),
                "--out",
                str(out),
                "--workers",
                "2",
                "--allow-subset",
            ]
        )
        == 0
    )
    stuff_lut = np.array([_stuff_train_id(v) for v in range(256)])
    for src in (raw / "stuffthingmaps_trainval2017/val2017").glob("*.png"):
        got = _array(out / "coco_stuff164k/annotations/val2017" / f"{src.stem}_labelTrainIds.png")
        assert np.array_equal(got, stuff_lut[_array(src)])


# -- Cityscapes -----------------------------------------------------------------------------------
def _polygons(objects: list[dict]) -> dict:
    return {"imgHeight": 20, "imgWidth": 30, "objects": objects}


def _rect(x0: int, y0: int, x1: int, y1: int) -> list[list[int]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_cityscapes_rasterises_like_json2labelimg(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "data"
    objects = [
        {"label": "road", "polygon": _rect(0, 10, 29, 19)},
        {"label": "sky", "polygon": _rect(0, 0, 29, 9)},
        {"label": "cargroup", "polygon": _rect(2, 12, 8, 17)},  # -> car (13)
        {"label": "license plate", "polygon": _rect(4, 14, 6, 15)},  # id -1: never drawn
        {"label": "person", "polygon": _rect(20, 2, 25, 18), "deleted": 1},  # skipped
        {"label": "ego vehicle", "polygon": _rect(10, 16, 29, 19)},  # void: paints 255
        {"label": "traffic sign", "polygon": [[15, 1], [19, 1], [17, 5]]},
    ]
    gt = raw / "gtFine/val/lindau"
    gt.mkdir(parents=True)
    (gt / "lindau_000000_000019_gtFine_polygons.json").write_text(json.dumps(_polygons(objects)))
    img = raw / "leftImg8bit/val/lindau"
    img.mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(img / "lindau_000000_000019_leftImg8bit.png")
    assert _prepare("cityscapes", raw, out, "--allow-subset") == 0
    label = _array(out / "cityscapes/gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png")
    assert label.shape == (20, 30)
    assert label[12, 20] == 0  # road
    assert label[5, 2] == 10  # sky
    assert label[14, 5] == 13 and label[12, 2] == 13 and label[17, 8] == 13  # car, under the plate too
    assert label[5, 22] == 10  # the deleted person left sky
    assert label[18, 20] == 255 and label[16, 10] == 255  # ego vehicle
    assert label[2, 17] == 7  # traffic sign
    sample = BENCHMARKS.get("cityscapes").open(out)[0]
    assert sample.id == "lindau/lindau_000000_000019" and sample.label[14, 5] == 13


def test_cityscapes_unknown_label_fails_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = tmp_path / "raw/gtFine/val/lindau"
    gt.mkdir(parents=True)
    polygons = _polygons([{"label": "unicorn", "polygon": _rect(0, 0, 5, 5)}])
    (gt / "lindau_000000_000000_gtFine_polygons.json").write_text(json.dumps(polygons))
    img = tmp_path / "raw/leftImg8bit/val/lindau"
    img.mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(img / "lindau_000000_000000_leftImg8bit.png")
    assert _prepare("cityscapes", tmp_path / "raw", tmp_path / "data") == 2
    err = capsys.readouterr().err
    assert "lindau_000000_000000_gtFine_polygons.json: unknown Cityscapes label 'unicorn'" in err


def test_cityscapes_synthetic_download(tmp_path: Path) -> None:
    from textseg.benchmarks.cityscapes import rasterise

    raw = out = tmp_path  # in place: the zips' contents already in <data root>/cityscapes
    BENCHMARKS.get("cityscapes").layout.write_synthetic_raw(tmp_path / "cityscapes", 19, 3)
    assert _prepare("cityscapes", raw, out, "--allow-subset") == 0
    samples = BENCHMARKS.get("cityscapes").samples(out)
    assert [s.id.split("/")[0] for s in samples] == ["frankfurt", "lindau", "munster"]
    for sample in samples:
        polygons = json.loads(next(raw.rglob(f"{Path(sample.id).name}_gtFine_polygons.json")).read_text())
        assert np.array_equal(_array(sample.label), rasterise(polygons))
        assert set(np.unique(_array(sample.label))) <= {*range(19), 255}


# -- ADE20K ---------------------------------------------------------------------------------------
def test_ade_prepares_from_the_zip_as_distributed(tmp_path: Path) -> None:
    tree, raw, out = tmp_path / "tree", tmp_path / "raw", tmp_path / "data"
    BENCHMARKS.get("ade20k").layout.write_synthetic_raw(tree, 150, 3)
    raw.mkdir()
    with zipfile.ZipFile(raw / "ADEChallengeData2016.zip", "w") as archive:
        for path in sorted(tree.rglob("*")):
            archive.write(path, path.relative_to(tree))
    assert _prepare("ade20k", raw, out, "--allow-subset") == 0
    base = out / "ade/ADEChallengeData2016"
    for src in (tree / "ADEChallengeData2016/annotations/validation").glob("*.png"):
        assert np.array_equal(_array(base / "annotations/validation" / src.name), _array(src))
    assert (base / "objectInfo150.txt").read_text() == (
        tree / "ADEChallengeData2016/objectInfo150.txt"
    ).read_text()
    assert len(list((base / "images/training").glob("*.jpg"))) == 2
    assert [s.id for s in BENCHMARKS.get("ade20k").samples(out)] == [f"ADE_val_{k:08d}" for k in (1, 2, 3)]


# -- archives lying in the downloads folder -------------------------------------------------------
def test_prepare_unpacks_official_archives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tarfile

    tree, raw, out = tmp_path / "tree", tmp_path / "raw", tmp_path / "data"
    BENCHMARKS.get("voc21").layout.write_synthetic_raw(tree, 21, 2)
    BENCHMARKS.get("coco_stuff").layout.write_synthetic_raw(tree, 171, 2)
    raw.mkdir()
    with tarfile.open(raw / "VOCtrainval_11-May-2012.tar", "w") as handle:
        handle.add(tree / "VOCdevkit", "VOCdevkit")
    with zipfile.ZipFile(raw / "val2017.zip", "w") as handle:
        for path in sorted((tree / "val2017").iterdir()):
            handle.write(path, f"val2017/{path.name}")
    maps = tree / "stuffthingmaps_trainval2017"
    with zipfile.ZipFile(raw / "stuffthingmaps_trainval2017.zip", "w") as handle:
        for path in sorted(maps.rglob("*.png")):
            handle.write(path, path.relative_to(maps))
    assert _prepare("voc21", raw, out, "--allow-subset") == 0
    assert (raw / ".VOCtrainval_11-May-2012.tar.extracted").is_file()
    assert _prepare("coco_stuff", raw, out, "--allow-subset") == 0
    unpacked = raw / "stuffthingmaps_trainval2017"
    assert len(list((unpacked / "val2017").glob("*.png"))) == 2 and not (unpacked / "train2017").exists()
    assert len(BENCHMARKS.get("coco_stuff").samples(out)) == 2

    BENCHMARKS.get("cityscapes").layout.write_synthetic_raw(tree, 19, 2)
    for package in ("gtFine", "leftImg8bit"):
        with zipfile.ZipFile(raw / f"{package}_trainvaltest.zip", "w") as handle:
            handle.writestr("license.txt", "")
            for path in sorted((tree / package).rglob("*.*")):
                handle.write(path, path.relative_to(tree))
    assert _prepare("cityscapes", raw, out, "--allow-subset") == 0
    assert len(BENCHMARKS.get("cityscapes").samples(out)) == 2 and not (raw / "license.txt").exists()

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    with zipfile.ZipFile(wrong / "stuffthingmaps_trainval2017.zip", "w") as handle:
        handle.writestr("train2017/000000000009.png", b"")
    assert _prepare("coco_stuff", wrong, out) == 2
    err = capsys.readouterr().err
    assert "stuffthingmaps_trainval2017.zip has no members under a 'val2017' folder" in err
