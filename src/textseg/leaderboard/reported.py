"""``reported.csv``: published mIoU numbers, one row per (method, variant, benchmark), with provenance.

The file is edited by hand, so reading it checks everything a typo could break and lists every
problem with its line number. The ``preset`` and ``overrides`` columns name the textseg run that
reproduces a row; that is how reproduced records are matched with published numbers.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from textseg.errors import TextsegError

#: The published numbers shipped inside the package (so ``textseg leaderboard`` has them anywhere).
PACKAGED_REPORTED = Path(__file__).with_name("reported.csv")


class LeaderboardError(TextsegError):
    """An input of the leaderboard (``reported.csv``, a results path) that cannot be used."""


#: What a provenance tag says about how a published number was obtained.
PROVENANCE_TAGS: Mapping[str, str] = {
    "src": "read in a text file (README, config) of the named repository",
    "img": "read from a results image or figure in the named repository or project page",
    "2nd": "quoted in third-party text (another paper, an aggregator site)",
    "mem": "recalled from the paper without a source at hand: a lead, not a fact",
}
REPORTED_COLUMNS = (
    "method",
    "variant",
    "benchmark",
    "protocol",
    "miou",
    "source",
    "provenance",
    "checked",
    "preset",
    "overrides",
    "note",
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.+-]*$")
_MAX_LISTED = 20


def overrides_text(overrides: Mapping[str, Any]) -> str:
    """The canonical ``key=value`` form of overrides (sorted, space-separated): what is matched."""
    return " ".join(f"{key}={overrides[key]}" for key in sorted(overrides))


def _parse_overrides(text: str) -> dict[str, str] | None:
    pairs = [token.partition("=") for token in text.split()]
    if any(not key or not sep for key, sep, _ in pairs):
        return None
    return {key: value for key, _, value in pairs}


def empty_reported() -> pd.DataFrame:
    """A table with the columns of ``reported.csv`` and no rows (a leaderboard without one)."""
    table = pd.DataFrame({c: pd.Series(dtype=str) for c in REPORTED_COLUMNS})
    table["miou"] = table["miou"].astype(float)
    return table


def read_reported(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check ``reported.csv`` (``miou`` as float, ``overrides`` canonical)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise LeaderboardError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in REPORTED_COLUMNS if c not in table.columns]
    unknown = [c for c in table.columns if c not in REPORTED_COLUMNS]
    if missing or unknown:
        raise LeaderboardError(
            f"{path}: the columns must be {', '.join(REPORTED_COLUMNS)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    table = table.loc[:, list(REPORTED_COLUMNS)].apply(lambda column: column.str.strip())
    problems = [
        f"line {index + 2}: {problem}" for index, row in table.iterrows() for problem in _row_problems(row)
    ]
    table["miou"] = [_float(text) for text in table["miou"]]
    table["overrides"] = [
        overrides_text(parsed) if (parsed := _parse_overrides(text)) is not None else text
        for text in table["overrides"]
    ]
    problems += _consistency_problems(table)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED]) + ("\n  ..." if len(problems) > _MAX_LISTED else "")
        raise LeaderboardError(f"{path}: {len(problems)} problem(s); fix them and rerun:\n  {listed}")
    return table


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _row_problems(row: pd.Series) -> list[str]:
    problems = [
        f"{column} {row[column]!r} must be lower-case letters, digits and _.+-"
        for column in ("method", "variant", "benchmark", "protocol")
        if not _NAME.match(row[column])
    ]
    miou = _float(row["miou"])
    if math.isnan(miou):
        problems.append(f"miou {row['miou']!r} is not a number")
    elif not 0.0 <= miou <= 100.0:
        problems.append(f"miou {row['miou']} is not a percentage in [0, 100]")
    if not row["source"]:
        problems.append("source is empty: name the paper and table, or the repository file")
    if row["provenance"] not in PROVENANCE_TAGS:
        problems.append(f"provenance {row['provenance']!r} is not one of {', '.join(PROVENANCE_TAGS)}")
    if row["checked"] not in ("yes", "no"):
        problems.append(f"checked {row['checked']!r} must be yes or no")
    if _parse_overrides(row["overrides"]) is None:
        problems.append(f"overrides {row['overrides']!r} must be space-separated key=value pairs")
    elif row["overrides"] and not row["preset"]:
        problems.append("overrides given without a preset")
    return problems


def _consistency_problems(table: pd.DataFrame) -> list[str]:
    """One row per (method, variant, benchmark); one protocol and one textseg run per variant; a
    textseg run reproduces at most one variant (so every record has at most one published match)."""
    problems = []
    lines = pd.Series(table.index + 2, index=table.index)
    repeated = table.duplicated(["method", "variant", "benchmark"], keep=False)
    for key, group in table[repeated].groupby(["method", "variant", "benchmark"], sort=True):
        problems.append(f"lines {', '.join(map(str, lines[group.index]))}: {'/'.join(key)} is given twice")
    for (method, variant), group in table.groupby(["method", "variant"], sort=True):
        for column in ("protocol", "preset", "overrides"):
            if group[column].nunique() > 1:
                problems.append(
                    f"lines {', '.join(map(str, lines[group.index]))}: {method}/{variant} mixes "
                    f"{column} values {sorted(group[column].unique())}; a variant has one {column}"
                )
    claimed = table[table["preset"] != ""].drop_duplicates(["method", "variant"])
    for (method, preset, overrides), group in claimed.groupby(["method", "preset", "overrides"], sort=True):
        if len(group) > 1:
            run = " ".join(filter(None, (preset, overrides)))
            problems.append(
                f"{method} {run!r} is claimed by variants {', '.join(sorted(group['variant']))}; "
                "a textseg run reproduces at most one published variant"
            )
    return problems
