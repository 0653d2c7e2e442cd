"""Finding, reading, converting and checking method weights (``--weights``).

``--weights`` accepts a released checkpoint's name (``official``: downloaded once into the cache
and verified), a weights file (ours or in the official repository's naming), or a training
checkpoint folder written by ``textseg train``. Files are read without running pickled code
(:mod:`textseg.safe_pickle`): non-tensor objects in old checkpoints (e.g. a pickled config) are
never built, only named on stderr. A checkpoint that does not fit the method fails with the keys
that do not fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from torch import Tensor

from textseg import safe_pickle
from textseg.api import MethodSpec, SegMethod
from textseg.download import download
from textseg.errors import WeightsError, note
from textseg.evaluation.records import RANDOM_INIT
from textseg.io import atomic_path, file_digest
from textseg.paths import cache_dir

#: File names ``textseg train`` writes inside a checkpoint folder, in order of preference.
WEIGHTS_FILENAMES = ("weights.safetensors", "model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class WeightsInfo:
    """What a results record stores about the weights a run used."""

    source: str
    path: str | None
    sha256: str | None


def resolve_weights(spec: MethodSpec, source: str) -> Path:
    """The local file behind ``source``: a known checkpoint name, a file, or a checkpoint folder."""
    if source in spec.checkpoints:
        checkpoint = spec.checkpoints[source]
        if checkpoint.manual_filename:
            path = cache_dir() / "weights" / spec.name / checkpoint.manual_filename
            if not path.is_file():
                raise WeightsError(
                    f"--weights {source}: {spec.name}'s {source} checkpoint cannot be downloaded "
                    f"automatically. Download it by hand from {checkpoint.source} and save it as {path}, "
                    f"or pass the file itself: --weights /path/to/{checkpoint.manual_filename}"
                )
            return path
        if urlparse(checkpoint.source).scheme in ("http", "https"):
            name = Path(urlparse(checkpoint.source).path).name
            return download(
                checkpoint.source,
                cache_dir() / "weights" / spec.name / name,
                sha256=checkpoint.sha256,
                desc=f"{spec.name} {source} weights",
            )
        path = Path(checkpoint.source).expanduser()
    else:
        path = Path(source).expanduser()
    if path.is_dir():
        for filename in WEIGHTS_FILENAMES:
            if (path / filename).is_file():
                return path / filename
        raise WeightsError(
            f"--weights {source}: the folder has none of {', '.join(WEIGHTS_FILENAMES)}. "
            "Pass the weights file itself, or a checkpoint folder written by `textseg train`."
        )
    if not path.is_file():
        known = ", ".join(spec.checkpoints) or "none"
        raise WeightsError(
            f"--weights {source}: no such file or folder, and not a released checkpoint of {spec.name!r} "
            f"(released: {known})."
        )
    return path


def read_state_dict(path: Path) -> tuple[dict[str, Tensor], list[str]]:
    """Tensors of a weights file (``model`` / ``state_dict`` / ``model_state_dict`` entries unwrapped)
    and what was ignored.

    Pickled files go through :mod:`textseg.safe_pickle`: objects other than tensors and plain data
    (e.g. a pickled config) are never built; their names are returned and reported on stderr. A
    damaged, truncated or empty file raises :class:`WeightsError` naming it.
    """
    if path.suffix == ".safetensors":
        return _read_safetensors(path), []
    try:
        loaded = safe_pickle.load(path)
    except safe_pickle.UnreadableFileError as exc:
        raise WeightsError(str(exc)) from exc
    obj = safe_pickle.named_tensors(loaded.value) if loaded.format == "torchscript" else loaded.value
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors")
    if loaded.ignored:
        note(
            f"{path}: {len(loaded.ignored)} pickled object type(s) were not loaded (nothing from the file "
            f"was run): {', '.join(loaded.ignored)}"
        )
    return tensors, list(loaded.ignored)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.stat().st_size == 0:
            raise WeightsError(f"{path} is empty")
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({safe_pickle.first_line(exc)})"
        ) from exc


def _listing(keys: list[str], limit: int = 25) -> str:
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n  {shown}{more}"


def check_and_load(
    method: SegMethod, state: Mapping[str, Tensor], origin: str, what: str | None = None
) -> None:
    """Load ``state`` into ``method`` after checking it fits.

    Keys under ``method.pretrained_prefixes`` may be missing (they come from the pretrained model);
    every other missing key, every unexpected key and every shape mismatch is an error listing them.
    ``origin`` names the file; ``what`` names the weights it should hold (e.g. ``"tcl weights"``).
    """
    expected = method.state_dict()
    prefixes = method.pretrained_prefixes or ("\0",)
    unexpected = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not k.startswith(prefixes))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    )
    what = what or f"{type(method).__name__} weights"
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} keys of the file are not keys of {what}:{_listing(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} keys of {what} are missing from the file:{_listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} keys have the wrong shape:{_listing(mismatched)}")
    if problems:
        raise WeightsError(f"{origin} does not hold {what}:\n" + "\n".join(problems))
    method.load_state_dict(dict(state), strict=False)


def load_weights(method: SegMethod, spec: MethodSpec, source: str) -> WeightsInfo:
    """Resolve ``source``, read it safely, convert from the official naming if needed, check, load.

    A file none of whose keys are this method's is taken to be in the official repository's naming
    and converted; if that fails too, the error says the file fits neither.
    """
    path = resolve_weights(spec, source)
    origin = f"--weights {source} ({path})"
    try:
        state, _ignored = read_state_dict(path)
    except WeightsError as exc:
        raise WeightsError(f"--weights {source}: {exc}. Download it again or pass another file.") from exc
    own = method.state_dict()
    what = f"{spec.name} weights"
    if spec.convert_checkpoint is not None and not any(k in own for k in state):
        try:
            state = spec.convert_checkpoint(state, method)
        except WeightsError as exc:
            raise WeightsError(
                f"{origin} holds neither {what} saved by textseg (none of its keys are) nor {spec.name}'s "
                f"official checkpoint: {exc}"
            ) from exc
        what = f"{spec.name} weights (converted from the official naming)"
    check_and_load(method, state, origin, what)
    return WeightsInfo(source=source, path=str(path), sha256=file_digest(path))


def weights_overrides(spec: MethodSpec, source: str | None) -> dict[str, str]:
    """The settings ``--weights`` fills for a method built straight from its backbone weights.

    Empty unless ``spec.weights_setting`` is set; a released checkpoint name is downloaded (once)
    and a folder is passed as is (it holds the model's config and tokenizer).
    """
    if source is None or spec.weights_setting is None:
        return {}
    path = Path(source).expanduser()
    return {spec.weights_setting: str(path if path.is_dir() else resolve_weights(spec, source))}


def apply_weights(method: SegMethod, spec: MethodSpec, source: str | None) -> dict[str, Any] | None:
    """Give a built method its ``--weights``: load them over it, or, for a method built from them
    (:func:`weights_overrides`), describe them. Returns what a results record says about the weights:
    None when the method runs on its own pretrained backbone, ``{"kind": "random-init"}`` (and a note
    on stderr) when a trainable method gets no weights at all."""
    if source is None:
        if spec.trainable and spec.weights_setting is None:
            note(
                f"{spec.name} runs with randomly initialised weights (no --weights given): its output says "
                "nothing about the method. Pass --weights: a released name "
                f"({', '.join(spec.checkpoints) or 'none'}), a weights file, or a `textseg train` run folder."
            )
            return dict(RANDOM_INIT)
        return None
    if spec.weights_setting is None:
        return dataclasses.asdict(load_weights(method, spec, source))
    path = Path(getattr(method.config, spec.weights_setting))
    if path.is_dir():
        path = next((path / name for name in WEIGHTS_FILENAMES if (path / name).is_file()), path)
    info = WeightsInfo(source=source, path=str(path), sha256=file_digest(path) if path.is_file() else None)
    return dataclasses.asdict(info)


def save_weights(method: SegMethod, path: str | Path) -> Path:
    """Write the method's trainable state (pretrained parts left out) as safetensors, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in method.trainable_state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path
