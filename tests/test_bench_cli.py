"""``textseg bench`` end to end on the test-only ``toy`` benchmarks with the test-only ``dummy`` method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from textseg.cli import main
from textseg.evaluation.metrics import compute_metrics
from textseg.evaluation.records import read_record
from textseg.io import file_digest

NUM_IMAGES = 5  # odd, so two processes get unequal shares


@pytest.fixture
def bench_inputs(toy_plugin_env: Path, tmp_path: Path) -> dict[str, Path]:
    """Synthetic toy data for every toy benchmark, and seeded dummy weights."""
    from textseg.registry import BENCHMARKS, METHODS
    from textseg.weights import save_weights

    root = tmp_path / "data"
    for name in ("toy", "toy_bg"):
        spec = BENCHMARKS.get(name)
        spec.layout.write_synthetic(root, spec.num_classes, n=NUM_IMAGES, seed=7)
    torch.manual_seed(0)
    weights = save_weights(METHODS.get("dummy").create("tiny"), tmp_path / "dummy.safetensors")
    return {"root": root, "weights": weights, "out": tmp_path / "records"}


def _bench(inputs: dict[str, Path], *extra: str, out: Path | None = None) -> list[str]:
    return [
        "bench",
        "--method",
        "dummy",
        "--data-root",
        str(inputs["root"]),
        "--weights",
        str(inputs["weights"]),
        "--output",
        str(out or inputs["out"]),
        "--num-workers",
        "0",
        *extra,
    ]


def _records(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def test_bench_writes_valid_records_and_prints_tables(
    bench_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from textseg.registry import BENCHMARKS

    args = _bench(bench_inputs, "--dataset", "toy", "toy_bg", "--protocol", "toy", "--save-confusion")
    assert main([*args, "--set", "bg_thresh=0.3"]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "circle" in out and "toy_bg" in out
    paths = _records(bench_inputs["out"])
    assert len(paths) == 2
    for path in paths:
        record = read_record(path)
        benchmark = BENCHMARKS.get(record.benchmark)
        assert record.method == "dummy" and record.preset == "paper"
        assert record.overrides == {"bg_thresh": "0.3"} and record.config["bg_thresh"] == 0.3
        assert record.weights is not None
        assert record.weights["sha256"] == file_digest(bench_inputs["weights"])
        assert record.protocol == "toy" and record.protocol_settings["crop"] == 32
        assert record.num_images == NUM_IMAGES and record.limit is None and record.num_processes == 1
        assert record.benchmark_version == benchmark.version
        assert list(record.per_class_iou) == list(benchmark.classes)
        confusion = np.load(path.with_suffix(".confusion.npy"))
        source = benchmark.open(bench_inputs["root"])
        scored = sum(int((source[i].label != 255).sum()) for i in range(len(source)))
        assert confusion.shape == (benchmark.num_classes,) * 2 and confusion.sum() == scored
        assert record.metrics["mIoU"] == pytest.approx(compute_metrics(confusion).mIoU)
        assert str(path) in out


def test_limit_synonyms_and_records_are_never_overwritten(bench_inputs: dict[str, Path]) -> None:
    args = _bench(bench_inputs, "--dataset", "toy", "--limit", "2", "--synonyms", "alt")  # protocol: tcl
    assert main(args) == 0
    (first,) = _records(bench_inputs["out"])
    before = first.read_bytes()
    assert main(args) == 0
    paths = _records(bench_inputs["out"])
    assert len(paths) == 2 and first.read_bytes() == before
    for path in paths:
        record = read_record(path)
        assert record.limit == 2 and record.num_images == 2 and record.synonyms == "alt"
        assert record.protocol == "tcl" and record.protocol_settings["short_side"] == 448


def test_profile_writes_a_trace_with_the_harness_steps(
    bench_inputs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    trace = bench_inputs["out"] / "trace.json"
    args = _bench(bench_inputs, "--dataset", "toy", "--protocol", "toy", "--limit", "2", "--max-windows", "3")
    assert main([*args, "--profile", str(trace)]) == 0
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    assert {"textseg.segment", "textseg.labels"} <= names
    assert f"profile trace: {trace}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "dumy", "--dataset", "toy"], "unknown method 'dumy'. Did you mean 'dummy'?"),
        (["--method", "dummy", "--dataset", "tyo"], "unknown benchmark 'tyo'. Did you mean 'toy'"),
        (["--method", "dummy", "--dataset", "toy", "--protocol", "tlc"], "Did you mean 'tcl'?"),
        (["--method", "dummy", "--dataset", "toy", "--set", "bg_tresh=1"], "Did you mean bg_thresh?"),
        (["--method", "dummy", "--dataset", "toy", "--limit", "0"], "--limit must be at least 1"),
        (["--method", "dummy", "--dataset", "toy", "--max-windows", "0"], "--max-windows must be at least 1"),
        (
            ["--method", "dummy", "--dataset", "toy", "toy_bg", "--synonyms", "alt"],
            "no synonym vocabulary 'alt'",
        ),
    ],
)
def test_user_errors_are_messages(
    toy_plugin_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_data_says_where(
    toy_plugin_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--method", "dummy", "--dataset", "toy", "--data-root", str(tmp_path)]) == 2
    assert str(tmp_path / "toy" / "images") in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_give_the_single_process_confusion_matrix(bench_inputs: dict[str, Path]) -> None:
    common = ("--dataset", "toy_bg", "--protocol", "toy", "--save-confusion")
    assert main(_bench(bench_inputs, *common, out=bench_inputs["out"] / "one")) == 0
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "textseg",
        *_bench(bench_inputs, *common, out=bench_inputs["out"] / "two"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (one,) = _records(bench_inputs["out"] / "one")
    (two,) = _records(bench_inputs["out"] / "two")  # only the main process writes
    assert json.loads(two.read_text())["num_processes"] == 2
    assert read_record(two).num_images == NUM_IMAGES
    single = np.load(one.with_suffix(".confusion.npy"))
    double = np.load(two.with_suffix(".confusion.npy"))
    assert single.sum() > 0
    np.testing.assert_array_equal(double, single)
