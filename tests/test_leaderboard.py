"""The leaderboard: published numbers are well-formed, and records -> byte-stable CSV / Markdown / chart
with the record selection rules (repeats, versions, --limit, unreadable records)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_records import make_record

from textseg.benchmark import BenchmarkSpec
from textseg.cli import main
from textseg.evaluation.records import write_record
from textseg.leaderboard import LeaderboardError, build_leaderboard, read_reported
from textseg.registry import BENCHMARKS

ROOT = Path(__file__).resolve().parents[1]
REPORTED = ROOT / "src" / "textseg" / "leaderboard" / "reported.csv"
TEXTSEG_BENCHMARKS = {
    "voc21",
    "voc20",
    "context60",
    "context59",
    "coco_object",
    "coco_stuff",
    "cityscapes",
    "ade20k",
}
HEADER = "method,variant,benchmark,protocol,miou,source,provenance,checked,preset,overrides,note\n"
# Benchmark names no textseg version registers, so their "current" version is the newest seen.
TOY_REPORTED = HEADER + (
    "toy,paper,toy_a,tcl,55.0,Toy paper Table 2,src,no,paper,,\n"
    "toy,paper,toy_b,tcl,30.4,Toy paper Table 2,src,no,paper,,\n"
    "toy,no-pamr,toy_a,tcl,51.2,Toy paper Table 3,img,no,paper,pamr=false bg_thresh=0.5,\n"
    "other,paper,toy_b,unknown,20.0,Other paper Table 1,2nd,no,,,\n"
)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_rows(out: Path) -> list[dict[str, str]]:
    return csv_rows(out / "summary.csv")


def row_of(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    found = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


@pytest.fixture
def reported(tmp_path: Path) -> Path:
    path = tmp_path / "reported.csv"
    path.write_text(TOY_REPORTED, encoding="utf-8")
    return path


def toy_record(results: Path, **changes: object) -> Path:
    values: dict[str, object] = dict(
        method="toy",
        preset="paper",
        benchmark="toy_a",
        weights={"source": "official", "path": "/w/toy.pth", "sha256": "ab" * 32},
        per_class_iou={"background": 80.0, "cat": 40.123, "dog": None},
    )
    values.update(changes)
    return write_record(make_record(**values), results)


# --------------------------------------------------------------------------------------------
# reported.csv
# --------------------------------------------------------------------------------------------
def test_reported_csv_is_well_formed() -> None:
    table = read_reported(REPORTED)  # raises on any malformed row
    raw = pd.read_csv(REPORTED, dtype=str, keep_default_na=False)
    assert set(raw["benchmark"]) <= TEXTSEG_BENCHMARKS
    assert (raw["source"].str.strip() != "").all() and raw["provenance"].isin(
        ["src", "img", "2nd", "mem"]
    ).all()
    assert table["miou"].between(0, 100).all()
    # Per the references no number was checked against the paper itself: none may claim it.
    assert set(raw["checked"]) == {"no"}
    variants = set(zip(raw["method"], raw["variant"]))
    for expected in [
        ("tcl", "paper"),
        ("tcl", "paper-no-pamr"),
        ("code", "paper"),
        ("vilseg", "quoted-by-code"),
        ("vilseg", "quoted-by-car"),
        ("groupvit", "readme-yfcc"),
        ("groupvit", "tcl-reeval"),
        ("maskclip", "tcl-reeval"),
        ("maskclip", "sclip-reeval"),
        ("clip", "sclip-reeval"),
        ("sclip", "paper"),
        ("sclip", "repo"),
        ("clearclip", "paper"),
        ("naclip", "no-postprocess"),
        ("naclip", "repo-pamr"),
        ("proxyclip", "b16-dino-b8"),
    ]:
        assert expected in variants


# Averages printed next to the rows in the references (one decimal unless two are given): the
# mean of our rows must round to them, which catches transcription slips.
PRINTED_AVERAGES = {
    ("tcl", "paper"): 37.2,
    ("tcl", "paper-no-pamr"): 33.9,
    ("code", "paper"): 31.8,
    ("groupvit", "quoted-by-code"): 20.2,
    ("cocu", "paper"): 24.6,
    ("clip", "sclip-reeval"): 11.7,
    ("maskclip", "sclip-reeval"): 30.3,
    ("maskclip", "tcl-reeval"): 27.9,
    ("gem", "sclip-reeval"): 38.3,
    ("sclip", "paper"): 38.2,
    ("sclip", "repo"): 39.06,
    ("clearclip", "paper"): 38.1,
    ("naclip", "no-postprocess"): 39.4,
    ("naclip", "repo-pamr"): 42.46,
    ("proxyclip", "b16-dino-b8"): 42.3,
    ("proxyclip", "h14"): 44.4,
    ("trident", "paper"): 45.8,
    ("reco", "quoted-by-trident"): 23.5,
    ("ovdiff", "paper"): 37.8,
    ("scclip", "paper"): 43.9,
    ("cass", "paper"): 44.4,
    ("clipdinoiser", "paper"): 40.3,
    ("clearclip", "openclip-b16"): 37.9,
    ("clearclip", "openclip-l14"): 31.0,
    ("clearclip", "metaclip-b16"): 36.4,
    ("clearclip", "metaclip-l14"): 34.2,
    ("sclip", "clearclip-reeval-vitl14"): 23.6,
    ("sclip", "resclip-table-vitl14"): 30.5,
    ("maskclip", "clearclip-reeval-vitl14"): 13.7,
    ("clip", "clearclip-reeval-vitl14"): 5.4,
}


def test_reported_rows_agree_with_printed_averages() -> None:
    means = read_reported(REPORTED).groupby(["method", "variant"])["miou"].mean()
    for key, printed in PRINTED_AVERAGES.items():
        half_step = 0.005 if round(printed, 1) != printed else 0.05
        assert abs(means[key] - printed) <= half_step + 1e-9, (key, means[key], printed)


def test_read_reported_lists_every_problem_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "reported.csv"
    bad.write_text(
        HEADER
        + "tcl,paper,VOC 21,tcl,55.0,src text,src,no,,,\n"  # line 2: bad benchmark name
        + "tcl,paper,voc20,tcl,120,T2,src,no,,,\n"  # line 3: out of range
        + "tcl,paper,ade20k,tcl,17.1,,guess,maybe,,a=1,\n"  # line 4: no source, bad tag, checked, overrides w/o preset
        + "tcl,paper,voc20,tcl,80,T2,src,no,,,\n"  # line 5: repeats line 3
    )
    with pytest.raises(LeaderboardError) as info:
        read_reported(bad)
    message = str(info.value)
    assert str(bad) in message
    for expected in [
        "line 2: benchmark 'VOC 21'",
        "line 3: miou 120 is not a percentage",
        "line 4: source is empty",
        "line 4: provenance 'guess'",
        "line 4: checked 'maybe'",
        "line 4: overrides given without a preset",
        "lines 3, 5: tcl/paper/voc20 is given twice",
    ]:
        assert expected in message


def test_one_textseg_run_reproduces_one_variant(tmp_path: Path) -> None:
    bad = tmp_path / "reported.csv"
    bad.write_text(HEADER + "m,a,voc21,tcl,1,s,src,no,paper,,\nm,b,voc20,tcl,2,s,src,no,paper,,\n")
    with pytest.raises(LeaderboardError, match="claimed by variants a, b"):
        read_reported(bad)


# --------------------------------------------------------------------------------------------
# Building from records
# --------------------------------------------------------------------------------------------
def test_summary_numbers_equal_the_records_and_are_matched(tmp_path: Path, reported: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    toy_record(results, metrics={"mIoU": 54.876, "mAcc": 60.0, "aAcc": 90.0})
    toy_record(results, benchmark="toy_b", metrics={"mIoU": 31.0, "mAcc": 40.0, "aAcc": 80.0})
    no_pamr = {"pamr": "false", "bg_thresh": "0.5"}
    toy_record(results, overrides=no_pamr, metrics={"mIoU": 50.0, "mAcc": 1.0, "aAcc": 2.0})
    toy_record(
        results, overrides=no_pamr, benchmark="toy_b", metrics={"mIoU": 10.0, "mAcc": 1.0, "aAcc": 2.0}
    )
    toy_record(results, method="unmatched", metrics={"mIoU": 12.345, "mAcc": 1.0, "aAcc": 2.0})
    toy_record(
        results, method="unmatched", benchmark="toy_b", metrics={"mIoU": 20.0, "mAcc": 1.0, "aAcc": 2.0}
    )
    build_leaderboard([results], reported, out)

    rows = summary_rows(out)
    paper = row_of(rows, method="toy", kind="reproduced", overrides="")
    assert paper["variant"] == "paper" and paper["weights"] == "official" and paper["sha256"] == "ab" * 6
    assert (paper["toy_a"], paper["toy_a_published"], paper["toy_a_diff"]) == ("54.88", "55.00", "-0.12")
    assert (paper["toy_b"], paper["toy_b_published"], paper["toy_b_diff"]) == ("31.00", "30.40", "0.60")
    assert (paper["average"], paper["benchmarks"], paper["published_average"]) == ("42.94", "2", "42.70")
    assert paper["average_diff"] == "0.24"
    ablation = row_of(rows, method="toy", kind="reproduced", overrides="bg_thresh=0.5 pamr=false")
    assert (ablation["variant"], ablation["toy_a"], ablation["toy_a_diff"]) == ("no-pamr", "50.00", "-1.20")
    # Published no-pamr has toy_a only: the run's average leaves its toy_b out, and says so.
    assert (ablation["toy_b"], ablation["average"], ablation["benchmarks"]) == ("10.00", "50.00", "1")
    assert ablation["published_average"] == "51.20"
    alone = row_of(rows, method="unmatched")
    assert (alone["variant"], alone["toy_a"], alone["toy_a_published"]) == ("", "12.35", "")
    assert (alone["average"], alone["benchmarks"], alone["published_average"]) == ("16.18", "2", "")
    published = row_of(rows, method="toy", variant="paper", kind="published")
    assert (published["toy_a"], published["average"], published["provenance"]) == ("55.00", "42.70", "src")
    assert [(r["method"], r["variant"], r["kind"]) for r in rows][:2] == [
        ("other", "paper", "published"),
        ("toy", "no-pamr", "published"),
    ]

    per_class = csv_rows(out / "per_class_toy_a.csv")
    first = row_of(per_class, method="toy", overrides="")
    assert (first["mIoU"], first["background"], first["cat"], first["dog"]) == ("54.88", "80.00", "40.12", "")
    readme = (out / "README.md").read_text()
    date = make_record().date[:10]
    assert (
        f"| toy | paper | paper |  | official | tcl | {date} | 54.88 (55.00, -0.12) | 31.00 (30.40, +0.60) "
        "| 42.94 (42.70) | 2 |" in readme
    )


def test_regenerating_gives_identical_bytes(tmp_path: Path, reported: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    toy_record(results)
    toy_record(results, benchmark="toy_b", date="2026-11-22T10:00:00+00:00")
    toy_record(results, benchmark="toy_b")  # an older repeat
    toy_record(results, benchmark="toy_b", benchmark_version="0")  # another version
    toy_record(results, limit=2)  # partial
    (results / "broken.json").write_text("{")
    build_leaderboard([results], reported, out)
    first = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    build_leaderboard([results], reported, out)
    second = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert first == second
    assert {
        "summary.csv",
        "README.md",
        "per_class_toy_a.csv",
        "per_class_toy_b.csv",
        "other_versions.csv",
    } <= set(first)


def test_older_versions_are_listed_apart(tmp_path: Path, reported: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    toy_record(results, benchmark_version="2", metrics={"mIoU": 60.0, "mAcc": 1.0, "aAcc": 1.0})
    old = toy_record(results, benchmark_version="1", metrics={"mIoU": 10.0, "mAcc": 1.0, "aAcc": 1.0})
    toy_record(
        results, benchmark="toy_b", protocol_version="1", metrics={"mIoU": 5.0, "mAcc": 1.0, "aAcc": 1.0}
    )
    toy_record(
        results, benchmark="toy_b", protocol_version="2", metrics={"mIoU": 33.0, "mAcc": 1.0, "aAcc": 1.0}
    )
    result = build_leaderboard([results], reported, out)

    row = row_of(summary_rows(out), method="toy", kind="reproduced")
    assert (row["toy_a"], row["toy_b"]) == ("60.00", "33.00")
    others = pd.read_csv(out / "other_versions.csv", dtype=str, keep_default_na=False)
    assert sorted(others["mIoU"]) == ["10.00", "5.00"]
    assert "benchmark toy_a v1, current v2" in set(others["reason"])
    assert "protocol tcl v1, current v2" in set(others["reason"])
    assert old.as_posix() in set(others["file"])
    readme = (out / "README.md").read_text()
    assert "## Other benchmark or protocol versions" in readme
    assert any("benchmark toy_a v1, current v2" in note for note in result.notes)


@pytest.fixture
def registered_toy() -> Iterator[str]:
    spec = BenchmarkSpec(
        name="toy_registered",
        version="2",
        summary="test-only",
        classes=("background", "dog", "cat"),
        background=True,
        layout=None,  # type: ignore[arg-type]
    )
    BENCHMARKS.register("toy_registered", spec)
    yield "toy_registered"
    BENCHMARKS.unregister("toy_registered")


def test_installed_benchmark_version_is_current(tmp_path: Path, registered_toy: str) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    per_class = {"background": 1.0, "cat": 2.0, "dog": 3.0}  # written sorted; shown in label order
    toy_record(results, benchmark=registered_toy, benchmark_version="1")
    toy_record(results, benchmark=registered_toy, benchmark_version="2", per_class_iou=per_class)
    build_leaderboard([results], None, out)
    others = pd.read_csv(out / "other_versions.csv", dtype=str)
    assert list(others["benchmark_version"]) == ["1"]
    header = (out / f"per_class_{registered_toy}.csv").read_text().splitlines()[0]
    assert header.endswith("mIoU,mAcc,aAcc,background,dog,cat")


def test_repeated_runs_keep_the_newest_and_say_so(
    tmp_path: Path, reported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    # 09:00+01:00 is 08:00 UTC: older than 08:30 UTC, although its text sorts after it.
    oldest = toy_record(
        results, date="2026-11-23T09:00:00+01:00", metrics={"mIoU": 20.0, "mAcc": 1.0, "aAcc": 1.0}
    )
    newest = toy_record(
        results, date="2026-11-23T08:30:00+00:00", metrics={"mIoU": 70.0, "mAcc": 1.0, "aAcc": 1.0}
    )
    other_weights = toy_record(results, weights=None, metrics={"mIoU": 30.0, "mAcc": 1.0, "aAcc": 1.0})
    assert (
        main(["leaderboard", "--results", str(results), "--reported", str(reported), "--out", str(out)]) == 0
    )

    reproduced = [r for r in summary_rows(out) if r["kind"] == "reproduced"]
    assert sorted(r["toy_a"] for r in reproduced) == ["30.00", "70.00"]
    err = capsys.readouterr().err
    assert "kept the newest" in err and newest.as_posix() in err and oldest.as_posix() in err
    assert other_weights.as_posix() not in err
    readme = (out / "README.md").read_text()
    assert f"kept `{newest.as_posix()}`" in readme and f"`{oldest.as_posix()}`" in readme


def test_bad_records_are_named_and_the_others_still_build(
    tmp_path: Path, reported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    good = toy_record(results, metrics={"mIoU": 44.0, "mAcc": 1.0, "aAcc": 1.0})
    not_json = results / "not_json.json"
    not_json.write_text("{not json")
    missing = toy_record(results, benchmark="toy_b")
    data = json.loads(missing.read_text())
    del data["benchmark_version"]
    missing.write_text(json.dumps(data))
    bad_date = toy_record(results, benchmark="toy_b", date="yesterday")
    latin = results / "latin.json"
    latin.write_bytes(good.read_text().replace('"toy"', '"caf\xe9"').encode("latin-1"))  # not UTF-8

    code = main(["leaderboard", "--results", str(results), "--reported", str(reported), "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"{not_json}: not a readable JSON record" in err
    assert f"{missing}: missing field(s) benchmark_version" in err
    assert f"{bad_date}: field date 'yesterday'" in err
    assert f"{latin}: not a readable JSON record" in err and "Traceback" not in err
    assert good.as_posix() not in err
    row = row_of(summary_rows(out), method="toy", kind="reproduced")
    assert (row["toy_a"], row["toy_b"]) == ("44.00", "")
    assert "## Records that could not be read" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"limit": 3}, "--limit 3"),
        ({"complete": False, "expected_images": 2000}, "incomplete split: 3 of 2000 images"),
        ({"synthetic": True}, "synthetic data"),
        ({"weights": {"kind": "random-init"}}, "random weights"),
    ],
)
def test_records_that_are_not_results_are_listed_not_ranked(
    tmp_path: Path, reported: Path, changes: dict, reason: str
) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    record = toy_record(results, num_images=3, metrics={"mIoU": 99.0, "mAcc": 1.0, "aAcc": 1.0}, **changes)
    result = build_leaderboard([record], reported, out)  # a record file works as well as a folder
    assert not [r for r in summary_rows(out) if r["kind"] == "reproduced"]
    assert not list(out.glob("per_class_*.csv"))
    readme = (out / "README.md").read_text()
    assert "## Records that are not leaderboard results" in readme and f"| 3 | 99.00 | {reason} |" in readme
    assert any(note.startswith(f"not ranked ({reason})") for note in result.notes)
    build_leaderboard([record], reported, out, include_unranked=True)
    (row,) = [r for r in summary_rows(out) if r["kind"] == "reproduced"]
    assert row["label"] == reason and row["toy_a"] == "99.00"


def test_stale_outputs_are_removed(tmp_path: Path, reported: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "board"
    record = toy_record(results, benchmark="toy_b")
    build_leaderboard([results], reported, out)
    assert (out / "per_class_toy_b.csv").exists()
    record.unlink()
    build_leaderboard([results], reported, out)
    assert not (out / "per_class_toy_b.csv").exists()
    assert (out / "summary.csv").exists()


def test_missing_results_path_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["leaderboard", "--results", str(tmp_path / "nope"), "--out", str(tmp_path / "board")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--results {tmp_path / 'nope'}: no such file or folder" in err


def test_defaults_read_the_packaged_reported_csv_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Outside the repository, `textseg leaderboard` still shows the published numbers it ships."""
    monkeypatch.chdir(tmp_path)
    assert main(["leaderboard"]) == 0
    assert "./results does not exist" in capsys.readouterr().err
    board = tmp_path / "leaderboard"
    readme = (board / "README.md").read_text()
    assert "- Command: `textseg leaderboard --out leaderboard`" in readme
    published = read_reported(REPORTED)
    tcl_voc = published[(published.method == "tcl") & (published.benchmark == "voc21")].iloc[0]
    assert float(
        row_of(summary_rows(board), method="tcl", variant=tcl_voc.variant)["voc21"]
    ) == pytest.approx(tcl_voc.miou)


def hide_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError


def test_without_matplotlib_the_chart_is_skipped_with_a_note(
    tmp_path: Path, reported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "board"
    out.mkdir()
    (out / "chart.png").write_bytes(b"stale")
    hide_matplotlib(monkeypatch)
    result = build_leaderboard([], reported, out)
    assert not (out / "chart.png").exists()
    assert "No chart: matplotlib is not installed" in (out / "README.md").read_text()
    assert any("matplotlib is not installed" in note for note in result.notes)


def test_chart_is_a_png(tmp_path: Path, reported: Path) -> None:
    pytest.importorskip("matplotlib")
    toy_record(tmp_path / "results")
    build_leaderboard([tmp_path / "results"], reported, tmp_path / "board")
    assert (tmp_path / "board" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![mIoU heatmap](chart.png)" in (tmp_path / "board" / "README.md").read_text()


def test_committed_summary_is_up_to_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """leaderboard/summary.csv was regenerated after the last edit of reported.csv."""
    hide_matplotlib(monkeypatch)  # the chart is not compared; drawing 40 rows only costs time
    build_leaderboard([], REPORTED, tmp_path)
    committed = (ROOT / "leaderboard" / "summary.csv").read_bytes()
    assert (tmp_path / "summary.csv").read_bytes() == committed, (
        "regenerate: textseg leaderboard --out leaderboard"
    )
    assert pd.read_csv(io.BytesIO(committed))["kind"].eq("published").all()
    readme = (ROOT / "leaderboard" / "README.md").read_text(encoding="utf-8")
    assert "## How to add a published number" in readme and "## How to regenerate" in readme


def test_chart_labels_tell_reproduced_runs_apart() -> None:
    from textseg.leaderboard.tables import row_label

    run = {"kind": "reproduced", "method": "tcl", "preset": "tiny", "overrides": "pamr=false"}
    run |= {"weights": "/x/runs/tcl-a/checkpoints/step-00000120", "date": "2026-12-03T01:00:00+00:00"}
    assert row_label(run) == "tcl / tiny · pamr=false · tcl-a/step-00000120 · 2026-12-03"
    other = run | {"overrides": "", "weights": "/w/tcl.pth", "date": "2026-12-01T09:00:00+00:00"}
    assert row_label(other) == "tcl / tiny · tcl.pth · 2026-12-01"
    assert row_label(run | {"weights": ""}).endswith("· pretrained · 2026-12-03")
    assert row_label({"kind": "published", "method": "tcl", "variant": "paper"}) == "tcl / paper (published)"
    long = row_label(
        run | {"overrides": "clip=/a/very/long/path/to/a/run/checkpoints/step-00000300 pamr=false"}
    )
    assert long.startswith("tcl / tiny · clip=/a/very/long/path/to/a/run/checkpo… · tcl-a/")
