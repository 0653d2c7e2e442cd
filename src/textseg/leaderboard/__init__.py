"""The leaderboard: results records and published numbers -> CSV tables, a Markdown page, a chart.

Records written by ``textseg bench`` are the only source of reproduced numbers; ``reported.csv``
(:mod:`textseg.leaderboard.reported`) holds the published ones with their sources. Everything in
the output folder is regenerated from those two inputs, and the same inputs give byte-identical
files: rows are sorted stably, numbers are printed with two decimals, and the only dates are the
records' own. Which records are ranked, and what happens to the others (unreadable, ``--limit``,
other versions, repeats), is described in :mod:`textseg.leaderboard.runs`.

A reproduced run is compared with the published row whose ``method``, ``preset`` and
``overrides`` columns equal the record's: ``reported.csv`` says which textseg run reproduces which
published number.

From Python::

    from textseg.leaderboard import build_leaderboard
    result = build_leaderboard(["results/"], "src/textseg/leaderboard/reported.csv", "leaderboard/")
    print(result.table)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from textseg.io import atomic_open
from textseg.leaderboard.render import FLOAT_FORMAT, Page, readme, reproduced_markdown, write_chart
from textseg.leaderboard.reported import LeaderboardError, empty_reported, read_reported
from textseg.leaderboard.runs import Selection, find_record_files, load_runs, select_runs
from textseg.leaderboard.tables import benchmark_order, class_tables, other_versions_table, summary_table

__all__ = ["LeaderboardError", "LeaderboardResult", "build_leaderboard", "read_reported"]

#: Output files a build may write; ones left from an earlier build and not written now are removed.
_GENERATED = ("summary.csv", "per_class_*.csv", "other_versions.csv", "chart.png", "README.md")


@dataclass
class LeaderboardResult:
    """What a build wrote and noticed. The CLI prints ``errors`` and ``notes``."""

    out: Path
    written: list[Path]
    summary: pd.DataFrame
    benchmarks: list[str]
    selection: Selection
    errors: list[str]  # one per record that could not be read, naming its file
    notes: list[str]  # repeats, unranked records, other versions, a skipped chart

    @property
    def table(self) -> str:
        """The reproduced runs as a Markdown table (empty when there are none)."""
        return reproduced_markdown(self.summary, self.benchmarks)


def build_leaderboard(
    results: Sequence[str | os.PathLike[str]] = (),
    reported: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "leaderboard",
    include_unranked: bool = False,
) -> LeaderboardResult:
    """Rebuild the leaderboard in ``out`` from the records under ``results`` (folders, searched
    recursively, or record files) and the published numbers in ``reported`` (None: none).

    Writes ``summary.csv``, ``per_class_<benchmark>.csv``, ``other_versions.csv`` (when some
    records are of other versions), ``chart.png`` (when matplotlib is installed) and ``README.md``.
    Unreadable records do not stop the build: they are named in ``errors`` and in the README.
    Records that are not leaderboard results (part of a split, synthetic data, random weights) are
    listed apart, or ranked with a ``label`` saying why with ``include_unranked``.
    """
    out = Path(out)
    published = read_reported(reported) if reported is not None else empty_reported()
    files = find_record_files(results)
    runs, errors = load_runs(files)
    selection = select_runs(runs, rank_all=include_unranked)
    benchmarks = benchmark_order(published, selection.current)
    summary = summary_table(selection.current, published, benchmarks)

    tables = {"summary.csv": summary}
    tables.update({f"per_class_{b}.csv": t for b, t in class_tables(selection.current).items()})
    if selection.other_versions:
        tables["other_versions.csv"] = other_versions_table(selection.other_versions)
    for name, table in tables.items():
        _write_csv(table, out / name)
    written = [out / name for name in tables]
    chart_note = write_chart(summary, benchmarks, out / "chart.png")
    if chart_note is None:
        written.append(out / "chart.png")
    page = Page(
        results,
        reported,
        out,
        published,
        files,
        selection,
        summary,
        benchmarks,
        errors,
        chart_note,
        include_unranked,
    )
    with atomic_open(out / "README.md", "w", encoding="utf-8", newline="\n") as handle:
        handle.write(readme(page))
    written.append(out / "README.md")
    for pattern in _GENERATED:
        for stale in sorted(out.glob(pattern)):
            if stale not in written:
                stale.unlink()
    return LeaderboardResult(
        out, written, summary, benchmarks, selection, errors, _notes(selection, chart_note)
    )


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        table.to_csv(handle, index=False, float_format=FLOAT_FORMAT, lineterminator="\n")


def _notes(selection: Selection, chart_note: str | None) -> list[str]:
    notes = [
        f"{len(rep.dropped) + 1} records of one run, kept the newest: {rep.kept.describe()}; left out "
        + ", ".join(run.path.as_posix() for run in rep.dropped)
        for rep in selection.repeats
    ]
    notes += [f"not ranked ({u.reason}): {u.run.describe()}" for u in selection.unranked]
    notes += [f"{o.reason}, listed apart: {o.run.describe()}" for o in selection.other_versions]
    if chart_note is not None:
        notes.append(f"no chart: {chart_note}")
    return notes
