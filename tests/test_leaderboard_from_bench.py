"""The leaderboard built from records that real ``textseg bench`` runs wrote on synthetic data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from textseg.cli import main
from textseg.evaluation.records import read_record
from textseg.leaderboard import build_leaderboard
from textseg.leaderboard.reported import PACKAGED_REPORTED as REPORTED
from textseg.registry import BENCHMARKS
from textseg.testing.tiny_clip import ensure_tiny_clip

pytestmark = pytest.mark.slow


def test_leaderboard_numbers_equal_the_bench_records(tmp_path: Path) -> None:
    root, results = tmp_path / "data", tmp_path / "results"
    for name in ("voc21", "voc20"):  # one data folder serves both
        spec = BENCHMARKS.get(name)
        spec.write_synthetic(root, 2, seed=11)
    common = ["--data-root", str(root), "--output", str(results), "--num-workers", "0"]
    weights = ["--weights", str(ensure_tiny_clip())]
    assert main(["bench", "--method", "maskclip", "--dataset", "voc21", "voc20", *weights, *common]) == 0
    assert main(["bench", "--method", "tcl", "--preset", "tiny", "--dataset", "voc21", *common]) == 0
    records = [read_record(path) for path in sorted(results.glob("*.json"))]
    assert len(records) == 3

    assert all(r.synthetic and r.complete and r.expected_images == 2 for r in records)
    out = tmp_path / "board"
    unranked = build_leaderboard([results], REPORTED, out)  # synthetic data is never a result...
    assert len(unranked.selection.unranked) == 3 and not unranked.selection.current
    first = build_leaderboard([results], REPORTED, out, include_unranked=True)  # ...unless asked
    assert not first.errors
    summary = pd.read_csv(out / "summary.csv", dtype={"preset": str})
    reproduced = summary[summary["kind"] != "published"]
    for record in records:
        (row,) = reproduced[
            (reproduced["method"] == record.method) & (reproduced["preset"] == record.preset)
        ].itertuples()
        value = getattr(row, record.benchmark)
        assert value == pytest.approx(round(record.metrics["mIoU"], 2), abs=1e-9)
    # maskclip's paper preset reproduces the published TCL-table row: published value and difference beside it
    (maskclip,) = reproduced[reproduced["method"] == "maskclip"].itertuples()
    assert maskclip.voc21_published == 38.8 and maskclip.voc20_published == 74.9
    assert maskclip.voc21_diff == pytest.approx(round(maskclip.voc21 - 38.8, 2), abs=0.011)
    per_class = pd.read_csv(out / "per_class_voc21.csv")
    assert len(per_class) >= 2  # one row per reproduced run on voc21

    assert set(reproduced["label"]) == {"synthetic data", "synthetic data; random weights"}
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    build_leaderboard([results], REPORTED, out, include_unranked=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # deterministic
