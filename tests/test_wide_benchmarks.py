"""ADE-847 and PASCAL Context-459: class lists, uint16 labels with ignore 65535, and preparation
checked against label maps worked out by hand from the official scripts' rules."""

from __future__ import annotations

import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from textseg.cli import main
from textseg.evaluation.metrics import ConfusionMatrix
from textseg.registry import BENCHMARKS

WIDE = {"ade847": (847, 2000), "context459": (459, 5104)}


def _array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def _prepare(name: str, raw: Path, out: Path, *extra: str) -> int:
    return main(["data", "prepare", name, "--raw", str(raw), "--out", str(out), "--workers", "1", *extra])


@pytest.mark.parametrize("name", WIDE)
def test_spec_facts(name: str) -> None:
    spec = BENCHMARKS.get(name)
    classes, size = WIDE[name]
    assert (spec.num_classes, spec.split_size, spec.ignore_index, spec.label_dtype) == (
        classes,
        size,
        65535,
        np.uint16,
    )
    assert not spec.background and not spec.reduce_zero_label and spec.synonyms == {}
    assert len(set(spec.classes)) == classes and all(c.strip() == c for c in spec.classes)
    assert BENCHMARKS.entry(name).builtin


def test_class_lists() -> None:
    ade = BENCHMARKS.get("ade847").classes
    assert (
        ade[:3] == ("wall", "building, edifice", "sky") and ade[846] == "adding machine, totalizer, totaliser"
    )
    from textseg.benchmarks.ade847 import object_ids

    ids = object_ids()
    assert (ids[0], ids[1], ids[846], len(set(ids.tolist()))) == (2978, 312, 3148, 847)
    # labels.txt order: the 59 Context classes sit where mmseg's 459-space ids put them (id = line + 1)
    from textseg.benchmarks.context import CONTEXT_IDS

    pc459 = BENCHMARKS.get("context459").classes
    assert [pc459[i - 1] for i in CONTEXT_IDS[1:]] == list(BENCHMARKS.get("context59").classes)
    assert pc459[2] == "airconditioner" and pc459[458] == "wool"


def test_sclip_family_protocols_fall_back_to_class_names() -> None:
    assert BENCHMARKS.get("ade847").protocol_synonyms("sclip") is None
    assert BENCHMARKS.get("voc21").protocol_synonyms("sclip") == "sclip"
    vocab = BENCHMARKS.get("ade847").vocabulary(("a photo of a {}.",))
    assert vocab.classes[1] == ("building", "edifice")  # one class, two names


def test_confusion_matrix_with_wide_labels() -> None:
    counts = ConfusionMatrix(num_classes=500, ignore_index=65535)
    label = torch.tensor([[499, 65535, 3], [3, 3, 300]], dtype=torch.int32)
    pred = torch.tensor([[499, 0, 3], [300, 3, 300]])
    counts.add(pred, label)
    matrix = counts.matrix
    assert matrix.shape == (500, 500) and matrix.sum() == 5  # the ignore pixel is nowhere
    assert (matrix[499, 499], matrix[3, 3], matrix[3, 300], matrix[300, 300]) == (1, 2, 1, 1)


# -- PASCAL Context-459 ---------------------------------------------------------------------------
def _context459_raw(raw: Path, maps: dict[str, np.ndarray], val: list[str] | None) -> None:
    from scipy.io import savemat

    jpegs = raw / "VOCdevkit/VOC2010/JPEGImages"
    jpegs.mkdir(parents=True)
    (raw / "trainval").mkdir()
    for i, label in maps.items():
        Image.new("RGB", label.shape[::-1]).save(jpegs / f"{i}.jpg")
        savemat(raw / "trainval" / f"{i}.mat", {"LabelMap": label.astype(np.uint16)})
    if val is not None:
        (raw / "pascalcontext_val.txt").write_text("\n".join(val))


def test_context459_is_labelmap_minus_one_with_0_wrapping_to_ignore(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "data"
    maps = {
        "2008_000002": np.array([[1, 2, 459], [0, 10, 1]]),
        "2008_000003": np.array([[300, 300], [0, 0]]),
        "2008_000005": np.array([[7]]),  # a train image: not in the val list
    }
    # 2008_000004 is listed but has no .mat: skipped, as the official scripts skip it
    _context459_raw(raw, maps, ["2008_000002", "2008_000003", "2008_000004"])
    assert _prepare("context459", raw, out, "--allow-subset") == 0
    labels = out / "VOCdevkit/VOC2010/annotations_detectron2/pc459_val"
    first = _array(labels / "2008_000002.tif")
    assert first.dtype == np.uint16 and first.tolist() == [[0, 1, 458], [65535, 9, 0]]
    assert _array(labels / "2008_000003.tif").tolist() == [[299, 299], [65535, 65535]]
    assert sorted(p.name for p in labels.iterdir()) == ["2008_000002.tif", "2008_000003.tif"]
    sample = BENCHMARKS.get("context459").open(out)[0]
    assert sample.id == "2008_000002" and sample.label.dtype == np.uint16
    assert sample.label.tolist() == [[0, 1, 458], [65535, 9, 0]]


def test_context459_takes_the_val_ids_from_the_json_without_the_list(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "data"
    _context459_raw(raw, {"2008_000002": np.ones((2, 2)), "2008_000003": np.ones((2, 2))}, None)
    images = [
        {"file_name": "2008_000003.jpg", "phase": "val"},
        {"file_name": "2008_000002.jpg", "phase": "train"},
    ]
    (raw / "trainval_merged.json").write_text(json.dumps({"images": images}))
    assert _prepare("context459", raw, out, "--allow-subset") == 0
    assert [s.id for s in BENCHMARKS.get("context459").samples(out)] == ["2008_000003"]


def test_context459_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _context459_raw(tmp_path / "raw", {"2008_000002": np.ones((2, 2))}, None)
    assert _prepare("context459", tmp_path / "raw", tmp_path / "data") == 2
    err = capsys.readouterr().err
    assert (
        "cannot find the val list (pascalcontext_val.txt" in err
        and "1BCbiOKtLvozjVnlTJX51koIveUZHCcUh" in err
    )


# -- ADE-847 --------------------------------------------------------------------------------------
def _seg(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ADE's *_seg.png encoding: R = 10 * (class // 256) (+ 0..9, dropped by int(R / 10)), G = class % 256."""
    r = (classes // 256) * 10 + rng.integers(0, 10, classes.shape)
    return np.stack([r, classes % 256, np.zeros_like(classes)], -1).astype(np.uint8)


def _ade_raw(
    raw: Path, stem: str, classes: np.ndarray, rng: np.random.Generator, split: str = "validation"
) -> None:
    folder = raw / f"ADE20K_2021_17_01/images/ADE/{split}/urban/street"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*classes.shape, 3), dtype=np.uint8)).save(folder / f"{stem}.jpg")
    Image.fromarray(_seg(classes, rng)).save(folder / f"{stem}_seg.png")


def test_ade847_maps_object_ids_to_train_ids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    raw, out = tmp_path / "raw", tmp_path / "data"
    # wall 2978 -> 0, building 312 -> 1, sky 2420 -> 2, adding machine 3148 -> 846;
    # 0 (unlabelled) and 5 (an object outside the 847) -> 65535
    classes = np.array([[2978, 312, 0], [3148, 5, 2420]])
    _ade_raw(raw, "ADE_val_00000001", classes, rng)
    _ade_raw(raw, "ADE_train_00000001", classes, rng, split="training")  # left out
    assert _prepare("ade847", raw, out, "--allow-subset") == 0
    base = out / "ADE20K_2021_17_01"
    label = _array(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert label.dtype == np.uint16 and label.tolist() == [[0, 1, 65535], [846, 65535, 2]]
    assert sorted(p.name for p in (base / "images_detectron2/validation").iterdir()) == [
        "ADE_val_00000001.jpg"
    ]
    sample = BENCHMARKS.get("ade847").open(out)[0]
    assert sample.label.tolist() == [[0, 1, 65535], [846, 65535, 2]] and sample.image.shape == (2, 3, 3)


def test_ade847_shrinks_short_sides_over_512_with_nearest_labels(tmp_path: Path) -> None:
    from textseg.benchmarks.ade847 import object_ids

    rng = np.random.default_rng(1)
    raw, out = tmp_path / "raw", tmp_path / "data"
    height, width = 600, 530  # -> short side 512, long side round(600 / 530 * 512) = 580
    ids = object_ids()
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    classes = ids[(rows * 7 + cols * 3) % 847]
    _ade_raw(raw, "ADE_val_00000001", classes, rng)
    assert _prepare("ade847", raw, out, "--allow-subset") == 0
    base = out / "ADE20K_2021_17_01"
    label = _array(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert label.shape == (580, 512)
    with Image.open(base / "images_detectron2/validation/ADE_val_00000001.jpg") as image:
        assert image.size == (512, 580) and image.format == "JPEG"
    # nearest neighbour: output row i reads source row floor(i * 600 / 580), column floor(j * 530 / 512)
    src_rows = [int(Fraction(i * height, 580)) for i in range(580)]
    src_cols = [int(Fraction(j * width, 512)) for j in range(512)]
    expected = ((np.array(src_rows)[:, None] * 7 + np.array(src_cols)[None, :] * 3) % 847).astype(np.uint16)
    assert np.array_equal(label, expected)


def test_ade847_has_no_download(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["data", "download", "ade847", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "needs a registration" in err and "ADE20K_2021_17_01.zip" in err


@pytest.mark.parametrize("name", WIDE)
def test_synthetic_download_prepares_into_the_synthetic_layout_format(name: str, tmp_path: Path) -> None:
    raw, out, layout = tmp_path / "raw", tmp_path / "data", tmp_path / "layout"
    assert main(["data", "synthetic", name, "--raw", "--out", str(raw), "-n", "3"]) == 0
    assert _prepare(name, raw, out, "--allow-subset") == 0
    assert main(["data", "synthetic", name, "--out", str(layout), "-n", "3"]) == 0
    spec = BENCHMARKS.get(name)
    for root in (out, layout):
        samples = [spec.open(root)[i] for i in range(3)]
        for s in samples:
            assert s.label.dtype == np.uint16 and s.label.shape == s.image.shape[:2]
            scored = s.label[s.label != 65535]
            assert scored.size and scored.max() < spec.num_classes


@pytest.fixture
def small_protocol() -> Iterator[str]:
    """The TCL protocol at 64 pixels, so 847-class score maps stay small on a CPU."""
    import dataclasses

    from textseg.evaluation.protocol import TCL
    from textseg.registry import PROTOCOLS

    PROTOCOLS.register("tcl64", dataclasses.replace(TCL, name="tcl64", short_side=64, crop=64, stride=32))
    yield "tcl64"
    PROTOCOLS.unregister("tcl64")


@pytest.mark.slow
def test_bench_tiny_maskclip_on_both_synthetic_layouts(small_protocol: str, tmp_path: Path) -> None:
    from textseg.evaluation.records import read_record

    for name in WIDE:
        assert main(["data", "synthetic", name, "--out", str(tmp_path / "data"), "-n", "2"]) == 0
    args = ["bench", "--method", "maskclip", "--preset", "tiny", "--protocol", small_protocol]
    args += ["--dataset", *WIDE, "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out")]
    assert main([*args, "--num-workers", "0"]) == 0
    records = [read_record(p) for p in sorted((tmp_path / "out").glob("*.json"))]
    assert sorted(r.benchmark for r in records) == sorted(WIDE)
    for record in records:
        assert record.num_images == 2 and len(record.per_class_iou) == WIDE[record.benchmark][0]
        assert 0 <= record.metrics["mIoU"] <= 100
