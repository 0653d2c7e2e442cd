"""The leaderboard's tables (pandas): summary, per-class IoU per benchmark, other versions.

Reproduced numbers are rounded to two decimals before differences and averages are taken, so
every number in a table follows from the numbers printed next to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from textseg.evaluation.records import ResultsRecord
from textseg.leaderboard.reported import overrides_text
from textseg.leaderboard.runs import OtherVersion, Run, unranked_reason
from textseg.leaderboard.suites import add_suite_columns
from textseg.registry import BENCHMARKS, RegistryError

#: Columns that identify a reproduced run: one summary row each. ``label`` says why a run that is
#: not a leaderboard result was ranked anyway (``textseg leaderboard --include-unranked``).
RUN_COLUMNS = ["method", "preset", "overrides", "weights", "sha256", "protocol", "label"]
SUMMARY_COLUMNS = ["method", "variant", "kind", *RUN_COLUMNS[1:], "date", "provenance", "checked"]
_SORT = ["method", "variant", "kind", *RUN_COLUMNS[1:]]


def run_fields(record: ResultsRecord) -> dict[str, str]:
    """The run-identifying columns of a record (weights: their source and a 12-digit sha256)."""
    weights = record.weights or {}
    return {
        "method": record.method,
        "preset": record.preset,
        "overrides": overrides_text(record.overrides),
        "weights": str(weights.get("source") or ""),
        "sha256": str(weights.get("sha256") or "")[:12],
        "protocol": record.protocol,
        "label": unranked_reason(record),
    }


#: Characters of a run's overrides shown in its chart label.
LABEL_OVERRIDES = 40


def row_label(row: Mapping[str, Any]) -> str:
    """How a summary row is told apart in the chart: a published variant by its name; a reproduced
    run by its preset, overrides, weights (a run folder's name and checkpoint, a file's name) and date."""
    if row["kind"] == "published":
        return f"{row['method']} / {row['variant'] or '-'} (published)"
    source = PurePath(str(row["weights"] or ""))
    weights = "/".join(source.parts[-3::2]) if source.parent.name == "checkpoints" else source.name
    overrides = str(row["overrides"] or "")
    if len(overrides) > LABEL_OVERRIDES:  # the tables hold them whole
        overrides = overrides[: LABEL_OVERRIDES - 1] + "…"
    parts = [row["preset"] or "-", overrides, weights or "pretrained", str(row["date"])[:10]]
    return f"{row['method']} / " + " · ".join(p for p in parts if p)


def miou(record: ResultsRecord) -> float:
    """The record's mIoU (NaN where the record has none)."""
    value = record.metrics.get("mIoU")
    return float("nan") if value is None else float(value)


def benchmark_order(reported: pd.DataFrame, runs: Sequence[Run]) -> list[str]:
    """Benchmarks in the order ``reported.csv`` first names them, then any others alphabetically."""
    order = list(dict.fromkeys(reported["benchmark"]))
    return order + sorted({r.record.benchmark for r in runs} - set(order))


def _published_rows(reported: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for (method, variant), group in reported.groupby(["method", "variant"], sort=True):
        checked = set(group["checked"])
        row: dict[str, Any] = {
            "method": method,
            "variant": variant,
            "kind": "published",
            "preset": group["preset"].iloc[0],
            "overrides": group["overrides"].iloc[0],
            "weights": "",
            "sha256": "",
            "protocol": group["protocol"].iloc[0],
            "date": "",
            "provenance": "+".join(sorted(set(group["provenance"]))),
            "checked": checked.pop() if len(checked) == 1 else "partly",
        }
        row.update(zip(group["benchmark"], group["miou"]))
        rows.append(row)
    return rows


def _reproduced_rows(runs: Sequence[Run], reported: pd.DataFrame) -> list[dict[str, Any]]:
    claimed = reported[reported["preset"] != ""]
    variant_of = dict(
        zip(zip(claimed["method"], claimed["preset"], claimed["overrides"]), claimed["variant"])
    )
    published = dict(
        zip(zip(reported["method"], reported["variant"], reported["benchmark"]), reported["miou"])
    )
    entries: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        entries.setdefault(tuple(run_fields(run.record).values()), []).append(run)
    rows = []
    for key, group in entries.items():
        fields = dict(zip(RUN_COLUMNS, key))
        variant = variant_of.get((fields["method"], fields["preset"], fields["overrides"]), "")
        row: dict[str, Any] = {
            **fields,
            "variant": variant,
            "kind": "reproduced",
            "date": max(group, key=lambda r: r.when).record.date,
            "provenance": "",
            "checked": "",
        }
        for run in group:
            benchmark = run.record.benchmark
            row[benchmark] = value = round(miou(run.record), 2)
            target = published.get((fields["method"], variant, benchmark))
            if target is not None:
                row[f"{benchmark}_published"] = target
                row[f"{benchmark}_diff"] = round(value - target, 2)
        rows.append(row)
    return rows


def summary_table(runs: Sequence[Run], reported: pd.DataFrame, benchmarks: Sequence[str]) -> pd.DataFrame:
    """One row per published variant and one per reproduced run.

    Per benchmark ``b``: ``b`` is the row's mIoU; for a reproduced run that matches a published
    variant, ``b_published`` is the published number and ``b_diff`` = reproduced - published.
    ``average`` is over the benchmarks the row covers, except that a reproduced run compared with a
    published variant is averaged over the benchmarks it shares with it only, so the two averages
    compare the same set (``published_average`` is the variant's over that set); ``benchmarks``
    counts the averaged benchmarks. ``average_diff`` is the mean of the differences.
    Suite columns follow (:mod:`textseg.leaderboard.suites`: e.g. MESS's domain averages).
    """
    triples = [c for b in benchmarks for c in (b, f"{b}_published", f"{b}_diff")]
    columns = [*SUMMARY_COLUMNS, *triples, "average", "benchmarks", "published_average", "average_diff"]
    table = pd.DataFrame(_published_rows(reported) + _reproduced_rows(runs, reported), columns=columns)
    numbers = table[triples].astype(float)
    table[triples] = numbers
    values = numbers[list(benchmarks)]
    published = numbers[[f"{b}_published" for b in benchmarks]].set_axis(list(benchmarks), axis=1)
    compared = published.notna()
    matched = compared.any(axis=1).to_numpy()[:, None]
    averaged = pd.DataFrame(
        np.where(matched, compared, values.notna()), index=values.index, columns=values.columns
    )
    table["average"] = values.where(averaged).mean(axis=1).round(2)
    table["benchmarks"] = averaged.sum(axis=1).astype(int)
    table["published_average"] = published.where(compared).mean(axis=1).round(2)
    table["average_diff"] = numbers[[f"{b}_diff" for b in benchmarks]].mean(axis=1).round(2)
    add_suite_columns(table, benchmarks)
    return table.sort_values(_SORT, kind="stable").reset_index(drop=True)


def _class_order(benchmark: str, names: Iterable[str]) -> list[str]:
    """Label order when the benchmark is installed and knows every name, else first-seen order."""
    names = list(dict.fromkeys(names))
    try:
        classes = list(BENCHMARKS.get(benchmark).classes) if benchmark in BENCHMARKS else []
    except RegistryError:
        classes = []
    return [c for c in classes if c in names] if set(names) <= set(classes) else names


def class_tables(runs: Sequence[Run]) -> dict[str, pd.DataFrame]:
    """Per benchmark: one row per reproduced run with mIoU, mAcc, aAcc and every class's IoU."""
    tables = {}
    for benchmark in sorted({r.record.benchmark for r in runs}):
        group = [r.record for r in runs if r.record.benchmark == benchmark]
        classes = _class_order(benchmark, (c for r in group for c in r.per_class_iou))
        rows = [
            {
                **run_fields(r),
                "benchmark_version": r.benchmark_version,
                "protocol_version": r.protocol_version,
                "date": r.date,
                **{k: r.metrics[k] for k in ("mIoU", "mAcc", "aAcc")},
                **{c: r.per_class_iou.get(c) for c in classes},
            }
            for r in group
        ]
        table = pd.DataFrame(rows)
        numeric = ["mIoU", "mAcc", "aAcc", *classes]
        table[numeric] = table[numeric].astype(float)
        tables[benchmark] = table.sort_values(RUN_COLUMNS, kind="stable").reset_index(drop=True)
    return tables


def other_versions_table(others: Sequence[OtherVersion]) -> pd.DataFrame:
    """Records of other benchmark or protocol versions, one row each (never ranked)."""
    rows = [
        {
            **run_fields(o.run.record),
            "benchmark": o.run.record.benchmark,
            "benchmark_version": o.run.record.benchmark_version,
            "protocol_version": o.run.record.protocol_version,
            "mIoU": miou(o.run.record),
            "date": o.run.record.date,
            "reason": o.reason,
            "file": o.run.path.as_posix(),
        }
        for o in others
    ]
    return pd.DataFrame(rows)
