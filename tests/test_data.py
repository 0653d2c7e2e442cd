"""Image-text data: the --data syntax, every source on a small real dataset written here, skips that are
counted and never fatal, splitting over processes/workers, mixing, and exact resume of the stream."""

from __future__ import annotations

import io
import random
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from textseg.api import SkipSample
from textseg.data.sources import open_source
from textseg.data.spec import DataSpecError, expand_braces, parse_data_spec
from textseg.data.stream import DataError, ImageTextStream, StreamLoader, mixing_weights
from textseg.testing.image_text import add_member, image_bytes, write_shards


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def describe(sample: dict[str, Any]) -> tuple[str, str, tuple[int, int]]:
    """A transform that keeps what the tests check."""
    return sample["key"], sample["caption"], sample["image"].size


def first(samples: list[Any]) -> Any:
    return samples[0]


def stream(spec: str, transform=describe, **kwargs: Any) -> ImageTextStream:
    sources = [open_source(s) for s in parse_data_spec(spec)]
    kwargs.setdefault("shuffle_buffer", 0)
    return ImageTextStream(sources, transform, first, 1, **kwargs)


def take(data: ImageTextStream, n: int) -> tuple[list[Any], dict[str, Any]]:
    iterator = iter(data)
    items, state = [], {}
    for _ in range(n):
        item, state = next(iterator)
        items.append(item)
    return items, state


def first_epoch(data: ImageTextStream, limit: int = 200) -> list[Any]:
    """Samples a slot yields before any of its sources starts a second epoch."""
    items = []
    for item, state in iter(data):
        if state["cursors"][:, 0].max() > 0 or len(items) >= limit:
            return items
        items.append(item)
    return items


# --------------------------------------------------------------------------------------------
# spec
# --------------------------------------------------------------------------------------------
def test_brace_ranges_keep_padding_and_lists_multiply() -> None:
    assert expand_braces("s/{00008..00011}.tar") == [f"s/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/{1..2}.tar") == ["a/1.tar", "a/2.tar", "b/1.tar", "b/2.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_spec_kinds_options_and_errors(tmp_path: Path) -> None:
    write_shards(tmp_path / "shards", 1, 2)
    specs = parse_data_spec(
        [f"{tmp_path}/shards/{{00000..00000}}.tar?length=10&weight=2::hf:user/set?split=val&caption=text"]
    )
    assert [s.kind for s in specs] == ["tar", "hf"]
    assert specs[0].length() == 10 and specs[0].weight() == 2.0
    assert specs[1].location == "user/set" and specs[1].options == {"split": "val", "caption": "text"}
    assert parse_data_spec(str(tmp_path / "shards"))[0].kind == "tar"  # a folder of shards
    with pytest.raises(DataSpecError, match=r"unknown option.*sep"):
        parse_data_spec("x.tar?sep=,")
    with pytest.raises(DataSpecError, match="write hf:user/set"):
        parse_data_spec("user/set")
    with pytest.raises(DataSpecError, match="2 of 3 files do not exist"):
        open_source(parse_data_spec(f"{tmp_path}/shards/{{00000..00002}}.tar")[0])


# --------------------------------------------------------------------------------------------
# tar shards in img2dataset's layout
# --------------------------------------------------------------------------------------------
def write_damaged_shard(path: Path) -> set[str]:
    """A shard holding good samples (jpg, png, webp) and every kind of bad one; returns the good keys."""
    rng = np.random.default_rng(1)
    with tarfile.open(path, "w") as tar:
        add_member(tar, "000020000.jpg", image_bytes(rng, 20))
        add_member(tar, "000020000.txt", b"a good jpg")
        add_member(tar, "000020000.json", b"{}")
        add_member(tar, "000020001.jpg", b"\xff\xd8 not really a jpeg")
        add_member(tar, "000020001.txt", b"a corrupt image")
        add_member(tar, "000020002.png", image_bytes(rng, 24, "png"))
        add_member(tar, "000020002.txt", b"   \n")
        add_member(tar, "000020003.webp", image_bytes(rng, 16, "webp"))
        add_member(tar, "000020003.txt", b"a good webp")
        add_member(tar, "000020004.jpg", image_bytes(rng, 20))
        add_member(tar, "000020005.png", image_bytes(rng, 12, "png"))
        add_member(tar, "000020005.txt", b"a good png")
        add_member(tar, "000020006.txt", b"cut short")
        add_member(tar, "000020006.jpg", image_bytes(rng, 64))
    data = path.read_bytes()
    cut = data.index(b"cut short") + 2048  # inside the last jpg's data
    path.write_bytes(data[:cut])
    return {"000020000", "000020003", "000020005"}


def test_tar_shards_skip_and_count_every_damaged_sample(tmp_path: Path) -> None:
    write_shards(tmp_path, 2, 3)
    good = write_damaged_shard(tmp_path / "00002.tar")
    good |= {f"0000{s}{i}" for s in range(2) for i in range(3)}
    data = stream(f"{tmp_path}/{{00000..00002}}.tar")
    items, state = take(data, 2 * len(good))
    keys = [key for key, _, _ in items]
    assert set(keys[: len(good)]) == good and len(set(keys[: len(good)])) == len(good)
    skipped = state["skipped"]
    for reason in ("corrupt image", "empty caption", "no caption member", "truncated tar member"):
        assert 1 <= skipped[reason] <= 2, skipped
    by_key = {key: (caption, size) for key, caption, size in items}
    assert by_key["000020003"] == ("a good webp", (16, 16))
    assert by_key["000020005"] == ("a good png", (12, 12))


def test_shards_are_split_over_slots_without_overlap(tmp_path: Path) -> None:
    write_shards(tmp_path, 3, 4)
    spec = f"{tmp_path}/{{00000..00002}}.tar"
    everything = {f"0000{s}{i}" for s in range(3) for i in range(4)}
    for slots in (2, 5):  # fewer slots than shards (shards split), more (samples strided)
        seen: Counter[str] = Counter()
        for slot in range(slots):
            seen.update(key for key, _, _ in first_epoch(stream(spec, rank=slot, world_size=slots)))
        assert set(seen) == everything and set(seen.values()) == {1}, (slots, seen)


def test_method_skips_are_counted_and_a_hopeless_source_fails(tmp_path: Path) -> None:
    write_shards(tmp_path, 1, 6)

    def no_dogs(sample: dict[str, Any]) -> str:
        if "dog" in sample["caption"]:
            raise SkipSample("mentions a dog")
        return sample["caption"]

    captions, state = take(stream(f"{tmp_path}/00000.tar", no_dogs), 6)
    assert not any("dog" in c for c in captions)
    assert state["skipped"]["method: mentions a dog"] > 0

    def refuse(sample: dict[str, Any]) -> str:
        raise SkipSample("never")

    with pytest.raises(DataError, match="in a row were unusable"):
        take(stream(f"{tmp_path}/00000.tar", refuse, max_skips_in_a_row=20), 1)


# --------------------------------------------------------------------------------------------
# tables and hub datasets
# --------------------------------------------------------------------------------------------
def write_images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8 + i, 10, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        names.append(f"images/img{i}.png")
    return names


def read_all(spec: str, n: int) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    items, state = take(stream(spec), n)
    return {caption: size for _, caption, size in items}, state["skipped"]


def test_local_hf_dataset_from_save_to_disk(tmp_path: Path) -> None:
    import datasets

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (6 + i, 9, 3), dtype=np.uint8)) for i in range(5)]
    captions = [f"caption number {i}" for i in range(5)]
    ds = datasets.Dataset.from_dict({"jpg": images, "txt": captions, "other": list(range(5))})
    ds.cast_column("jpg", datasets.Image()).save_to_disk(str(tmp_path / "saved"))
    for spec in (f"hf:{tmp_path}/saved", f"{tmp_path}/saved?image=jpg&caption=txt"):
        found, skipped = read_all(spec, 5)
        assert found == {c: (9, 6 + i) for i, c in enumerate(captions)} and not skipped


def test_parquet_table_of_image_paths(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = write_images(tmp_path / "images", 5)
    table = pa.table({"path": [*names, "images/missing.png"], "caption": [f"c{i}" for i in range(6)]})
    pq.write_table(table, tmp_path / "pairs.parquet", row_group_size=2)  # 3 row groups = 3 units
    source = open_source(parse_data_spec(str(tmp_path / "pairs.parquet"))[0])
    assert (source.num_units, source.length, source.image_column) == (3, 6, "path")
    found, skipped = read_all(str(tmp_path / "pairs.parquet"), 10)
    assert found == {f"c{i}": (10, 8 + i) for i in range(5)}
    assert skipped["image file missing or unreadable"] >= 1


def test_csv_and_tsv_tables(tmp_path: Path) -> None:
    names = write_images(tmp_path / "images", 3)
    (tmp_path / "pairs.csv").write_text(
        "file_name,caption\n"
        f'{names[0]},"a caption, with a comma"\n'
        f'{names[1]},"two\nlines"\n'
        f"{names[2]},plain\n"
    )
    found, _ = read_all(str(tmp_path / "pairs.csv"), 3)
    assert found == {"a caption, with a comma": (10, 8), "two\nlines": (10, 9), "plain": (10, 10)}
    (tmp_path / "pairs.tsv").write_text(
        "url\tcaption\n" + "".join(f'{n}\tsays "hi" {i}\n' for i, n in enumerate(names))
    )
    found, _ = read_all(f"{tmp_path}/pairs.tsv?image=url", 3)
    assert set(found) == {f'says "hi" {i}' for i in range(3)}
    (tmp_path / "urls.csv").write_text("url,caption\nhttps://example.com/a.jpg,a\n")
    with pytest.raises(DataSpecError, match="holds URLs"):
        open_source(parse_data_spec(f"{tmp_path}/urls.csv?image=url")[0])


# --------------------------------------------------------------------------------------------
# mixing and resume
# --------------------------------------------------------------------------------------------
def test_mixing_follows_lengths_or_weights(tmp_path: Path) -> None:
    write_shards(tmp_path / "a", 1, 4, seed=1)
    write_shards(tmp_path / "b", 1, 4, seed=2)
    a, b = f"{tmp_path}/a/00000.tar", f"{tmp_path}/b/00000.tar"
    sources = [open_source(s) for s in parse_data_spec(f"{a}?length=300::{b}")]
    assert sources[1].length == 4  # from img2dataset's 00000_stats.json
    assert mixing_weights(sources) == pytest.approx([300 / 304, 4 / 304])
    items, _ = take(stream(f"{a}?weight=3::{b}?weight=1"), 400)
    share = (
        sum(key.startswith("00000") and caption in _captions(tmp_path / "a") for key, caption, _ in items)
        / 400
    )
    assert 0.65 < share < 0.85
    (tmp_path / "b" / "00000_stats.json").unlink()
    with pytest.raises(DataError, match=r"size of .* is unknown"):
        mixing_weights([open_source(s) for s in parse_data_spec(f"{a}::{b}")])


def _captions(folder: Path) -> set[str]:
    with tarfile.open(folder / "00000.tar") as tar:
        return {tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")}


class NoisyTransform:
    """Draws from every global RNG the way augmentations do (picklable, for the workers)."""

    def __call__(self, sample: dict[str, Any]) -> dict[str, torch.Tensor]:
        pixels = torch.from_numpy(np.asarray(sample["image"], dtype=np.float32)).mean()
        noise = torch.rand(2) + random.random() + float(np.random.rand())
        return {"x": pixels + noise, "caption_length": torch.tensor(len(sample["caption"]))}


def _batches(loader: StreamLoader, n: int, iterator: Any = None) -> tuple[list[dict[str, torch.Tensor]], Any]:
    iterator = iterator or iter(loader)
    return [next(iterator) for _ in range(n)], iterator


@pytest.mark.parametrize("workers", [0, 2])
def test_stream_resumes_exactly_with_workers_buffer_and_rng(tmp_path: Path, workers: int) -> None:
    from torch.utils.data import default_collate

    write_shards(tmp_path, 3, 5)
    write_damaged_shard(tmp_path / "00003.tar")
    spec = f"{tmp_path}/{{00000..00003}}.tar"

    def loader(resume: Any = None) -> StreamLoader:
        sources = [open_source(s) for s in parse_data_spec(spec)]
        data = ImageTextStream(
            sources,
            NoisyTransform(),
            default_collate,
            3,
            seed=7,
            shuffle_buffer=6,
            num_workers=workers,
            resume=resume,
        )
        return StreamLoader(data, workers)

    first_run = loader()
    _, iterator = _batches(first_run, 5)
    saved = io.BytesIO()
    torch.save(first_run.state_dict(), saved)
    expected, _ = _batches(first_run, 7, iterator)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)
    resumed = loader(state["states"])
    got, _ = _batches(resumed, 7)
    for a, b in zip(expected, got):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["caption_length"], b["caption_length"])
    assert resumed.skipped() == first_run.skipped() and sum(first_run.skipped().values()) > 0
