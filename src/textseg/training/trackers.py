"""Experiment trackers through Accelerate: a CSV file always, TensorBoard and W&B when installed."""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker

from textseg.errors import ConfigError
from textseg.io import atomic_open

#: Tracker names -> (module that must be importable, pip extra that installs it).
_OPTIONAL = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


class CSVTracker(GeneralTracker):
    """Appends ``step,name,value`` rows to ``metrics.csv`` (long format: names may differ per step).

    ``pandas.read_csv(path).pivot_table(index="step", columns="name", values="value")`` gives the
    wide table. On resume, rows after the resumed step (from the interrupted run) are dropped.
    """

    name = "csv"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.resume_step = resume_step

    def start(self) -> None:
        """Called by Accelerate on the main process only."""
        resume_step = self.resume_step
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
            with atomic_open(self.path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=["step", "name", "value"])
                writer.writeheader()
                writer.writerows(rows)

    @property
    def tracker(self) -> Any:
        return self

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        """The run configuration is in ``run.json``; nothing to add here."""

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["step", "name", "value"])
            writer.writerows([step, key, value] for key, value in sorted(values.items()))


def build_trackers(names: Sequence[str], run_dir: Path, resume_step: int | None) -> list[Any]:
    """Accelerate ``log_with`` entries for ``names``; a missing optional tracker names its extra."""
    trackers: list[Any] = []
    for name in names:
        if name == "csv":
            trackers.append(CSVTracker(run_dir / "metrics.csv", resume_step))
        elif name in _OPTIONAL:
            module, extra = _OPTIONAL[name]
            if importlib.util.find_spec(module) is None:
                raise ConfigError(
                    f"train.trackers includes {name!r} but it is not installed: pip install 'textseg[{extra}]'"
                )
            trackers.append(name)
        else:
            raise ConfigError(
                f"unknown tracker {name!r} in train.trackers (known: csv, {', '.join(_OPTIONAL)})"
            )
    return trackers
