"""Where training checkpoints live, how they are finalised atomically, pruned and found again.

A run folder holds ``run.json`` (what was trained on what), ``metrics.csv`` and
``checkpoints/step-00001000/``. A checkpoint folder is written under a hidden temporary name by
every process and renamed into place by the main process once all are done, so a folder with
its final name is always complete. It holds:

* ``weights.safetensors``: the method's trainable state (``textseg bench --weights <folder>``);
  a frozen pretrained CLIP is never stored;
* Accelerate's ``optimizer.bin``, ``scheduler.bin``, ``scaler.pt`` (mixed precision) and
  ``random_states_<rank>.pkl`` (Python, NumPy, torch and CUDA RNG of each process);
* ``data_state_<rank>.pt``: each process's data-stream positions and shuffle buffers;
* ``trainer_state.json``: the step and the topology the data state belongs to.
* anything the method's ``export`` hook adds (the ``clip`` method: its CLIP as a CLIP folder ``clip/``).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from textseg.errors import TextsegError

CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"
TRAINER_STATE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


class CheckpointError(TextsegError):
    """A checkpoint or run folder that cannot be resumed from."""


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS / f"step-{step:08d}"


def temporary_dir(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, oldest first."""
    folder = run_dir / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and (path / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def finalize(tmp: Path, final: Path) -> None:
    """Move a fully written checkpoint into place (replacing one of the same step from an older branch)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


def prune(run_dir: Path, keep_last: int) -> None:
    """Delete all but the ``keep_last`` newest checkpoints (0 keeps all)."""
    if keep_last <= 0:
        return
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(path)


def resolve_resume(path: Path) -> tuple[Path, Path]:
    """``(run folder, checkpoint folder)`` for ``--resume``: a checkpoint folder, or a run folder (its newest)."""
    path = path.expanduser()
    if (path / TRAINER_STATE).is_file():
        return path.parent.parent, path
    if not path.is_dir():
        raise CheckpointError(f"--resume {path}: no such folder")
    found = list_checkpoints(path)
    if not found:
        raise CheckpointError(
            f"--resume {path}: no complete checkpoint in {path / CHECKPOINTS} (a run folder written by "
            "`textseg train`, or one of its checkpoints/step-* folders, is expected)"
        )
    return path, found[-1][1]


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
