"""The shapes world: seeded scenes, their captions and labels, the ``shapes:`` training source and the
``shapes`` benchmark's on-disk layout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from textseg.cli import main
from textseg.data.shapes import (
    BACKGROUNDS,
    COLOUR_NAMES,
    COLOURS,
    EVAL_STREAM,
    SHAPES,
    TRAIN_STREAM,
    Shape,
    scene,
    shape_mask,
)
from textseg.data.sources import open_source
from textseg.data.spec import DataSpecError, parse_data_spec
from textseg.errors import DatasetNotFoundError
from textseg.registry import BENCHMARKS, PROTOCOLS


def test_scenes_are_a_pure_function_of_stream_seed_and_index() -> None:
    first, again = scene(TRAIN_STREAM, 3, 17), scene(TRAIN_STREAM, 3, 17)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.label, again.label)
    assert first.caption == again.caption
    held_out = scene(EVAL_STREAM, 3, 17)
    assert not np.array_equal(first.image, held_out.image)
    assert not np.array_equal(first.image, scene(TRAIN_STREAM, 4, 17).image)


@pytest.mark.parametrize("index", range(40))
def test_captions_name_only_what_the_labels_hold(index: int) -> None:
    drawn = scene(TRAIN_STREAM, 0, index, size=48)
    assert drawn.image.shape == (48, 48, 3) and drawn.image.dtype == np.uint8
    assert drawn.label.shape == (48, 48) and drawn.label.max() <= len(COLOUR_NAMES)
    present = {COLOUR_NAMES[v - 1] for v in np.unique(drawn.label) if v > 0}
    named = set(re.findall(r"\b(?:" + "|".join(COLOUR_NAMES) + r")\b", drawn.caption))
    assert named and named <= present, drawn.caption
    kinds = set(re.findall("|".join(SHAPES), drawn.caption))
    assert kinds and kinds <= {s.kind for s in drawn.shapes}, drawn.caption
    tones = set(re.findall(r"(\w+) background", drawn.caption))
    assert tones <= set(BACKGROUNDS), drawn.caption
    # shape pixels are painted in their label's colour (plus per-shape jitter and pixel noise)
    palette = np.array([COLOURS[name] for name in COLOUR_NAMES])
    foreground = drawn.label > 0
    distance = np.abs(drawn.image[foreground].astype(int) - palette[drawn.label[foreground] - 1]).max(axis=-1)
    assert np.percentile(distance, 95) < 60


def test_shape_masks_cover_the_expected_area() -> None:
    """A circle of drawn radius 20 (scaled by 0.9: 18 px) covers about pi * 18.5^2 pixels (Pillow
    fills both end pixels of the bounding box, half a pixel more on each side)."""
    circle = shape_mask(Shape("circle", "red", 32.0, 32.0, 20.0), 64)
    assert abs(circle.sum() - np.pi * 18.5**2) / (np.pi * 18.5**2) < 0.02
    square = shape_mask(Shape("square", "red", 32.0, 32.0, 20.0), 64)
    side = 20.0 * 1.05 * np.sqrt(2)  # circumradius -> side of the square
    assert abs(square.sum() - side**2) / side**2 < 0.08


def test_the_training_source_generates_the_training_stream() -> None:
    (spec,) = parse_data_spec("shapes:?n=300&seed=2&size=32")
    source = open_source(spec)
    assert source.length == 300 and source.num_units == 2  # 256 scenes per unit
    records = list(source.scan(1, 40))
    assert len(records) == 300 - 256 - 40 and records[0].handle == 296
    raw = source.load(1, records[0].handle)
    expected = scene(TRAIN_STREAM, 2, 296, 32)
    assert raw.caption == expected.caption and np.array_equal(np.asarray(raw.image), expected.image)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shapes:?n=ten", "not a whole number"),
        ("shapes:?size=8", "at least 16"),
        ("shapes:?colour=1", "unknown"),
    ],
)
def test_bad_source_options_are_explained(text: str, message: str) -> None:
    with pytest.raises(DataSpecError, match=message):
        open_source(parse_data_spec(text)[0])


def test_the_benchmark_is_written_read_and_held_out(tmp_path: Path) -> None:
    assert main(["data", "synthetic", "shapes", "--out", str(tmp_path), "-n", "3", "--seed", "5"]) == 0
    benchmark = BENCHMARKS.get("shapes")
    assert benchmark.classes == ("background", *COLOUR_NAMES) and benchmark.background
    source = benchmark.open(tmp_path)
    assert len(source) == 3
    for index in range(3):
        sample = source[index]
        expected = scene(EVAL_STREAM, 5, index, 64)
        assert sample.id == f"5-{index:06d}"
        assert np.array_equal(sample.image, expected.image) and np.array_equal(sample.label, expected.label)
    protocol = PROTOCOLS.get("shapes")
    assert protocol.crop is None and protocol.short_side == 64


def test_a_missing_benchmark_says_how_to_write_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="textseg data synthetic shapes"):
        BENCHMARKS.get("shapes").open(tmp_path)


def test_clip_trains_on_the_world_and_exports_a_clip_other_methods_load(tmp_path: Path) -> None:
    """``textseg train --method clip`` changes the CLIP; each checkpoint's ``clip/`` folder holds exactly
    the trained weights, and ``--weights <checkpoint>`` scores them with another CLIP method."""
    import torch

    from textseg.clip import CLIPBackbone
    from textseg.clip.loading import resolve_clip_source
    from textseg.evaluation.records import read_record
    from textseg.quickstart import WORLD_CLIP
    from textseg.testing.tiny_clip import build_tiny_clip
    from textseg.training.checkpoint import list_checkpoints
    from textseg.weights import read_state_dict

    random_clip = build_tiny_clip(tmp_path / "random", **WORLD_CLIP)
    run = tmp_path / "run"
    train = ["train", "--method", "clip", "--preset", "tiny", "--data", "shapes:?n=64&size=64"]
    train += ["--steps", "2", "--batch-size", "8", "--output", str(run), "--set", f"clip={random_clip}"]
    assert main(train) == 0
    checkpoint = list_checkpoints(run)[-1][1]
    trained, _ = read_state_dict(checkpoint / "weights.safetensors")
    exported = CLIPBackbone.load(resolve_clip_source(str(checkpoint)), text_cache=False).state_dict()
    before = CLIPBackbone.load(str(random_clip), text_cache=False).state_dict()
    assert set(exported) == {key.removeprefix("clip.") for key in trained}
    for key, value in exported.items():
        assert torch.equal(value, trained[f"clip.{key}"]), key
    assert any(not torch.equal(before[key], value) for key, value in exported.items())

    assert main(["data", "synthetic", "shapes", "--out", str(tmp_path / "data"), "-n", "2"]) == 0
    bench = ["bench", "--method", "maskclip", "--dataset", "shapes", "--protocol", "shapes"]
    bench += [
        "--data-root",
        str(tmp_path / "data"),
        "--weights",
        str(checkpoint),
        "--output",
        str(tmp_path / "res"),
    ]
    assert main(bench) == 0
    (record,) = (tmp_path / "res").glob("*.json")
    assert read_record(record).num_images == 2
