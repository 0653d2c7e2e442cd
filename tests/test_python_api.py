"""A trained checkpoint is a model: `--weights RUN` restores it, offline, with only the commands textseg
prints; and the Python API (`textseg.load / predict / evaluate`) equals its command-line twin."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import textseg
from textseg.cli import main
from textseg.errors import ConfigError
from textseg.evaluation.records import read_record
from textseg.registry import BENCHMARKS
from textseg.testing.image_text import write_shards
from textseg.testing.tiny_clip import ensure_tiny_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny TCL trained for 2 steps with non-default settings (which the run must remember)."""
    root = tmp_path_factory.mktemp("api")
    write_shards(root / "shards", 1, 8, image_size=64)
    BENCHMARKS.get("voc21").write_synthetic(root / "data", 2, seed=3)
    image = root / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(image)
    run = root / "run"
    argv = ["train", "--method", "tcl", "--preset", "tiny", "--data", str(root / "shards"), "--steps", "2"]
    argv += ["--batch-size", "4", "--output", str(run), "--set", f"clip={ensure_tiny_clip()}"]
    argv += ["--set", "pamr_iterations=3", "--set", "kp_w=0.5", "--set", "train.num_workers=0"]
    assert main(argv) == 0
    return {"run": run, "data": root / "data", "image": image, "root": root}


def test_bench_with_the_run_folder_alone_scores_the_trained_model(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "bench",
        "--weights",
        str(trained["run"]),
        "--dataset",
        "voc21",
        "--data-root",
        str(trained["data"]),
    ]
    assert main([*argv, "--output", str(tmp_path), "--num-workers", "0"]) == 0
    assert "tcl, preset tiny, with the settings of" in capsys.readouterr().err
    (record,) = [read_record(p) for p in tmp_path.glob("*.json")]
    assert (record.method, record.preset) == ("tcl", "tiny")
    assert record.config["pamr_iterations"] == 3 and record.config["kp_w"] == 0.5
    assert record.config["clip"] == str(ensure_tiny_clip())
    assert record.weights["path"] == str(trained["run"] / "checkpoints/step-00000002/weights.safetensors")
    # a --set still wins and is recorded
    assert main([*argv, "--output", str(tmp_path / "set"), "--num-workers", "0", "--set", "kp_w=0.2"]) == 0
    (changed,) = [read_record(p) for p in (tmp_path / "set").glob("*.json")]
    assert changed.config["kp_w"] == 0.2 and changed.overrides["kp_w"] == "0.2"
    # a method or preset that contradicts the run is an error naming both
    assert main([*argv, "--method", "code"]) == 2
    assert "--method code, but --weights" in (err := capsys.readouterr().err) and "trained as tcl" in err
    assert main([*argv, "--preset", "paper"]) == 2
    assert "--preset paper, but --weights" in capsys.readouterr().err


def test_the_printed_score_command_works_as_printed(
    trained: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained["root"] / "printed"
    argv = [
        "train",
        "--method",
        "tcl",
        "--preset",
        "tiny",
        "--data",
        str(trained["root"] / "shards"),
        "--steps",
        "1",
    ]
    argv += ["--batch-size", "4", "--output", str(run), "--set", f"clip={ensure_tiny_clip()}"]
    argv += ["--set", "train.num_workers=0", "--set", "train.eval_benchmarks=voc21"]
    argv += ["--set", f"train.eval_data_root={trained['data']}"]
    assert main(argv) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("score it: ")]
    words = shlex.split(line.removeprefix("score it: "))
    assert words[:2] == ["textseg", "bench"]
    assert main([*words[1:], "--output", str(run / "records"), "--num-workers", "0"]) == 0
    (record,) = [read_record(p) for p in (run / "records").glob("*.json")]
    assert record.method == "tcl" and record.weights["path"].startswith(str(run))


def test_load_evaluate_and_predict_equal_their_commands(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    method = textseg.load(None, weights=str(trained["run"]))
    result = textseg.evaluate(
        method, "voc21", data_root=trained["data"], num_workers=0, output=tmp_path / "api", progress=False
    )
    argv = [
        "bench",
        "--weights",
        str(trained["run"]),
        "--dataset",
        "voc21",
        "--data-root",
        str(trained["data"]),
    ]
    assert main([*argv, "--output", str(tmp_path / "cli"), "--num-workers", "0"]) == 0
    (cli,) = [read_record(p) for p in (tmp_path / "cli").glob("*.json")]
    assert result.metrics == cli.metrics and result.record is not None
    api = read_record(result.record)
    assert (api.config, api.overrides, api.weights) == (cli.config, cli.overrides, cli.weights)

    labels, scores = textseg.predict(method, trained["image"], "cat, dog|puppy, grass")
    assert labels.shape == (70, 90) and scores.shape == (3, 70, 90)
    out = tmp_path / "labels.png"
    argv = ["predict", "--weights", str(trained["run"]), "--image", str(trained["image"])]
    assert (
        main(
            [
                *argv,
                "--classes",
                "cat, dog|puppy, grass",
                "--labels",
                str(out),
                "--out",
                str(tmp_path / "o.png"),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.array(Image.open(out)), labels)


def test_inference_settings_change_on_a_built_method(trained: dict[str, Path]) -> None:
    """Comparing PAMR / kp variants of one checkpoint: reconfigure equals building with the setting."""
    method = textseg.load(None, weights=str(trained["run"]))
    image = trained["image"]
    with_pamr = textseg.predict(method, image, "cat, dog")[1]
    method.reconfigure(pamr=False, kp_w=0.0)
    without = textseg.predict(method, image, "cat, dog")[1]
    rebuilt = textseg.load(None, weights=str(trained["run"]), pamr=False, kp_w=0.0)
    np.testing.assert_array_equal(without, textseg.predict(rebuilt, image, "cat, dog")[1])
    assert not np.allclose(with_pamr, without)
    with pytest.raises(ConfigError, match="image_size changes the model"):
        method.reconfigure(image_size=32)
    with pytest.raises(ConfigError, match="bg_thresh must be in"):
        method.reconfigure(bg_thresh=2.0)
    assert isinstance(method, torch.nn.Module) and not method.training
