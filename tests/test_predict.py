"""``textseg predict`` writes an overlay with a legend and a raw label map that match each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from textseg.cli import main
from textseg.commands.predict import parse_classes
from textseg.overlay import blend, class_colours, voc_colour

GREY = (128, 128, 128)


@pytest.fixture(scope="module")
def grey_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("predict") / "photo.png"
    Image.new("RGB", (120, 90), GREY).save(path)
    return path


@pytest.mark.parametrize("background", [True, False])
def test_overlay_has_one_colour_per_predicted_class_and_a_legend(
    grey_image: Path, tmp_path: Path, background: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    out, labels_path = tmp_path / "overlay.png", tmp_path / "labels.png"
    argv = ["predict", "--method", "maskclip", "--preset", "tiny", "--image", str(grey_image)]
    argv += ["--classes", "cat, dog|puppy, grass", "--out", str(out), "--labels", str(labels_path)]
    argv += [] if background else ["--no-background"]
    assert main(argv) == 0
    assert "overlay:" in capsys.readouterr().out

    with Image.open(labels_path) as raw:
        assert raw.mode == "P" and raw.size == (120, 90)
        names = json.loads(raw.text["classes"])
        labels = np.asarray(raw)
    assert names == (["background"] if background else []) + ["cat", "dog", "grass"]
    predicted = sorted(np.unique(labels).tolist())
    assert predicted and max(predicted) < len(names)
    colours = class_colours(len(names), background)

    with Image.open(out) as picture:
        overlay = np.asarray(picture.convert("RGB"))
    assert overlay.shape[0] >= 90 and overlay.shape[1] > 120  # the image, plus a legend on its right
    region, legend = overlay[:90, :120], overlay[:, 120:]
    # the image part: exactly one colour per predicted class, the blend of the grey with its colour
    grey = np.full((90, 120, 3), GREY, dtype=np.uint8)
    assert np.array_equal(region, blend(grey, labels, colours))
    assert len(np.unique(region.reshape(-1, 3), axis=0)) == len(predicted)
    # the legend: a solid swatch in the colour of every predicted class and of no other, plus text
    for index, colour in enumerate(colours):
        assert _has_swatch(legend, colour) == (index in predicted), names[index]
    text_area = legend[:, _last_swatch_column(legend, [colours[i] for i in predicted]) + 2 :]
    assert (text_area < 200).any(), "the legend holds no text"


def _has_swatch(legend: np.ndarray, colour: tuple[int, int, int], side: int = 8) -> bool:
    """A solid ``side`` x ``side`` square of ``colour`` (text glyphs, also black, have none)."""
    solid = (legend == colour).all(axis=-1).astype(np.int32)
    windows = np.lib.stride_tricks.sliding_window_view(solid, (side, side))
    return bool((windows.sum(axis=(-2, -1)) == side * side).any())


def _last_swatch_column(legend: np.ndarray, swatches: list[tuple[int, int, int]]) -> int:
    hits = np.zeros(legend.shape[:2], dtype=bool)
    for colour in swatches:
        hits |= (legend == colour).all(axis=-1)
    return int(np.flatnonzero(hits.any(axis=0)).max())


def test_classes_and_synonyms_parse() -> None:
    assert parse_classes("cat, dog|puppy , grass,") == [("cat",), ("dog", "puppy"), ("grass",)]


def test_user_errors_are_messages(
    grey_image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["predict", "--method", "maskclip", "--preset", "tiny"]
    assert main([*base, "--image", str(grey_image), "--classes", " , "]) == 2
    assert "names no class" in capsys.readouterr().err
    bad = tmp_path / "not-an-image.jpg"
    bad.write_text("hello")
    assert main([*base, "--image", str(bad), "--classes", "cat"]) == 2
    assert f"--image {bad} cannot be read" in capsys.readouterr().err


def test_voc_palette() -> None:
    assert [voc_colour(i) for i in range(4)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert voc_colour(255) == (224, 224, 192)
