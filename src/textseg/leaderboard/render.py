"""The leaderboard's page (``README.md``, Markdown) and chart (PNG, when matplotlib is installed)."""

from __future__ import annotations

import hashlib
import math
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from textseg import __version__
from textseg.io import atomic_path
from textseg.leaderboard.reported import PACKAGED_REPORTED, PROVENANCE_TAGS, REPORTED_COLUMNS
from textseg.leaderboard.runs import Selection
from textseg.leaderboard.suites import suite_columns
from textseg.leaderboard.tables import miou, other_versions_table, row_label

FLOAT_FORMAT = "%.2f"


def number(value: Any) -> str:
    """A number as every leaderboard file prints it; missing values are empty."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else FLOAT_FORMAT % value


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub Markdown table of already formatted cells (pipes escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _covered(table: pd.DataFrame, benchmarks: Sequence[str]) -> list[str]:
    return [b for b in benchmarks if table[b].notna().any()]


def _suite_cells(table: pd.DataFrame, benchmarks: Sequence[str], out: pd.DataFrame) -> None:
    """The suite averages some row has (e.g. ``mess: Engineering``), after ``average``."""
    for column in suite_columns(benchmarks):
        if column in table and table[column].notna().any():
            out[column] = [number(v) for v in table[column]]


def reproduced_markdown(summary: pd.DataFrame, benchmarks: Sequence[str]) -> str:
    """The reproduced runs; a matched cell reads ``reproduced (published, difference)``."""
    table = summary[summary["kind"] == "reproduced"]
    if table.empty:
        return ""
    out = table[["method", "variant", "preset", "overrides", "weights", "protocol"]].copy()
    out["date"] = [str(d)[:10] for d in table["date"]]
    for b in _covered(table, benchmarks):
        out[b] = [
            number(v) + ("" if math.isnan(p) else f" ({number(p)}, {d:+.2f})")
            for v, p, d in zip(table[b], table[f"{b}_published"], table[f"{b}_diff"])
        ]
    out["average"] = [
        number(v) + ("" if math.isnan(p) else f" ({number(p)})")
        for v, p in zip(table["average"], table["published_average"])
    ]
    out["n"] = table["benchmarks"].astype(str)
    out["avg diff"] = [number(v) for v in table["average_diff"]]
    _suite_cells(table, benchmarks, out)
    return markdown_table(out)


def _published_markdown(summary: pd.DataFrame, benchmarks: Sequence[str]) -> str:
    table = summary[summary["kind"] == "published"]
    out = table[["method", "variant", "protocol"]].copy()
    for b in _covered(table, benchmarks):
        out[b] = [number(v) for v in table[b]]
    out["average"] = [number(v) for v in table["average"]]
    out["n"] = table["benchmarks"].astype(str)
    _suite_cells(table, benchmarks, out)
    out["provenance"] = table["provenance"]
    out["checked"] = table["checked"]
    out["textseg run"] = [" ".join(filter(None, pair)) for pair in zip(table["preset"], table["overrides"])]
    return markdown_table(out)


def _by_benchmark(pairs: Sequence[tuple[str, str]], every: Sequence[str]) -> str:
    """Distinct texts of (text, benchmark) pairs, each followed by the benchmarks it is about
    unless it is about all of ``every``."""
    grouped: dict[str, dict[str, None]] = {}
    for text, benchmark in pairs:
        if text:
            grouped.setdefault(text, {})[benchmark] = None
    return "; ".join(
        text + ("" if set(names) == set(every) else f" ({', '.join(names)})")
        for text, names in grouped.items()
    )


def _sources_markdown(reported: pd.DataFrame) -> str:
    lines = []
    for (method, variant), group in reported.groupby(["method", "variant"], sort=True):
        every = list(group["benchmark"])
        sources = [(f"{s} [{t}]", b) for s, t, b in zip(group["source"], group["provenance"], every)]
        notes = [(piece, b) for note, b in zip(group["note"], every) for piece in note.split("; ")]
        lines.append(
            f"- **{method} / {variant}**: {_by_benchmark(sources, every)}"
            + (f". Notes: {_by_benchmark(notes, every)}" if any(group["note"]) else "")
        )
    return "\n".join(lines)


def _is_packaged(reported: str | os.PathLike[str]) -> bool:
    """True for the reported.csv shipped with textseg (named so, not by its install path)."""
    return Path(reported).resolve() == PACKAGED_REPORTED.resolve()


def command_line(
    results: Sequence[str | os.PathLike[str]],
    reported: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    include_unranked: bool = False,
) -> str:
    """The ``textseg leaderboard`` command that rebuilds a leaderboard from these inputs."""
    words = ["textseg", "leaderboard", *(["--include-unranked"] if include_unranked else [])]
    for path in results:
        words += ["--results", os.fspath(path)]
    if reported is not None and not _is_packaged(reported):
        words += ["--reported", os.fspath(reported)]
    return shlex.join([*words, "--out", os.fspath(out)])


@dataclass(frozen=True)
class Page:
    """Everything the README shows."""

    results: Sequence[str | os.PathLike[str]]
    reported_path: str | os.PathLike[str] | None
    out: Path
    reported: pd.DataFrame
    files: Sequence[Path]
    selection: Selection
    summary: pd.DataFrame
    benchmarks: Sequence[str]
    errors: Sequence[str]
    chart_note: str | None
    include_unranked: bool = False


def readme(page: Page) -> str:
    parts = [
        "# textseg leaderboard\n",
        "Generated by `textseg leaderboard` from results records and `reported.csv`. Do not edit the "
        "generated files: add records or published numbers and regenerate (see the end of this page).\n",
        "## Reproduced runs\n",
    ]
    reproduced = reproduced_markdown(page.summary, page.benchmarks)
    if reproduced:
        parts += [
            "mIoU (%) of each textseg run on the current benchmark and protocol versions. Where the run "
            "reproduces a published row (`reported.csv` names its method, preset and overrides), a cell "
            "reads `reproduced (published, reproduced - published)`, and `average` is over the `n` benchmarks "
            "the run shares with that row (`reproduced (published)`); other runs average all they cover. "
            "Per-class IoU is in "
            "`per_class_<benchmark>.csv`; all numbers are in `summary.csv`.\n",
            reproduced + "\n",
        ]
    else:
        parts.append("No reproduced runs yet: score a method with `textseg bench` and regenerate.\n")
    if not page.reported.empty:
        parts += [
            "## Published numbers\n",
            "mIoU (%) as published, one row per method and variant. `average` is over the `n` benchmarks "
            "the row covers (a paper's own average may cover another set). `protocol` names whose "
            "evaluation settings produced the number. `checked` says whether the number was checked "
            "against the paper itself; `provenance` is explained below. `textseg run` is the preset (and "
            "overrides) whose records are compared with the row.\n",
            _published_markdown(page.summary, page.benchmarks) + "\n",
            "### Sources\n",
            _sources_markdown(page.reported) + "\n",
        ]
    parts += _selection_sections(page.selection, page.errors)
    parts += ["## Chart\n"]
    parts += [
        "![mIoU heatmap](chart.png)\n" if page.chart_note is None else f"No chart: {page.chart_note}.\n"
    ]
    parts += _how_sections(page)
    return "\n".join(parts)


def _selection_sections(selection: Selection, errors: Sequence[str]) -> list[str]:
    parts = []
    if selection.other_versions:
        table = other_versions_table(selection.other_versions)
        table["mIoU"] = [number(v) for v in table["mIoU"]]
        columns = ["method", "preset", "overrides", "benchmark", "mIoU", "reason", "file"]
        parts += [
            "## Other benchmark or protocol versions\n",
            "Not comparable with the tables above, so never mixed into them (also in `other_versions.csv`).\n",
            markdown_table(table[columns]) + "\n",
        ]
    if selection.unranked:
        rows = pd.DataFrame(
            {
                "method": u.run.record.method,
                "preset": u.run.record.preset,
                "benchmark": u.run.record.benchmark,
                "images": str(u.run.record.num_images),
                "mIoU": number(miou(u.run.record)),
                "why not ranked": u.reason,
                "file": u.run.path.as_posix(),
            }
            for u in selection.unranked
        )
        parts += [
            "## Records that are not leaderboard results\n",
            "They scored part of a benchmark's split, synthetic data, or a trainable method's random "
            "initialisation: listed, never ranked (`textseg leaderboard --include-unranked` ranks them with a label).\n",
            markdown_table(rows) + "\n",
        ]
    if selection.repeats:
        lines = [
            f"- kept `{rep.kept.path.as_posix()}` ({rep.kept.record.date}); left out "
            + ", ".join(f"`{r.path.as_posix()}` ({r.record.date})" for r in rep.dropped)
            for rep in selection.repeats
        ]
        parts += ["## Repeated runs: the newest record is kept\n", "\n".join(lines) + "\n"]
    if errors:
        parts += ["## Records that could not be read\n", "\n".join(f"- {e}" for e in errors) + "\n"]
    return parts


def _how_sections(page: Page) -> list[str]:
    if page.reported_path is not None:
        digest = hashlib.sha256(Path(page.reported_path).read_bytes()).hexdigest()
        shown = (
            "textseg's reported.csv"
            if _is_packaged(page.reported_path)
            else f"`{os.fspath(page.reported_path)}`"
        )
        published = f"{shown} ({len(page.reported)} rows, sha256 `{digest[:16]}`)"
    else:
        published = "none"
    folders = ", ".join(f"`{os.fspath(p)}`" for p in page.results)
    records = f"{len(page.files)} file(s) from {folders}" if page.results else "none (no --results)"
    record_list = "".join(f"\n  - `{p.as_posix()}`" for p in page.files)
    return [
        "## How this was produced\n",
        f"- Command: `{command_line(page.results, page.reported_path, page.out, page.include_unranked)}`",
        f"- textseg {__version__}",
        f"- Published numbers: {published}",
        f"- Records: {records}{record_list}\n",
        "## Provenance tags\n",
        "\n".join(f"- `{tag}`: {meaning}" for tag, meaning in PROVENANCE_TAGS.items()) + "\n",
        "## How to add a published number\n",
        "Add one line per benchmark to `reported.csv` with the columns "
        + ", ".join(f"`{c}`" for c in REPORTED_COLUMNS)
        + ". `method` and `variant` name the row (a new variant for each recipe, and for each source "
        "that disagrees); `benchmark` is a textseg benchmark name; `protocol` says whose evaluation "
        "settings produced the number (`tcl`, `sclip`, ..., or `unknown`); `miou` is in percent as "
        "printed; `source` is the paper and table, or the repository file; `provenance` is one of the "
        "tags above; `checked` is `yes` only when you compared the number with the paper itself. "
        "`preset` and `overrides` (space-separated `key=value`) name the textseg run that reproduces the "
        "row; leave them empty when textseg has none. `note` is free text. Then regenerate.\n",
        "## How to regenerate\n",
        "```bash\ntextseg leaderboard --results results --out leaderboard   # published numbers: textseg's reported.csv\n```\n",
        "`--results` may be repeated; folders are searched recursively for `*.json` records. The same "
        "inputs give byte-identical files. Records that are not leaderboard results (part of a split, "
        "synthetic data, random weights), of another benchmark or protocol version, repeated or unreadable "
        "are listed in their own sections, never ranked (`--include-unranked` ranks the first kind, labelled).\n",
    ]


def write_chart(summary: pd.DataFrame, benchmarks: Sequence[str], path: Path) -> str | None:
    """A heatmap of mIoU (summary rows x benchmarks) as PNG; returns why not when it is skipped."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed (`pip install 'textseg[plot]'`)"
    if summary.empty or not benchmarks:
        return "there is nothing to plot"
    import numpy as np

    values = summary[list(benchmarks)].to_numpy(dtype=float)
    labels = [row_label(row) for row in summary.to_dict("records")]
    # Room for the longest row label at fontsize 8 (about 0.06 inch a character); constrained
    # layout keeps labels, colorbar and title inside the figure.
    width = 2.5 + 0.9 * len(benchmarks) + 0.06 * max(map(len, labels))
    figure = Figure(figsize=(width, 1.2 + 0.26 * len(labels)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="viridis", vmin=0, vmax=100)
    axes.set_xticks(range(len(benchmarks)), list(benchmarks), rotation=30, ha="right")
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), value in np.ndenumerate(values):
        if not math.isnan(value):
            colour = "w" if value < 50 else "k"
            axes.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes, label="mIoU (%)", fraction=0.05)
    axes.set_title("mIoU: published numbers and reproduced runs")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})
    return None
