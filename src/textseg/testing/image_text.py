"""Small image-caption datasets in img2dataset's webdataset layout, written offline (tests, scripts).

img2dataset (``--output_format webdataset``) writes ``<folder>/00000.tar``, ``00001.tar``, ... each
holding ``<key>.jpg``, ``<key>.txt`` (the caption) and ``<key>.json`` (metadata) per sample, with
``<key>`` = shard number and sample index zero-padded (``000010005``), plus a ``00000.parquet`` and
a ``00000_stats.json`` beside every shard. This writes the same thing with random images.
"""

from __future__ import annotations

import io
import json
import math
import random
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

WORDS = ("red", "green", "blue", "circle", "square", "dog", "cat", "car", "tree", "sky", "house", "boat")


def image_bytes(rng: np.random.Generator, size: int = 32, fmt: str = "jpeg") -> bytes:
    """A random RGB image encoded as ``fmt``."""
    pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(
    folder: str | Path,
    num_shards: int,
    per_shard: int,
    *,
    image_size: int = 32,
    extension: str = "jpg",
    seed: int = 0,
) -> list[Path]:
    """Write ``num_shards`` img2dataset-style shards of ``per_shard`` samples; returns the tar paths."""
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    words = random.Random(seed)
    fmt = {"jpg": "jpeg", "png": "png", "webp": "webp"}[extension]
    digits = max(1, math.ceil(math.log10(per_shard)))
    paths = []
    for shard in range(num_shards):
        rows = []
        path = folder / f"{shard:05d}.tar"
        with tarfile.open(path, "w") as tar:
            for index in range(per_shard):
                key = f"{shard:05d}{index:0{digits}d}"
                caption = "a photo of a " + " ".join(words.choices(WORDS, k=3))
                meta = {
                    "url": f"https://example.com/{key}.jpg",
                    "caption": caption,
                    "key": key,
                    "status": "success",
                    "error_message": None,
                    "width": image_size,
                    "height": image_size,
                }
                add_member(tar, f"{key}.{extension}", image_bytes(rng, image_size, fmt))
                add_member(tar, f"{key}.txt", caption.encode())
                add_member(tar, f"{key}.json", json.dumps(meta).encode())
                rows.append(meta)
        pd.DataFrame(rows).to_parquet(folder / f"{shard:05d}.parquet")
        stats = {"count": per_shard, "successes": per_shard, "failed_to_download": 0, "failed_to_resize": 0}
        (folder / f"{shard:05d}_stats.json").write_text(json.dumps(stats))
        paths.append(path)
    return paths
