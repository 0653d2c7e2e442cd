"""MESS benchmarks and the ``mess`` suite: class lists, layouts, and every preparation checked against
label maps worked out by hand from MESS's ``prepare_*.py`` rules on tiny raw samples."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from textseg.cli import main
from textseg.registry import BENCHMARKS, SUITES

#: benchmark: (classes, MESS's expected_dataset_length, MESS domain)
FACTS = {
    "mess_atlantis": (56, 1295, "General"),
    "mess_isprs_potsdam": (6, 504, "Earth Monitoring"),
    "mess_kvasir_instrument": (2, 118, "Medical Sciences"),
    "mess_chase_db1": (2, 20, "Medical Sciences"),
    "mess_corrosion_cs": (4, 44, "Engineering"),
    "mess_deepcrack": (2, 237, "Engineering"),
    "mess_zerowaste": (5, 929, "Engineering"),
    "mess_cwfid": (3, 21, "Agriculture and Biology"),
}


def _array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image)


def _prepare(name: str, raw: Path, out: Path) -> int:
    return main(
        ["data", "prepare", name, "--raw", str(raw), "--out", str(out), "--workers", "1", "--allow-subset"]
    )


def _save(path: Path, array: np.ndarray) -> None:
    """An image file of ``array`` (a bool array gives a 1-bit image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _label(name: str, root: Path, index: int = 0) -> np.ndarray:
    return BENCHMARKS.get(name).open(root)[index].label


@pytest.mark.parametrize("name", FACTS)
def test_spec_facts(name: str) -> None:
    spec = BENCHMARKS.get(name)
    classes, size, _ = FACTS[name]
    assert (spec.num_classes, spec.split_size, spec.ignore_index) == (classes, size, 255)
    assert not spec.background and not spec.reduce_zero_label and spec.synonyms == {}
    assert BENCHMARKS.entry(name).builtin


def test_class_names_are_mess_adapted_ones() -> None:
    get = BENCHMARKS.get
    assert get("mess_isprs_potsdam").classes == ("road", "building", "grass", "tree", "car", "others")
    assert get("mess_deepcrack").classes == ("concrete or asphalt", "crack")
    assert get("mess_kvasir_instrument").classes == ("others", "tool")
    assert get("mess_atlantis").classes[0] == "bicycle" and get("mess_atlantis").classes[55] == "wetland"
    assert get("mess_cwfid").classes == ("ground", "crop seedling", "weed")


def test_mess_suite_groups_by_domain() -> None:
    suite = SUITES.get("mess")
    assert sorted(suite.benchmarks) == sorted(FACTS) and SUITES.entry("mess").builtin
    for name, (_, _, domain) in FACTS.items():
        assert name in suite.groups[domain]
    assert sum(len(m) for m in suite.groups.values()) == len(FACTS)


@pytest.mark.parametrize("name", FACTS)
def test_synthetic_layout_loads(name: str, tmp_path: Path) -> None:
    spec = BENCHMARKS.get(name)
    assert main(["data", "synthetic", name, "--out", str(tmp_path), "-n", "3"]) == 0
    source = spec.open(tmp_path)
    assert len(source) == 3
    for sample in (source[i] for i in range(3)):
        assert sample.image.dtype == np.uint8 and sample.label.shape == sample.image.shape[:2]
        assert set(np.unique(sample.label).tolist()) <= {*range(spec.num_classes), 255}


@pytest.mark.parametrize("name", sorted(set(FACTS) - {"mess_isprs_potsdam"}))
def test_synthetic_download_prepares(name: str, tmp_path: Path) -> None:
    assert main(["data", "synthetic", name, "--raw", "--out", str(tmp_path / "raw"), "-n", "3"]) == 0
    assert _prepare(name, tmp_path / "raw", tmp_path / "data") == 0
    spec = BENCHMARKS.get(name)
    assert len(spec.samples(tmp_path / "data")) == 3
    assert np.unique(spec.open(tmp_path / "data")[0].label).max() < 256


# -- hand-made raw samples, one per preparation rule ------------------------------------------------
def test_deepcrack_divides_by_255_and_truncates(tmp_path: Path) -> None:
    raw = tmp_path / "raw/DeepCrack"
    _save(raw / "test_lab/7-1.png", np.array([[0, 1, 128, 254, 255]], np.uint8))
    _save(raw / "test_img/7-1.jpg", np.zeros((1, 5, 3), np.uint8))
    assert _prepare("mess_deepcrack", tmp_path / "raw", tmp_path / "data") == 0
    assert _label("mess_deepcrack", tmp_path / "data").tolist() == [[0, 0, 0, 0, 1]]


def test_kvasir_reads_the_red_channel_and_saves_images_as_png(tmp_path: Path) -> None:
    raw = tmp_path / "raw/kvasir-instrument"
    mask = np.zeros((2, 3, 3), np.uint8)
    mask[..., 0] = [[0, 200, 255], [255, 254, 0]]
    mask[..., 1] = 255  # other channels are not read
    _save(raw / "masks/ck01.png", mask)
    _save(raw / "images/ck01.jpg", np.full((2, 3, 3), 90, np.uint8))
    _save(raw / "images/ck02.jpg", np.zeros((2, 3, 3), np.uint8))  # a training image
    (raw / "test.txt").write_text("ck01\n")
    assert _prepare("mess_kvasir_instrument", tmp_path / "raw", tmp_path / "data") == 0
    sample = BENCHMARKS.get("mess_kvasir_instrument").open(tmp_path / "data")[0]
    assert sample.label.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert np.array_equal(sample.image, _array(raw / "images/ck01.jpg"))  # PNG: the decoded JPEG's pixels
    assert len(BENCHMARKS.get("mess_kvasir_instrument").samples(tmp_path / "data")) == 1


def test_chase_skips_the_first_eight_images_and_reads_1bit_masks(tmp_path: Path) -> None:
    raw = tmp_path / "raw/CHASEDB1"
    for k in range(9):
        stem = f"Image_{k // 2 + 1:02d}{'LR'[k % 2]}"
        _save(raw / f"{stem}.jpg", np.zeros((2, 2, 3), np.uint8))
        _save(raw / f"{stem}_1stHO.png", np.array([[k % 2, 1], [0, 0]], bool))
        _save(raw / f"{stem}_2ndHO.png", np.zeros((2, 2), bool))
    assert _prepare("mess_chase_db1", tmp_path / "raw", tmp_path / "data") == 0
    samples = BENCHMARKS.get("mess_chase_db1").samples(tmp_path / "data")
    assert [s.id for s in samples] == ["Image_05L"]  # the ninth by name
    assert _label("mess_chase_db1", tmp_path / "data").tolist() == [[0, 1], [0, 0]]


def test_corrosion_keeps_palette_indices(tmp_path: Path) -> None:
    raw = tmp_path / "raw/Corrosion Condition State Classification/original/Test"
    mask = Image.fromarray(np.array([[0, 3], [2, 1]], np.uint8))
    mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])  # now a palette image of those indices
    (raw / "masks").mkdir(parents=True)
    mask.save(raw / "masks/a.png")
    _save(raw / "images/a.jpeg", np.zeros((2, 2, 3), np.uint8))
    assert _prepare("mess_corrosion_cs", tmp_path / "raw", tmp_path / "data") == 0
    assert _label("mess_corrosion_cs", tmp_path / "data").tolist() == [[0, 3], [2, 1]]


def test_cwfid_maps_colours_and_keeps_red_of_others(tmp_path: Path) -> None:
    raw = tmp_path / "raw/cwfid"
    colours = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0], [128, 0, 0], [255, 255, 255]]], np.uint8)
    _save(raw / "annotations/001_annotation.png", colours)
    _save(raw / "annotations/002_annotation.png", colours)  # id 2 is a training image
    for i in ("001", "002"):
        _save(raw / f"images/{i}_image.png", np.zeros((1, 5, 3), np.uint8))
    assert _prepare("mess_cwfid", tmp_path / "raw", tmp_path / "data") == 0
    assert [s.id for s in BENCHMARKS.get("mess_cwfid").samples(tmp_path / "data")] == ["001"]
    # black 0, red 1, green 2; other colours keep their red value (255 is then ignored)
    assert _label("mess_cwfid", tmp_path / "data").tolist() == [[0, 1, 2, 128, 255]]


def test_atlantis_shifts_by_one_and_ignores_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "raw/atlantis"
    _save(raw / "masks/test/dam/42.png", np.array([[0, 1, 56]], np.uint8))
    _save(raw / "images/test/dam/42.jpg", np.zeros((1, 3, 3), np.uint8))
    assert _prepare("mess_atlantis", tmp_path / "raw", tmp_path / "data") == 0
    assert _label("mess_atlantis", tmp_path / "data").tolist() == [[255, 0, 55]]
    _save(raw / "masks/test/dam/43.png", np.array([[57]], np.uint8))
    _save(raw / "images/test/dam/43.jpg", np.zeros((1, 1, 3), np.uint8))
    assert _prepare("mess_atlantis", tmp_path / "raw", tmp_path / "data") == 2
    assert "values up to 57" in capsys.readouterr().err


def test_zerowaste_files_are_used_as_they_are(tmp_path: Path) -> None:
    base = tmp_path / "raw/zerowaste-f/splits_final_deblurred/test"
    _save(base / "sem_seg/01.PNG", np.array([[0, 4, 2]], np.uint8))
    _save(base / "data/01.PNG", np.zeros((1, 3, 3), np.uint8))
    assert _prepare("mess_zerowaste", tmp_path / "raw", tmp_path / "data") == 0
    assert _label("mess_zerowaste", tmp_path / "data").tolist() == [[0, 4, 2]]


def test_tiles_are_row_major_and_padded() -> None:
    from textseg.benchmarks.mess._common import tiles

    label = np.arange(30, dtype=np.uint8).reshape(5, 6)
    parts = tiles(label, 255, size=4)
    assert len(parts) == 4
    assert parts[0].tolist() == label[:4, :4].tolist()
    assert parts[1].tolist() == [[4, 5, 255, 255], [10, 11, 255, 255], [16, 17, 255, 255], [22, 23, 255, 255]]
    assert parts[2].tolist() == [[24, 25, 26, 27], *[[255] * 4] * 3]
    assert parts[3][0, :2].tolist() == [28, 29] and (parts[3][1:] == 255).all()
    image = tiles(np.full((5, 6, 3), 9, np.uint8), 0, size=4)
    assert image[3].shape == (4, 4, 3) and image[3][0, 0].tolist() == [9, 9, 9] and (image[3][1:] == 0).all()


def test_potsdam_binarises_maps_colours_and_tiles_from_the_zip(tmp_path: Path) -> None:
    from textseg.benchmarks.mess.earth import ISPRS_POTSDAM

    inner = tmp_path / "inner"
    # 5 x 6 label: graded white (impervious, 0), blue (building, 1), cyan 2, green 3, yellow 4, red 5, black
    label = np.array(
        [
            [(250, 240, 200), (10, 0, 255), (0, 130, 129), (0, 255, 0), (255, 255, 0), (255, 0, 0)],
            [(0, 0, 0), (255, 0, 255), (128, 128, 128), (129, 129, 129), (0, 0, 255), (0, 0, 255)],
        ]
        * 2
        + [[(0, 255, 0)] * 6],
        np.uint8,
    )
    _save(inner / "5_Labels_all/top_potsdam_2_13_label.tif", label)
    _save(inner / "3_Ortho_IRRG/3_Ortho_IRRG/top_potsdam_2_13_IRRG.tif", np.full((5, 6, 3), 7, np.uint8))
    raw = tmp_path / "raw"
    (raw / "Potsdam").mkdir(parents=True)
    with zipfile.ZipFile(raw / "Potsdam/3_Ortho_IRRG.zip", "w") as handle:
        handle.write(
            inner / "3_Ortho_IRRG/3_Ortho_IRRG/top_potsdam_2_13_IRRG.tif",
            "3_Ortho_IRRG/top_potsdam_2_13_IRRG.tif",
        )
    with zipfile.ZipFile(raw / "Potsdam/5_Labels_all.zip", "w") as handle:
        # nested one folder deeper than MESS unpacks it: found wherever it lies
        handle.write(
            inner / "5_Labels_all/top_potsdam_2_13_label.tif", "5_Labels_all/top_potsdam_2_13_label.tif"
        )
    with zipfile.ZipFile(raw / "Potsdam.zip", "w") as handle:
        for path in (raw / "Potsdam").iterdir():
            handle.write(path, f"Potsdam/{path.name}")
    for path in (raw / "Potsdam").iterdir():
        path.unlink()
    layout = dataclasses.replace(ISPRS_POTSDAM.layout, tile=4)
    layout.prepare(raw, tmp_path / "data")
    spec = dataclasses.replace(ISPRS_POTSDAM, layout=layout)
    samples = spec.samples(tmp_path / "data")
    assert [s.id for s in samples] == [f"top_potsdam_2_13_{k}" for k in range(4)]
    # black -> red bit 0; magenta -> red bit 255 (ignored); greys binarise to black (0) or white (0)
    classes = [[0, 1, 2, 3, 4, 5], [0, 255, 0, 0, 1, 1]] * 2 + [[3] * 6]
    expected = np.full((8, 8), 255)
    expected[:5, :6] = classes
    got = [spec.open(tmp_path / "data")[k].label for k in range(4)]
    assert np.array_equal(np.block([[got[0], got[1]], [got[2], got[3]]]), expected)
    image = spec.open(tmp_path / "data")[3].image
    assert image[0, :2].tolist() == [[7, 7, 7]] * 2 and (image[1:] == 0).all()


def test_potsdam_says_what_to_fetch_and_where_to_put_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["data", "download", "mess_isprs_potsdam", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no public download" in err and "isprs.org/education/benchmarks/UrbanSemLab" in err
    assert "Potsdam.zip" in err and "textseg data prepare mess_isprs_potsdam" in err
    (tmp_path / "raw").mkdir()
    assert _prepare("mess_isprs_potsdam", tmp_path / "raw", tmp_path / "data") == 2
    err = capsys.readouterr().err
    assert (
        "cannot find the IRRG tiles" in err
        and "top_potsdam_<test tile>_IRRG.tif" in err
        and "Potsdam.zip" in err
    )
