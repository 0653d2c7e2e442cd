"""Results records: atomic writing that never overwrites, strict reading that names the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textseg.evaluation.records import RecordError, ResultsRecord, read_record, write_record


def make_record(**changes: object) -> ResultsRecord:
    values: dict[str, object] = dict(
        method="dummy",
        preset="tiny",
        overrides={},
        config={"dim": 16},
        weights=None,
        benchmark="voc21",
        benchmark_version="1",
        protocol="tcl",
        protocol_version="2",
        protocol_settings={"short_side": 448},
        synonyms=None,
        metrics={"mIoU": 12.5, "mAcc": 20.0, "aAcc": 50.0},
        per_class_iou={"background": 50.0, "cat": None},
        num_images=3,
        limit=None,
        complete=True,
        expected_images=1449,
        synthetic=False,
        images_per_second=1.5,
        seconds=2.0,
        precision="fp32",
        device="cpu",
        num_processes=1,
        date="2026-11-21T10:00:00+00:00",
    )
    values.update(changes)
    return ResultsRecord(**values)  # type: ignore[arg-type]


def test_write_never_overwrites_and_round_trips(tmp_path: Path) -> None:
    record = make_record()
    first = write_record(record, tmp_path)
    second = write_record(record, tmp_path)
    assert first != second and first.exists() and second.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])  # no temp files
    assert read_record(first) == record
    assert first.stat().st_mode & 0o044 == 0o044  # readable by others, like any plain new file


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("metrics"), "missing field"),
        (lambda d: d.update(bogus=1), "unknown field"),
        (lambda d: d.update(schema=99), "schema"),
        (lambda d: d["metrics"].pop("mIoU"), "mIoU"),
    ],
)
def test_bad_records_name_file_and_problem(tmp_path: Path, mutate, message: str) -> None:
    path = write_record(make_record(), tmp_path)
    data = json.loads(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(RecordError, match=message) as info:
        read_record(path)
    assert str(path) in str(info.value)


def test_not_json_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(RecordError, match=r"bad\.json"):
        read_record(bad)


def test_records_are_strict_json_with_null_for_a_missing_number(tmp_path: Path) -> None:
    record = make_record(
        metrics={"mIoU": float("nan"), "mAcc": 20.0, "aAcc": 50.0}, images_per_second=float("inf")
    )
    path = write_record(record, tmp_path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    again = read_record(path)
    assert again.metrics["mIoU"] is None and again.images_per_second is None
    path.write_text(text.replace('"mAcc": 20.0', '"mAcc": NaN'))
    with pytest.raises(RecordError, match="NaN is not valid JSON"):
        read_record(path)


def test_schema_1_records_are_still_read(tmp_path: Path) -> None:
    data = make_record(limit=2).to_json()
    for key in ("complete", "expected_images", "synthetic"):
        del data[key]
    data["schema"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    record = read_record(path)
    assert record.complete is False and record.synthetic is False and record.schema == 2


def test_a_record_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "latin.json"
    bad.write_bytes('{"method": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(RecordError, match=r"latin\.json"):
        read_record(bad)
