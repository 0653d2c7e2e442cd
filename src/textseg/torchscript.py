"""Reading the tensors of a TorchScript archive without running it.

OpenAI released CLIP as TorchScript archives (``ViT-B-16.pt``). ``torch.jit.load`` would compile
and run the archive's code, and ``torch.load(weights_only=True)`` refuses such files. This reader
unpickles the archive's ``data.pkl`` with every class replaced by a state-only placeholder and
tensors rebuilt from the archive's raw storages, so nothing executable is imported; the module
tree gives the tensors their dotted names (``visual.conv1.weight``, ...).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from textseg.errors import WeightsError

_STORAGE_DTYPES = {
    "HalfStorage": torch.float16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class _ScriptObject:
    """Stands in for a TorchScript module (or any other object) of the archive: keeps its state only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


def _rebuild_tensor(storage: Tensor, offset: int, size: Any, stride: Any, *args: Any) -> Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def _passthrough(value: Any, *args: Any) -> Any:
    return value


class _ArchiveUnpickler(pickle.Unpickler):
    """Rebuilds tensors from the archive's storages; every class becomes a state-only placeholder."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.root = root

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name.startswith(("build_", "restore_type_tag")):
            return _passthrough
        return _ScriptObject

    def persistent_load(self, pid: Any) -> Tensor:
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = bytearray(self.archive.read(f"{self.root}data/{key}"))
        return (
            torch.frombuffer(raw, dtype=storage_type.dtype, count=numel)
            if numel
            else torch.empty(0, dtype=storage_type.dtype)
        )


def _collect(obj: Any, prefix: str, out: dict[str, Tensor], seen: set[int]) -> None:
    if isinstance(obj, Tensor):
        out[prefix] = obj
    elif isinstance(obj, _ScriptObject) and id(obj) not in seen:
        seen.add(id(obj))
        for name, value in obj.state.items():
            _collect(value, f"{prefix}.{name}" if prefix else str(name), out, seen)


def torchscript_root(path: Path) -> str | None:
    """The archive's top folder (``"ViT-B-16/"``) if ``path`` is a TorchScript archive, else None."""
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    for name in names:
        root, _, rest = name.partition("/")
        if rest == "constants.pkl" or rest.startswith("code/"):
            return root + "/"
    return None


def read_torchscript(path: Path) -> dict[str, Tensor]:
    """The named tensors of a TorchScript archive (module attributes joined with dots), safely."""
    root = torchscript_root(path)
    if root is None:
        raise WeightsError(f"{path} is not a TorchScript archive")
    with zipfile.ZipFile(path) as archive:
        try:
            obj = _ArchiveUnpickler(archive.read(f"{root}data.pkl"), archive, root).load()
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise WeightsError(f"{path}: cannot read the TorchScript archive ({exc})") from exc
    tensors: dict[str, Tensor] = {}
    _collect(obj, "", tensors, set())
    if not tensors:
        raise WeightsError(f"{path}: the TorchScript archive holds no tensors")
    return tensors
