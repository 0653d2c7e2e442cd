"""Suites: named groups of benchmarks expanded by ``textseg bench``, listed by ``textseg list``,
averaged per group on the leaderboard."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from textseg.cli import main
from textseg.errors import ConfigError
from textseg.registry import PROTOCOLS, SUITES, UnknownNameError
from textseg.suite import Suite, expand

MESS = SUITES.get("mess").benchmarks if "mess" in SUITES else ()


@pytest.fixture
def pair_suite() -> Iterator[str]:
    SUITES.register("pair", Suite("pair", "two benchmarks", ("voc20", "ade20k"), {"things": ("voc20",)}))
    yield "pair"
    SUITES.unregister("pair")


def test_expand_keeps_order_and_drops_repeats(pair_suite: str) -> None:
    assert expand(["ade20k", pair_suite, "voc21"]) == ["ade20k", "voc20", "voc21"]
    assert expand(["mess", "mess_cwfid"]) == list(MESS) and len(MESS) >= 5


def test_unknown_names_list_benchmarks_and_suites(pair_suite: str) -> None:
    with pytest.raises(UnknownNameError) as info:
        expand(["mes"])
    message = str(info.value)
    assert "unknown benchmark 'mes'" in message and "Suites: mess, pair." in message


def test_a_name_that_is_both_is_refused() -> None:
    SUITES.register("voc21", Suite("voc21", "clash", ("voc20",)))
    try:
        with pytest.raises(ConfigError, match="both a benchmark and a suite"):
            expand(["voc21"])
    finally:
        SUITES.unregister("voc21")


def test_suite_checks_its_groups() -> None:
    with pytest.raises(TypeError, match="group 'x' must list members"):
        Suite("s", "bad", ("voc20",), {"x": ("ade20k",)})
    with pytest.raises(TypeError, match="without repeats"):
        Suite("s", "bad", ("voc20", "voc20"))


def test_list_shows_suites_with_members(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "suites"]) == 0
    out = capsys.readouterr().out
    assert "suites (" in out and "mess  built-in" in out and "mess_deepcrack" in out


def test_suite_columns_average_only_complete_rows() -> None:
    from textseg.leaderboard.suites import add_suite_columns

    table = pd.DataFrame({"mess_deepcrack": [10.0, 20.0], "mess_zerowaste": [30.0, np.nan]})
    for name in MESS:
        if name not in table:
            table[name] = [50.0, 50.0]
    columns = add_suite_columns(table, list(table.columns))
    assert "mess" in columns and "mess: Engineering" in columns and "mess: Medical Sciences" in columns
    engineering = SUITES.get("mess").groups["Engineering"]
    expected = np.mean([{"mess_deepcrack": 10.0, "mess_zerowaste": 30.0}.get(b, 50.0) for b in engineering])
    assert table["mess: Engineering"][0] == pytest.approx(expected)
    assert np.isnan(table["mess: Engineering"][1]) and np.isnan(table["mess"][1])  # zerowaste missing
    assert table["mess: Medical Sciences"].tolist() == [50.0, 50.0]


@pytest.fixture
def small_protocol() -> Iterator[str]:
    from textseg.evaluation.protocol import TCL

    PROTOCOLS.register("tcl64", dataclasses.replace(TCL, name="tcl64", short_side=64, crop=64, stride=32))
    yield "tcl64"
    PROTOCOLS.unregister("tcl64")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Tight layout not applied")  # a one-row chart
def test_bench_the_mess_suite_and_its_domain_averages(small_protocol: str, tmp_path: Path) -> None:
    from textseg.evaluation.records import read_record
    from textseg.leaderboard import build_leaderboard

    data = tmp_path / "data"
    for name in MESS:
        assert main(["data", "synthetic", name, "--out", str(data), "-n", "2", "--seed", "1"]) == 0
    args = [
        "bench",
        "--method",
        "maskclip",
        "--preset",
        "tiny",
        "--protocol",
        small_protocol,
        "--dataset",
        "mess",
    ]
    assert (
        main([*args, "--data-root", str(data), "--output", str(tmp_path / "out"), "--num-workers", "0"]) == 0
    )
    records = {read_record(p).benchmark: read_record(p) for p in (tmp_path / "out").glob("*.json")}
    assert sorted(records) == sorted(MESS)
    # Synthetic records are not leaderboard results: ranked here on purpose.
    result = build_leaderboard([tmp_path / "out"], None, tmp_path / "board", include_unranked=True)
    row = result.summary[result.summary["kind"] == "reproduced"].iloc[0]
    for domain, members in SUITES.get("mess").groups.items():
        expected = np.mean([round(records[m].metrics["mIoU"], 2) for m in members])
        assert row[f"mess: {domain}"] == pytest.approx(round(expected, 2))
    assert "mess: Engineering" in (tmp_path / "board/README.md").read_text()
