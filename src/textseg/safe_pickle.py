"""The one way textseg reads pickled data: nothing in a user's file can run code.

PyTorch files are pickles, and a pickle names functions that the reader imports and calls: a file
passed as weights, a checkpoint to resume or a cached embedding could otherwise run anything.
:class:`RestrictedUnpickler` resolves only what tensors, storages and plain containers need
(dtypes, devices, sizes, ``OrderedDict``, ``set``, NumPy arrays for RNG states, and textseg's own
re-implementations of torch's tensor-rebuilding functions). Every other name becomes an inert
:class:`Ignored` stand-in, recorded by its dotted name so the caller can report it; its arguments
and state are dropped and it is never called.

:func:`load` reads every format ``torch.save`` writes, without ``torch.load``:

* zip archives (torch >= 1.6): ``<root>/data.pkl`` plus raw storages ``<root>/data/<key>``;
  TorchScript archives are zip archives too: their module objects become :class:`ScriptObject`
  attribute holders (their code is never compiled) and :func:`named_tensors` names the tensors by
  attribute path (``visual.conv1.weight``), which is how OpenAI's CLIP releases are read;
* the legacy sequential format (``_use_new_zipfile_serialization=False``): magic number, protocol
  version, system info, the object, its storage keys, then each storage's raw bytes;
* the pre-0.4 tar format is refused with a message (nothing current writes it).

A damaged, truncated or foreign file raises :class:`UnreadableFileError` naming the file and what
is wrong, never an unpickling traceback.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import io
import pickle
import struct
import tarfile
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from textseg.errors import TextsegError

#: What ``torch.save`` writes first in the legacy format, and the protocol version after it.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: Errors a damaged or crafted file can raise while being read.
_DAMAGE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    RuntimeError,
    OverflowError,
    MemoryError,
    struct.error,
    zipfile.BadZipFile,
    UnicodeDecodeError,
)


class UnreadableFileError(TextsegError):
    """A file that is not a readable PyTorch file (empty, truncated, damaged, or something else)."""


class Ignored:
    """Stands in for any object a pickle names that is not on the allowlist: built, never run."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Ignored:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


class ScriptObject:
    """A TorchScript module (or other scripted object) of an archive: its attributes only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


@dataclass(frozen=True)
class _StorageType:
    """What a pickle's ``torch.FloatStorage`` (or another storage class) resolves to: its dtype."""

    dtype: torch.dtype


def _storage_types() -> dict[str, _StorageType]:
    """``"FloatStorage"`` -> float32, ... for every storage class torch pickles by name."""
    names = torch.storage._dtype_to_storage_type_map()  # {torch.float32: "FloatStorage", ...}
    return {"UntypedStorage": _StorageType(torch.uint8)} | {
        name: _StorageType(dtype) for dtype, name in names.items() if not name.startswith("Q")
    }


_STORAGE_TYPES = _storage_types()


# -- torch's tensor-rebuilding functions, re-implemented on plain storages --------------------
def _as_tensor(storage: Any, dtype: torch.dtype | None = None) -> Tensor:
    if not isinstance(storage, Tensor):
        raise pickle.UnpicklingError(f"a tensor refers to {type(storage).__name__}, not a storage")
    return storage if dtype is None or storage.dtype == dtype else storage.view(dtype)


def _strided(storage: Tensor, offset: int, size: Any, stride: Any) -> Tensor:
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    return storage.as_strided(size, stride, storage.storage_offset() + int(offset))


def _rebuild_tensor(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> Tensor:
    """``_rebuild_tensor`` / ``_rebuild_tensor_v2``: hooks and metadata are dropped."""
    return _strided(_as_tensor(storage), offset, size, stride)


def _rebuild_tensor_v3(
    storage: Any, offset: int, size: Any, stride: Any, requires_grad: Any, hooks: Any, dtype: Any, *_: Any
) -> Tensor:
    """``_rebuild_tensor_v3``: an untyped (byte) storage viewed as ``dtype``."""
    if not isinstance(dtype, torch.dtype):
        raise pickle.UnpicklingError(f"tensor dtype {dtype!r} is not a torch dtype")
    return _strided(_as_tensor(storage, dtype), offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    """A parameter is read as its tensor (``requires_grad``, hooks and state dropped)."""
    return data


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """``torch._tensor._rebuild_from_type_v2``: the tensor only; ``func`` is allowlisted or inert."""
    return func(*args)


_MULTIARRAY = (np._core if hasattr(np, "_core") else np.core).multiarray  # NumPy 2 / NumPy 1

_ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.bytearray": bytearray,
    "builtins.complex": complex,
    "_codecs.encode": codecs.encode,  # how protocol 2 stores bytes
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
    "torch.device": torch.device,
    "torch.Size": torch.Size,
    "torch.storage.UntypedStorage": _STORAGE_TYPES["UntypedStorage"],
    # NumPy arrays and scalars (the NumPy RNG state in training checkpoints)
    **{
        f"{package}.{name}": getattr(_MULTIARRAY, name)
        for package in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    },
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
}


def _passthrough(value: Any, *_: Any) -> Any:
    return value


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles tensors, storages and plain data; everything else becomes :class:`Ignored`.

    ``storages`` maps a persistent id to a storage tensor (the file format's job). With
    ``torchscript`` set, TorchScript's classes become :class:`ScriptObject` holders and its
    ``torch.jit._pickle`` helpers pass their argument through. ``ignored`` collects what was
    replaced, by dotted name.
    """

    def __init__(self, file: IO[bytes], storages: Any = None, torchscript: bool = False) -> None:
        super().__init__(file)
        self._storages = storages
        self._torchscript = torchscript
        self.ignored: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 writes Python 2 names (``__builtin__.set``); map them as pickle's own find_class does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        dotted = f"{module}.{name}"
        if dotted in _ALLOWED:
            return _ALLOWED[dotted]
        if module == "torch":
            if name in _STORAGE_TYPES:
                return _STORAGE_TYPES[name]
            value = getattr(torch, name, None)
            if isinstance(value, torch.dtype | torch.layout | torch.memory_format):
                return value
        if self._torchscript:
            if module.startswith("__torch__"):
                return ScriptObject
            if module == "torch.jit._pickle" and (name.startswith("build_") or name == "restore_type_tag"):
                return _passthrough
        self.ignored.add(dotted)
        return Ignored

    def persistent_load(self, pid: Any) -> Any:
        if self._storages is None:
            raise pickle.UnpicklingError("this pickle refers to storages outside it")
        return self._storages(pid)


@dataclass(frozen=True)
class Unpickled:
    """What :func:`load` read: the object, the names replaced by stand-ins, and the file's format."""

    value: Any
    ignored: tuple[str, ...]
    format: str  # "zip", "torchscript" or "legacy"


def load(path: str | Path) -> Unpickled:
    """Read a file written by ``torch.save`` (or ``torch.jit.save``) without running its code."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
    if size == 0:
        raise UnreadableFileError(f"{path} is empty")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        if tarfile.is_tarfile(path):
            raise UnreadableFileError(
                f"{path} is a tar archive: either PyTorch's pre-0.4 checkpoint format, which textseg does not "
                "read, or not a checkpoint at all"
            )
        with open(path, "rb") as handle:
            return _load_legacy(handle, size, path)
    except UnreadableFileError:
        raise
    except _DAMAGE as exc:
        raise UnreadableFileError(f"{path} is damaged or not a PyTorch file ({first_line(exc)})") from exc
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read it ({exc.strerror or exc})") from exc


def first_line(exc: BaseException) -> str:
    """``ExceptionType: first line of its message``, for one-line error messages."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_zip(path: Path) -> Unpickled:
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        roots = sorted(n[: -len("data.pkl")] for n in names if n.endswith("data.pkl") and n.count("/") == 1)
        if not roots:
            raise UnreadableFileError(f"{path} is a zip archive but not a PyTorch file (no data.pkl in it)")
        root = roots[0]
        if f"{root}byteorder" in names and archive.read(f"{root}byteorder").strip() == b"big":
            raise UnreadableFileError(
                f"{path} was saved on a big-endian machine; textseg reads little-endian files"
            )
        torchscript = f"{root}constants.pkl" in names or any(n.startswith(f"{root}code/") for n in names)
        cache: dict[str, Tensor] = {}

        def storage(pid: Any) -> Tensor:
            kind, storage_type, key, _location, numel = pid
            if kind != "storage" or not isinstance(storage_type, _StorageType):
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            key = str(key)
            if key not in cache:
                member = f"{root}data/{key}"
                if member not in names:
                    raise pickle.UnpicklingError(f"storage {key} is missing from the archive")
                raw = bytearray(archive.read(member))
                dtype = storage_type.dtype
                if len(raw) != int(numel) * dtype.itemsize:
                    raise pickle.UnpicklingError(
                        f"storage {key} has {len(raw)} bytes, expected {numel} x {dtype}"
                    )
                cache[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            return cache[key]

        unpickler = RestrictedUnpickler(io.BytesIO(archive.read(f"{root}data.pkl")), storage, torchscript)
        value = unpickler.load()
    return Unpickled(value, tuple(sorted(unpickler.ignored)), "torchscript" if torchscript else "zip")


def _load_legacy(handle: IO[bytes], size: int, path: Path) -> Unpickled:
    ignored: set[str] = set()

    def next_pickle(storages: Any = None) -> Any:
        unpickler = RestrictedUnpickler(handle, storages)
        value = unpickler.load()
        ignored.update(unpickler.ignored)
        return value

    magic = next_pickle()
    if magic != LEGACY_MAGIC:
        found = f"; its pickle names {', '.join(sorted(ignored))}" if ignored else ""
        raise UnreadableFileError(
            f"{path} is not a PyTorch file (it does not start with torch.save's header{found}); "
            "nothing in it was run"
        )
    if next_pickle() != LEGACY_PROTOCOL:
        raise UnreadableFileError(f"{path}: unknown PyTorch legacy protocol version")
    info = next_pickle()
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise UnreadableFileError(
            f"{path} was saved on a big-endian machine; textseg reads little-endian files"
        )
    roots: dict[str, Tensor] = {}

    def storage(pid: Any) -> Any:
        kind = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module":  # a pickled nn.Module class with its source: never imported
            ignored.add("a pickled module class")
            return Ignored
        _kind, storage_type, key, _location, numel, view = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        dtype, key = storage_type.dtype, str(key)
        if key not in roots:
            if int(numel) * dtype.itemsize > size:
                raise pickle.UnpicklingError(
                    f"storage {key} claims {numel} elements, more than the file holds"
                )
            roots[key] = torch.empty(int(numel), dtype=dtype)  # filled from the file after the object
        if view is None:
            return roots[key]
        _view_key, offset, length = view
        return roots[key][int(offset) : int(offset) + int(length)]

    value = next_pickle(storage)
    for key in next_pickle():
        target = roots.get(str(key))
        if target is None:
            raise pickle.UnpicklingError(f"storage {key} is listed but never used")
        (numel,) = struct.unpack("<q", _read_exactly(handle, 8))
        if numel != target.numel():
            raise pickle.UnpicklingError(
                f"storage {key} has {numel} elements on disk, expected {target.numel()}"
            )
        target.view(torch.uint8).numpy()[:] = np.frombuffer(
            _read_exactly(handle, numel * target.element_size()), dtype=np.uint8
        )
    return Unpickled(value, tuple(sorted(ignored)), "legacy")


def _read_exactly(handle: IO[bytes], count: int) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise EOFError(f"the file ends {count - len(data)} bytes early")
    return data


def named_tensors(obj: Any) -> dict[str, Tensor]:
    """The tensors of a TorchScript module tree, named by attribute path (``visual.conv1.weight``)."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()

    def collect(node: Any, prefix: str) -> None:
        if isinstance(node, Tensor):
            out[prefix] = node
        elif isinstance(node, ScriptObject) and id(node) not in seen:
            seen.add(id(node))
            for name, value in node.state.items():
                collect(value, f"{prefix}.{name}" if prefix else str(name))

    collect(obj, "")
    return out
