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

import contextlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textseg import safe_pickle
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


@dataclass(frozen=True)
class TrainedRun:
    """A ``textseg train`` run folder (or one of its checkpoints) given as ``--weights``: which
    checkpoint to load, and the method, preset and settings that built the model."""

    run_dir: Path
    checkpoint: Path
    method: str
    preset: str
    overrides: dict[str, str]


def find_trained_run(path: str | Path) -> TrainedRun | None:
    """The run behind ``path`` when it is a run folder (its newest checkpoint) or a checkpoint
    folder inside one; None for anything else (a weights file, a released name)."""
    path = Path(path).expanduser()
    if (path / TRAINER_STATE).is_file() and (path.parent.parent / RUN_FILE).is_file():
        run_dir, checkpoint = path.parent.parent, path
    elif (path / RUN_FILE).is_file():
        found = list_checkpoints(path)
        if not found:
            raise CheckpointError(
                f"--weights {path}: the run folder has no complete checkpoint in {path / CHECKPOINTS} yet"
            )
        run_dir, checkpoint = path, found[-1][1]
    else:
        return None
    saved = read_json(run_dir / RUN_FILE)
    if not isinstance(saved.get("method"), str) or not isinstance(saved.get("overrides", {}), dict):
        raise CheckpointError(f"{run_dir / RUN_FILE} does not say which method and settings the run used")
    overrides = {str(k): str(v) for k, v in saved.get("overrides", {}).items()}
    return TrainedRun(run_dir, checkpoint, saved["method"], str(saved.get("preset") or ""), overrides)


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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {safe_pickle.first_line(exc)}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"cannot read {path}: it holds a JSON {type(data).__name__}, not an object")
    return data


def read_trainer_state(folder: Path) -> dict[str, Any]:
    """``trainer_state.json`` of checkpoint ``folder`` (its step); unreadable: name the previous checkpoint."""
    with damaged_file_error(folder):
        state = read_json(folder / TRAINER_STATE)
        if not isinstance(state.get("step"), int):
            raise CheckpointError(f"{folder / TRAINER_STATE} has no integer 'step'")
    return state


def read_pickle(path: Path) -> Any:
    """A state file the trainer wrote (optimizer, scheduler, scaler, RNG, data position), read through
    :mod:`textseg.safe_pickle`; one that holds anything but tensors and plain data is refused."""
    loaded = safe_pickle.load(path)
    if loaded.ignored:
        raise safe_pickle.UnreadableFileError(
            f"{path} holds objects textseg never writes there ({', '.join(loaded.ignored)}); nothing was run"
        )
    return loaded.value


def previous_hint(folder: Path) -> str:
    """What to do when checkpoint ``folder`` cannot be resumed: the checkpoint before it, if any."""
    run_dir = folder.parent.parent
    earlier = [path for _, path in list_checkpoints(run_dir) if path.name < folder.name]
    if earlier:
        return f"Resume from the previous checkpoint instead: --resume {earlier[-1]}"
    return "No earlier checkpoint of this run exists; start a new run."


@contextlib.contextmanager
def damaged_file_error(folder: Path) -> Iterator[None]:
    """Turn an unreadable or mismatched file of checkpoint ``folder`` into one line naming the
    file and the previous checkpoint to resume from."""
    try:
        yield
    except TextsegError as exc:
        raise CheckpointError(f"--resume {folder}: {exc}. {previous_hint(folder)}") from exc
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a state that does not fit this run
        raise CheckpointError(
            f"--resume {folder}: its state does not fit this run ({safe_pickle.first_line(exc)}). "
            f"{previous_hint(folder)}"
        ) from exc
