"""Reading results records and deciding which of them are ranked.

* A record that cannot be read, or misses or mistypes a field the leaderboard uses, is named in a
  message and left out; the others still build.
* A record that is not a leaderboard result is listed with its numbers and the reason, but not
  ranked (unless asked, and then its rows carry the reason as a label): it scored part of a split
  (``--limit``, or ``--allow-incomplete`` on an incomplete folder), synthetic data, or a trainable
  method's random initialisation.
* Of several records with the same run key (and the same benchmark and protocol versions), the
  newest by date is kept and the others are named (same date: the last by file name is kept).
* A record whose benchmark or protocol version is not the *current* one is set apart. The current
  version is the installed benchmark's or protocol's; for one that is not installed (a plugin that
  is gone), the newest version among the records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textseg.evaluation.records import RecordError, ResultsRecord, read_record
from textseg.leaderboard.reported import LeaderboardError
from textseg.registry import BENCHMARKS, PROTOCOLS, Registry, RegistryError


@dataclass(frozen=True)
class Run:
    """A readable record and the file it came from."""

    path: Path
    record: ResultsRecord
    when: datetime  # the record's date, timezone-aware

    def describe(self) -> str:
        r = self.record
        words = " ".join(
            filter(None, (r.method, r.preset, *sorted(f"{k}={v}" for k, v in r.overrides.items())))
        )
        return f"{words} on {r.benchmark} ({r.date}, {self.path.as_posix()})"


@dataclass(frozen=True)
class Repeat:
    """Records of one run: the newest is kept, the others are left out."""

    kept: Run
    dropped: tuple[Run, ...]


@dataclass(frozen=True)
class OtherVersion:
    """A record of a benchmark or protocol version that is not the current one."""

    run: Run
    reason: str


def unranked_reason(record: ResultsRecord) -> str:
    """Why a record is not a leaderboard result ("" when it is one)."""
    reasons = []
    if record.limit is not None:
        reasons.append(f"--limit {record.limit}")
    elif not record.complete:
        reasons.append(f"incomplete split: {record.num_images} of {record.expected_images} images")
    if record.synthetic:
        reasons.append("synthetic data")
    if record.random_weights:
        reasons.append("random weights")
    return "; ".join(reasons)


@dataclass(frozen=True)
class Unranked:
    """A readable record that is not a leaderboard result, and why."""

    run: Run
    reason: str


@dataclass
class Selection:
    current: list[Run] = field(default_factory=list)
    unranked: list[Unranked] = field(default_factory=list)
    other_versions: list[OtherVersion] = field(default_factory=list)
    repeats: list[Repeat] = field(default_factory=list)


def find_record_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``*.json`` under the given folders (recursively) and the given files, sorted."""
    found: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.update(p for p in path.rglob("*.json") if p.is_file())
        elif path.is_file():
            found.add(path)
        else:
            raise LeaderboardError(
                f"--results {os.fspath(given)}: no such file or folder "
                "(pass the folder that `textseg bench --output` wrote to)"
            )
    return sorted(found, key=lambda p: p.as_posix())


_TEXT_FIELDS = ("method", "preset", "benchmark", "benchmark_version", "protocol", "protocol_version")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_run(path: Path) -> Run:
    """Read one record and check the fields the leaderboard uses; :class:`RecordError` names the file."""
    record = read_record(path)
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if not isinstance(value, str) or not value:
            raise RecordError(f"{path}: field {name} must be a non-empty string, not {value!r}")
    if not isinstance(record.overrides, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in record.overrides.items()
    ):
        raise RecordError(f"{path}: field overrides must map setting names to strings")
    if record.weights is not None and not isinstance(record.weights, dict):
        raise RecordError(f"{path}: field weights must be an object or null")
    if not isinstance(record.per_class_iou, dict) or not all(
        v is None or _is_number(v) for v in record.per_class_iou.values()
    ):
        raise RecordError(f"{path}: field per_class_iou must map class names to numbers or null")
    if record.limit is not None and not _is_number(record.limit):
        raise RecordError(f"{path}: field limit must be a number or null")
    try:
        when = datetime.fromisoformat(record.date)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{path}: field date {record.date!r} is not an ISO 8601 date") from exc
    return Run(path, record, when if when.tzinfo else when.replace(tzinfo=UTC))


def load_runs(files: Iterable[Path]) -> tuple[list[Run], list[str]]:
    """The readable records, and one message naming the file for each unreadable one."""
    runs, errors = [], []
    for path in files:
        try:
            runs.append(load_run(path))
        except RecordError as exc:
            errors.append(str(exc))
    return runs, errors


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-+]", version))


def _installed_version(registry: Registry[Any], name: str) -> str | None:
    try:
        return str(registry.get(name).version) if name in registry else None
    except RegistryError:
        return None


def current_versions(runs: Sequence[Run], kind: str) -> dict[str, str]:
    """The current version of each ``kind`` (``"benchmark"`` or ``"protocol"``) the runs use."""
    registry: Registry[Any] = BENCHMARKS if kind == "benchmark" else PROTOCOLS
    seen: dict[str, set[str]] = {}
    for run in runs:
        seen.setdefault(getattr(run.record, kind), set()).add(getattr(run.record, f"{kind}_version"))
    return {
        name: _installed_version(registry, name) or max(versions, key=_version_key)
        for name, versions in seen.items()
    }


def select_runs(runs: Sequence[Run], rank_all: bool = False) -> Selection:
    """Split readable records into ranked, unranked, other-version and superseded ones
    (``rank_all``: rank the ones that are not leaderboard results too)."""
    selection = Selection()
    groups: dict[tuple[Any, ...], list[Run]] = {}
    for run in sorted(runs, key=_by_path):
        reason = unranked_reason(run.record)
        if reason and not rank_all:
            selection.unranked.append(Unranked(run, reason))
        else:
            key = (*run.record.run_key, run.record.benchmark_version, run.record.protocol_version, reason)
            groups.setdefault(key, []).append(run)
    kept = []
    for group in groups.values():
        ordered = sorted(group, key=lambda r: (r.when, r.path.as_posix()))
        kept.append(ordered[-1])
        if len(ordered) > 1:
            selection.repeats.append(Repeat(ordered[-1], tuple(ordered[:-1])))
    selection.repeats.sort(key=lambda repeat: _by_path(repeat.kept))
    benchmarks = current_versions(kept, "benchmark")
    protocols = current_versions(kept, "protocol")
    for run in sorted(kept, key=_by_path):
        r = run.record
        reasons = []
        if r.benchmark_version != benchmarks[r.benchmark]:
            reasons.append(
                f"benchmark {r.benchmark} v{r.benchmark_version}, current v{benchmarks[r.benchmark]}"
            )
        if r.protocol_version != protocols[r.protocol]:
            reasons.append(f"protocol {r.protocol} v{r.protocol_version}, current v{protocols[r.protocol]}")
        if reasons:
            selection.other_versions.append(OtherVersion(run, "; ".join(reasons)))
        else:
            selection.current.append(run)
    return selection


def _by_path(run: Run) -> str:
    return run.path.as_posix()
