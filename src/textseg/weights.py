"""Finding, reading, converting and checking method weights (``--weights``).

``--weights`` accepts a released checkpoint's name (``official``: downloaded once into the cache
and verified), a weights file (ours or in the official repository's naming), or a training
checkpoint folder written by ``textseg train``. Files are read without running pickled code:
non-tensor objects in old checkpoints (e.g. a pickled config) are ignored and reported. A
checkpoint that does not fit the method fails with the keys that do not fit.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import torch
from torch import Tensor

from textseg.api import MethodSpec, SegMethod
from textseg.download import download
from textseg.errors import WeightsError
from textseg.io import atomic_path, file_digest
from textseg.paths import cache_dir
from textseg.torchscript import read_torchscript, torchscript_root

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


class _Ignored:
    """Stands in for any non-tensor object found in a checkpoint's pickle."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class _TensorOnlyUnpickler(pickle.Unpickler):
    ignored: ClassVar[set[str]] = set()

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        if module == "torch._utils" and name.startswith("_rebuild_"):
            return super().find_class(module, name)
        if module == "torch" and (name.endswith("Storage") or name in ("Size", "device")):
            return super().find_class(module, name)
        _TensorOnlyUnpickler.ignored.add(f"{module}.{name}")
        return _Ignored


class _TensorOnlyPickle:
    """A ``pickle_module`` for ``torch.load`` that rebuilds tensors and nothing executable."""

    Unpickler = _TensorOnlyUnpickler
    load = staticmethod(pickle.load)


def read_state_dict(path: Path) -> tuple[dict[str, Tensor], list[str]]:
    """Tensors of a weights file (``model`` / ``state_dict`` entries unwrapped) and ignored objects."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), []
    if torchscript_root(path) is not None:  # e.g. OpenAI's CLIP releases; read without running it
        return read_torchscript(path), []
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        ignored: list[str] = []
    except pickle.UnpicklingError:
        _TensorOnlyUnpickler.ignored = set()
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_TensorOnlyPickle)
        ignored = sorted(_TensorOnlyUnpickler.ignored)
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(f"{path} is not a readable PyTorch checkpoint: {exc}") from exc
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors")
    return tensors, ignored


def _listing(keys: list[str], limit: int = 25) -> str:
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n  {shown}{more}"


def check_and_load(method: SegMethod, state: Mapping[str, Tensor], origin: str) -> None:
    """Load ``state`` into ``method`` after checking it fits.

    Keys under ``method.pretrained_prefixes`` may be missing (they come from the pretrained model);
    every other missing key, every unexpected key and every shape mismatch is an error listing them.
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
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} keys fit nowhere in the model:{_listing(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} keys of the model are missing:{_listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} keys have the wrong shape:{_listing(mismatched)}")
    if problems:
        raise WeightsError(f"{origin} does not fit {type(method).__name__}:\n" + "\n".join(problems))
    method.load_state_dict(dict(state), strict=False)


def load_weights(method: SegMethod, spec: MethodSpec, source: str) -> WeightsInfo:
    """Resolve ``source``, read it safely, convert from the official naming if needed, check, load."""
    path = resolve_weights(spec, source)
    state, _ignored = read_state_dict(path)
    own = method.state_dict()
    if spec.convert_checkpoint is not None and not any(k in own for k in state):
        state = spec.convert_checkpoint(state, method)
    check_and_load(method, state, f"--weights {source} ({path})")
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


def apply_weights(method: SegMethod, spec: MethodSpec, source: str | None) -> WeightsInfo | None:
    """Give a built method its ``--weights``: load them over it, or, for a method built from them
    (:func:`weights_overrides`), describe them. The returned info goes into results records."""
    if source is None:
        return None
    if spec.weights_setting is None:
        return load_weights(method, spec, source)
    path = Path(getattr(method.config, spec.weights_setting))
    if path.is_dir():
        path = next((path / name for name in WEIGHTS_FILENAMES if (path / name).is_file()), path)
    return WeightsInfo(source=source, path=str(path), sha256=file_digest(path) if path.is_file() else None)


def save_weights(method: SegMethod, path: str | Path) -> Path:
    """Write the method's trainable state (pretrained parts left out) as safetensors, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in method.trainable_state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path
