"""A cache of class-name text embeddings, in memory and on disk.

Encoding every class name with every template is the slow part of starting a benchmark on CPU
(COCO-Stuff: 171 names x 80 templates = 13,680 prompts). The embeddings depend only on the text
tower's weights, its tokenizer, the names, the templates and the averaging mode, so they are cached
under a key built from exactly those: the weights are identified by a digest of their bytes, never
by a name, so a fine-tuned or differently converted tower can never read another's entries.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from textseg import safe_pickle
from textseg.io import atomic_path

#: Bump when the meaning of a cached entry changes (e.g. how prompts are encoded).
CACHE_FORMAT = 1


def tensors_digest(named: Iterable[tuple[str, Tensor]], extra: str = "") -> str:
    """sha256 over names, dtypes, shapes and bytes of ``named`` tensors, plus ``extra`` text."""
    digest = hashlib.sha256(extra.encode())
    for name, tensor in sorted(named, key=lambda item: item[0]):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class TextEmbeddingCache:
    """Embeddings keyed by (model identity, names, templates, averaging mode).

    ``directory=None`` keeps entries in memory only. Disk entries are written atomically.
    """

    def __init__(self, directory: str | Path | None = None, max_in_memory: int = 32) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.max_in_memory = max_in_memory
        self._memory: OrderedDict[str, Tensor] = OrderedDict()

    @staticmethod
    def key(identity: str, names: Sequence[str], templates: Sequence[str], average: str) -> str:
        payload = json.dumps([CACHE_FORMAT, identity, list(names), list(templates), average])
        return hashlib.sha256(payload.encode()).hexdigest()

    def _path(self, key: str) -> Path | None:
        return self.directory / f"{key}.pt" if self.directory is not None else None

    def get(self, key: str) -> Tensor | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            loaded = safe_pickle.load(path)
        except safe_pickle.UnreadableFileError:  # a damaged entry is only a cache miss
            return None
        value = loaded.value
        if loaded.ignored or not isinstance(value, Tensor):
            return None
        self._remember(key, value)
        return value

    def put(self, key: str, value: Tensor) -> None:
        value = value.detach().to("cpu", torch.float32).contiguous()
        self._remember(key, value)
        path = self._path(key)
        if path is not None:
            with atomic_path(path) as tmp:
                torch.save(value, tmp)

    def _remember(self, key: str, value: Tensor) -> None:
        self._memory[key] = value
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_in_memory:
            self._memory.popitem(last=False)
