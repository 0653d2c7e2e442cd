"""``textseg bench`` end to end on the test-only ``toy`` benchmarks with the test-only ``dummy`` method."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import NUM_IMAGES

from textseg.cli import main
from textseg.evaluation.metrics import compute_metrics
from textseg.evaluation.records import read_record
from textseg.io import file_digest


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


def _dummy_bench(root: Path, out: Path) -> list[str]:
    """``textseg bench`` of the test-only dummy method on ``root``, records to ``out``, no workers."""
    method = ["--method", "dummy", "--preset", "tiny", "--num-workers", "0"]
    return ["bench", *method, "--data-root", str(root), "--output", str(out)]


def test_an_incomplete_split_is_refused_unless_asked_and_then_labelled(
    plugin_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scanned layout (ADE20K, Cityscapes) with images missing: refused with the count and what is
    missing; scored with --allow-incomplete or --limit, and the record says complete: false."""
    from textseg.registry import BENCHMARKS

    root, out = tmp_path / "data", tmp_path / "records"
    for name in ("ade20k", "cityscapes"):
        BENCHMARKS.get(name).write_synthetic(root, 4, seed=1)
    for marker in root.rglob(".textseg-synthetic.json"):
        marker.unlink()  # now it looks like a real download with most images missing
    common = _dummy_bench(root, out)
    assert main([*common, "--dataset", "ade20k"]) == 2
    err = capsys.readouterr().err
    assert (
        "found 4 evaluation samples, but its split has 2000; missing: 1996 images, e.g. ADE_val_00000005"
        in err
    )
    assert "--allow-incomplete" in err and "Traceback" not in err
    assert main([*common, "--dataset", "cityscapes"]) == 2
    assert "missing: frankfurt 2 of 267, lindau 1 of 59, munster 1 of 174" in capsys.readouterr().err
    assert main([*common, "--dataset", "ade20k", "--allow-incomplete"]) == 0
    assert main([*common, "--dataset", "cityscapes", "--limit", "2"]) == 0
    records = [read_record(p) for p in sorted(out.glob("*.json"))]
    assert [(r.benchmark, r.complete, r.expected_images, r.synthetic) for r in records] == [
        ("ade20k", False, 2000, False),
        ("cityscapes", False, 500, False),
    ]


def test_synthetic_data_is_a_whole_synthetic_split(
    plugin_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from textseg.registry import BENCHMARKS

    root, out = tmp_path / "data", tmp_path / "records"
    assert main(["data", "synthetic", "ade20k", "--out", str(root), "-n", "3"]) == 0
    common = _dummy_bench(root, out)
    assert main([*common, "--dataset", "ade20k"]) == 0
    assert "dummy runs with randomly initialised weights" in capsys.readouterr().err
    (record,) = [read_record(p) for p in out.glob("*.json")]
    assert record.complete and record.synthetic and record.expected_images == 3
    assert record.weights == {"kind": "random-init"}
    split = BENCHMARKS.get("ade20k")
    assert split.check_split(root, split.open(root)).synthetic


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_damaged_image_ends_in_one_line_naming_it(
    plugin_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    from textseg.registry import BENCHMARKS

    root = tmp_path / "data"
    BENCHMARKS.get("ade20k").write_synthetic(root, 3, seed=2)
    base = root / "ade/ADEChallengeData2016"
    common = [
        "bench",
        "--method",
        "dummy",
        "--preset",
        "tiny",
        "--dataset",
        "ade20k",
        "--data-root",
        str(root),
    ]
    common += ["--output", str(tmp_path / "records"), "--num-workers", workers]
    for path, damage in (
        (base / "images/validation/ADE_val_00000002.jpg", "truncate"),
        (base / "annotations/validation/ADE_val_00000003.png", "garbage"),
    ):
        good = path.read_bytes()
        path.write_bytes(good[: len(good) // 3] if damage == "truncate" else b"not an image at all")
        capsys.readouterr()
        assert main(common) == 2
        err = capsys.readouterr().err
        (line,) = [line for line in err.splitlines() if "error" in line]
        assert line.startswith("textseg: error:") and str(path) in line and "cannot be read" in line
        assert "Caught" not in err and "Traceback" not in err
        path.write_bytes(good)
