"""Results records: one JSON file per (method run, benchmark), the single source of the leaderboard.

A record says what was run (method, preset, overrides, resolved config, weights and their sha256,
or ``{"kind": "random-init"}`` for a trainable method scored without weights), on what (benchmark
and its version, protocol and its version and settings, whether the whole split was scored and
whether the data was synthetic), what came out (mIoU / mAcc / aAcc in percent, per-class IoU), how
fast, and in which environment. Records are strict JSON (a metric that is not a number is
``null``), written atomically, and never overwrite an existing file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textseg import __version__
from textseg.errors import TextsegError
from textseg.io import new_temp_file

#: Bump when fields are added, removed or change meaning.
RECORD_SCHEMA = 2
#: Schema 1 records lack ``complete``, ``expected_images`` and ``synthetic``: read with these values
#: (a schema-1 record was complete unless made with ``--limit``; its data was not known to be synthetic).
_SCHEMA_1_DEFAULTS = {"expected_images": None, "synthetic": False}

#: What ``weights`` says for a trainable method scored without any: its random initialisation.
RANDOM_INIT = {"kind": "random-init"}


class RecordError(TextsegError):
    """A record file that cannot be read, with the file and the missing or bad field named."""


@dataclass(frozen=True)
class ResultsRecord:
    method: str
    preset: str
    overrides: dict[str, str]
    config: dict[str, Any]
    weights: (
        dict[str, str | None] | None
    )  # None: the method's own pretrained backbone (its config says which)
    benchmark: str
    benchmark_version: str
    protocol: str
    protocol_version: str
    protocol_settings: dict[str, Any]
    synonyms: str | None
    metrics: dict[str, float | None]  # mIoU, mAcc, aAcc in percent (None: not a number)
    per_class_iou: dict[
        str, float | None
    ]  # percent; None where the class is absent from labels and predictions
    num_images: int
    limit: int | None  # set when only the first N images were scored (not a leaderboard result)
    complete: bool  # the benchmark's whole split was scored
    expected_images: int | None  # the split's size (None: the benchmark does not declare one)
    synthetic: bool  # scored on data written by `textseg data synthetic` (never a leaderboard result)
    images_per_second: float
    seconds: float
    precision: str
    device: str
    num_processes: int
    textseg_version: str = __version__
    git_commit: str | None = None
    torch_version: str = ""
    transformers_version: str = ""
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    schema: int = RECORD_SCHEMA

    def to_json(self) -> dict[str, Any]:
        """The record as strict JSON data: NaN and infinite numbers become None (``null``)."""
        return _finite(dataclasses.asdict(self))

    @property
    def random_weights(self) -> bool:
        return self.weights == RANDOM_INIT

    @property
    def run_key(self) -> tuple[Any, ...]:
        """Records with equal keys are repeats of one run (the leaderboard keeps the newest)."""
        sha = (self.weights or {}).get("sha256")
        return (
            self.method,
            sha,
            self.preset,
            tuple(sorted(self.overrides.items())),
            self.benchmark,
            self.protocol,
        )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def environment() -> dict[str, str | None]:
    """Versions and the textseg git commit (None outside a git checkout), for a new record."""
    from importlib.metadata import version

    return {
        "torch_version": version("torch"),
        "transformers_version": version("transformers"),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The commit of the textseg source tree, with ``-dirty`` if it has uncommitted changes."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def write_record(record: ResultsRecord, output_dir: str | os.PathLike[str]) -> Path:
    """Write ``record`` under ``output_dir`` atomically; an existing file is never replaced."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = record.date.replace(":", "").replace("+0000", "Z")
    stem = "_".join(_slug(p) for p in (record.method, record.preset, record.benchmark, stamp))
    tmp = new_temp_file(output_dir, stem)
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record.to_json(), indent=2, sort_keys=True, allow_nan=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for n in range(1000):
            target = output_dir / (f"{stem}.json" if n == 0 else f"{stem}-{n}.json")
            try:
                os.link(tmp, target)  # atomic, and fails if the target exists: never overwrite
                return target
            except FileExistsError:
                continue
    finally:
        os.unlink(tmp)
    raise RecordError(f"too many records named {stem}*.json in {output_dir}")


def read_record(path: str | os.PathLike[str]) -> ResultsRecord:
    """Parse one record file; a bad file raises :class:`RecordError` naming it and the problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except (OSError, ValueError) as exc:  # ValueError: bad JSON, NaN, or bytes that are not UTF-8
        raise RecordError(f"{path}: not a readable JSON record ({exc})") from exc
    if not isinstance(data, dict):
        raise RecordError(f"{path}: a record must be a JSON object")
    if data.get("schema") == 1:
        data = {**_SCHEMA_1_DEFAULTS, "complete": data.get("limit") is None, **data, "schema": RECORD_SCHEMA}
    if data.get("schema") != RECORD_SCHEMA:
        raise RecordError(
            f"{path}: record schema {data.get('schema')!r}, this textseg reads 1 and {RECORD_SCHEMA}"
        )
    fields = {f.name for f in dataclasses.fields(ResultsRecord)}
    required = {
        f.name
        for f in dataclasses.fields(ResultsRecord)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    missing = sorted(required - data.keys())
    if missing:
        raise RecordError(f"{path}: missing field(s) {', '.join(missing)}")
    unknown = sorted(data.keys() - fields)
    if unknown:
        raise RecordError(f"{path}: unknown field(s) {', '.join(unknown)}")
    metrics = data["metrics"]
    if not isinstance(metrics, dict) or not all(
        k in metrics and (metrics[k] is None or isinstance(metrics[k], int | float))
        for k in ("mIoU", "mAcc", "aAcc")
    ):
        raise RecordError(f"{path}: metrics must hold mIoU, mAcc and aAcc, each a number or null")
    return ResultsRecord(**data)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON (records are strict JSON: a missing number is null)")
