"""Every shipped trainable method end to end: ``textseg train`` on img2dataset shards (with periodic
evaluation through the harness), then the ``textseg bench`` command that ``textseg train`` prints for
its last checkpoint (only the benchmark and where the data and records go are filled in)."""

from __future__ import annotations

import csv
import shlex
from pathlib import Path

import pytest

from textseg.cli import main
from textseg.evaluation.records import read_record
from textseg.registry import BENCHMARKS
from textseg.testing.image_text import write_shards
from textseg.training.checkpoint import list_checkpoints

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("methods-train")
    write_shards(root / "shards", 2, 8, image_size=64)
    voc = BENCHMARKS.get("voc21")
    voc.write_synthetic(root / "data", 2, seed=5)
    return {"shards": root / "shards", "data": root / "data"}


@pytest.mark.parametrize(
    ("method", "steps"),
    [("tcl", 3), ("code", 3), ("vilseg", 2), ("groupvit", 2), ("clipdinoiser", 2), ("talk2dino", 2)],
)
def test_train_then_bench_the_checkpoint(
    method: str, steps: int, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    train = ["train", "--method", method, "--preset", "tiny", "--data", str(inputs["shards"])]
    train += ["--steps", str(steps), "--batch-size", "4", "--output", str(run)]
    train += ["--set", "train.num_workers=0", "--set", f"train.eval_every={steps}"]
    train += ["--set", "train.eval_benchmarks=voc21", "--set", f"train.eval_data_root={inputs['data']}"]
    assert main(train) == 0
    checkpoints = list_checkpoints(run)
    assert checkpoints[-1][0] == steps
    with open(run / "metrics.csv", newline="") as handle:
        logged = {(int(row["step"]), row["name"]) for row in csv.DictReader(handle)}
    assert (steps, "train/loss") in logged and (steps, "eval/voc21/mIoU") in logged

    printed = capsys.readouterr().out
    (command,) = [
        line.removeprefix("score it: ") for line in printed.splitlines() if line.startswith("score it: ")
    ]
    program, *bench = shlex.split(command)  # the run folder restores the method, preset and settings
    assert program == "textseg" and bench[:3] == ["bench", "--weights", str(run)]
    out = tmp_path / "records"
    assert main([*bench, "--output", str(out), "--num-workers", "0"]) == 0
    (record_path,) = out.glob("*.json")
    record = read_record(record_path)
    assert (record.method, record.preset, record.benchmark) == (method, "tiny", "voc21")
    assert record.weights is not None and record.weights["path"] == str(
        checkpoints[-1][1] / "weights.safetensors"
    )
    assert record.num_images == 2
