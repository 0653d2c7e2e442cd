"""Suite columns: for every installed suite with a member on the leaderboard, the mean mIoU over all
its members (column ``<suite>``) and over each of its groups (``<suite>: <group>``, e.g.
``mess: Medical Sciences``, MESS's domain averages).

A mean is shown only on rows that have every benchmark it averages, so it never mixes subsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from textseg.registry import SUITES


def suite_columns(benchmarks: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Column name -> the benchmarks it averages, for the suites that share a member with ``benchmarks``
    (a suite that fails to load is left out; ``textseg list suites`` names its error)."""
    columns: dict[str, tuple[str, ...]] = {}
    for row in SUITES.listing():
        suite = row.item
        if suite is None or not set(suite.benchmarks) & set(benchmarks):
            continue
        columns[suite.name] = suite.benchmarks
        for group, members in suite.groups.items():
            columns[f"{suite.name}: {group}"] = members
    return columns


def add_suite_columns(table: pd.DataFrame, benchmarks: Sequence[str]) -> list[str]:
    """Add the suite columns to ``table`` (rounded to two decimals, like every average); returns their names."""
    columns = suite_columns(benchmarks)
    for column, members in columns.items():
        if all(m in table for m in members):
            table[column] = table[list(members)].astype(float).mean(axis=1, skipna=False).round(2)
        else:
            table[column] = float("nan")
    return list(columns)
