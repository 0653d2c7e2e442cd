"""The training stream: sources split over processes and workers, mixed, shuffled, decoded,
transformed and batched in the data workers, with a state small enough to ride along with every
batch so a checkpoint can restore the exact data position.

Each (process, worker) pair is one *stream slot* out of ``world_size x num_workers``. Per source
and epoch, units are permuted with a seed shared by every slot; a slot reads every
``slots``-th unit, or, when a source has fewer units than there are slots, every unit but only
every ``slots``-th sample of the epoch. Streams repeat forever (epochs reshuffle); the trainer counts
steps. Samples go through a shuffle buffer of undecoded records, then the method's transform
(which may raise :class:`textseg.api.SkipSample`) and collate.

A stream's state is: per source (epoch, unit, position, ordinal, samples this epoch), the
buffer's record locators, the buffer's RNG, the global RNG states the transform draws from
(Python, NumPy, torch: swapped in and out around each batch, so a stream in the main process
does not disturb the trainer's RNG), and the skip counts. Each batch carries its stream's
state after producing it; :class:`StreamLoader` keeps the latest per slot.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from textseg.api import ImageTextSample, SkipSample
from textseg.data.sources import BadSample, RawSample, Source
from textseg.errors import TextsegError

logger = logging.getLogger(__name__)

#: A stream gives up when this many samples in a row are unusable (the data is broken, not noisy).
MAX_CONSECUTIVE_SKIPS = 10_000


class DataError(TextsegError):
    """The training data cannot produce batches (every sample is skipped, or a source is empty)."""


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
def decode(raw: RawSample) -> ImageTextSample:
    """The RGB image and the stripped caption of a raw record; :class:`BadSample` if unusable."""
    caption = raw.caption
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSample("caption is not UTF-8") from None
    caption = (caption or "").strip()
    if not caption:
        raise BadSample("empty caption")
    image = raw.image
    if isinstance(image, Path):
        try:
            image = image.read_bytes()
        except OSError:
            raise BadSample("image file missing or unreadable") from None
    if not isinstance(image, Image.Image):
        try:
            with Image.open(io.BytesIO(image)) as opened:
                image = opened.convert("RGB")
        except Exception:  # untrusted bytes: PIL raises many types for bad or truncated files
            raise BadSample("corrupt image") from None
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return ImageTextSample(image=image, caption=caption, key=raw.key)


# --------------------------------------------------------------------------------------------
# Per-slot reading state
# --------------------------------------------------------------------------------------------
class _Reader:
    """One source as seen by one slot: its units for the current epoch and a cursor into them."""

    def __init__(
        self, source: Source, index: int, seed: int, slot: int, slots: int, cursor: Sequence[int]
    ) -> None:
        self.source, self.index, self.seed, self.slot, self.slots = source, index, seed, slot, slots
        self.epoch, self.unit, self.position, self.ordinal, self.found = (int(v) for v in cursor)
        self._scan: Iterator[Any] | None = None
        self._plan()

    def _plan(self) -> None:
        order = list(range(self.source.num_units))
        random.Random(f"{self.seed}/{self.index}/{self.epoch}").shuffle(order)
        if len(order) >= self.slots:
            self.units, self.stride, self.phase = order[self.slot :: self.slots], 1, 0
        else:
            self.units, self.stride, self.phase = order, self.slots, self.slot

    @property
    def cursor(self) -> list[int]:
        return [self.epoch, self.unit, self.position, self.ordinal, self.found]

    def next(self) -> tuple[tuple[int, int, int], RawSample | None, str | None]:
        """``(locator, raw, None)`` for this slot's next sample, or ``(locator, None, reason)`` for a skip.

        When slots share units, ``ordinal`` counts samples over the whole epoch and this slot takes
        those equal to its ``phase`` modulo ``stride``.
        """
        while True:
            if self.unit >= len(self.units):
                if self.found == 0:
                    raise DataError(
                        f"--data {self.source.name}: a full pass found no sample for stream slot {self.slot} of "
                        f"{self.slots} ({self.source.num_units} units); use fewer data workers or processes, or "
                        "check the files"
                    )
                self.epoch, self.unit, self.position, self.ordinal, self.found = self.epoch + 1, 0, 0, 0, 0
                self._plan()
            unit = self.units[self.unit]
            if self._scan is None:
                self._scan = self.source.scan(unit, self.position)
            record = next(self._scan, None)
            mine = self.ordinal % self.stride == self.phase
            if record is None or record.problem is not None:
                self._scan = None
                self.unit, self.position = self.unit + 1, 0
                if record is None or not mine:
                    continue
                return (self.index, unit, record.position), None, record.problem
            self.position, self.ordinal = record.next_position, self.ordinal + 1
            if not mine:
                continue
            self.found += 1
            locator = (self.index, unit, record.position)
            try:
                return locator, self.source.load(unit, record.handle), None
            except BadSample as exc:
                return locator, None, exc.reason


class _SlotState:
    """Everything one stream slot needs to continue exactly where it stopped."""

    def __init__(self, stream: ImageTextStream, slot: int, saved: Mapping[str, Any] | None) -> None:
        self.slot = slot
        self.stream = stream
        sources = stream.sources
        cursors = saved["cursors"].tolist() if saved else [[0, 0, 0, 0, 0]] * len(sources)
        self.readers = [
            _Reader(s, i, stream.seed, slot, stream.slots, c)
            for i, (s, c) in enumerate(zip(sources, cursors))
        ]
        self.mix = random.Random(f"{stream.seed}/mix/{slot}")
        self.skipped: collections.Counter[str] = collections.Counter()
        self.buffer: list[RawSample] = []
        self.locators = np.zeros((max(1, stream.shuffle_buffer), 3), dtype=np.int64)
        self.rng = _fresh_rng(stream.seed, slot)
        if saved:
            self.mix.setstate(_tuples(saved["mix"]))
            self.skipped.update(saved["skipped"])
            self.rng = {**saved["rng"], "python": _tuples(saved["rng"]["python"])}
            self._restore_buffer(saved["buffer"].numpy())

    def _restore_buffer(self, locators: np.ndarray) -> None:
        try:
            self.buffer = [self.stream.sources[int(s)].fetch(int(u), int(p)) for s, u, p in locators]
        except BadSample as exc:
            raise DataError(
                f"cannot refill the shuffle buffer saved in the checkpoint ({exc.reason}): the data changed "
                "since it was written; resume with the same files"
            ) from None
        self.locators[: len(locators)] = locators

    def next_raw(self) -> RawSample | None:
        """The next record out of the shuffle buffer (None: a skip was counted, ask again)."""
        capacity = self.locators.shape[0]
        pulled = self._pull()
        while pulled and len(self.buffer) < capacity:
            pulled = self._pull()
        if not self.buffer:
            return None
        pick = self.mix.randrange(len(self.buffer))
        last = len(self.buffer) - 1
        self.buffer[pick], self.buffer[last] = self.buffer[last], self.buffer[pick]
        self.locators[[pick, last]] = self.locators[[last, pick]]
        return self.buffer.pop()

    def _pull(self) -> bool:
        """Read one record into the buffer; False when the record was skipped."""
        weights = self.stream.weights
        reader = self.readers[self.mix.choices(range(len(weights)), weights)[0] if len(weights) > 1 else 0]
        locator, raw, reason = reader.next()
        if raw is None:
            self.skip(reason or "unreadable", locator)
            return False
        self.locators[len(self.buffer)] = locator
        self.buffer.append(raw)
        return True

    def skip(self, reason: str, what: Any) -> None:
        self.skipped[reason] += 1
        logger.debug("skipped %s: %s", what, reason)

    def snapshot(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "cursors": torch.tensor([r.cursor for r in self.readers], dtype=torch.int64),
            "buffer": torch.from_numpy(self.locators[: len(self.buffer)].copy()),
            "mix": self.mix.getstate(),
            "rng": dict(self.rng),
            "skipped": dict(self.skipped),
        }


def _tuples(value: Any) -> Any:
    """Lists back to tuples (``random.setstate`` insists on tuples; saved states may hold lists)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _fresh_rng(seed: int, slot: int) -> dict[str, Any]:
    """Global RNG states a slot's transforms start from (derived from the seed and the slot)."""
    mixed = random.Random(f"{seed}/rng/{slot}").getrandbits(63)
    return {
        "python": random.Random(mixed).getstate(),
        **_numpy_state(np.random.RandomState(mixed % 2**32).get_state()),
        "torch": torch.Generator().manual_seed(mixed).get_state(),
    }


def _numpy_state(state: tuple[Any, ...]) -> dict[str, Any]:
    """NumPy's legacy global state as tensors and numbers (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, cached = state
    return {
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_tail": (int(pos), int(has_gauss), float(cached)),
    }


@contextlib.contextmanager
def _global_rng(state: dict[str, Any]) -> Iterator[None]:
    """Run with the slot's Python/NumPy/torch global RNG states; store them back afterwards."""
    previous = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    random.setstate(state["python"])
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), *state["numpy_tail"]))
    torch.set_rng_state(state["torch"])
    try:
        yield
    finally:
        state.update(_numpy_state(np.random.get_state()))
        state["python"] = random.getstate()
        state["torch"] = torch.get_rng_state()
        random.setstate(previous[0])
        np.random.set_state(previous[1])
        torch.set_rng_state(previous[2])


# --------------------------------------------------------------------------------------------
# The dataset the DataLoader iterates
# --------------------------------------------------------------------------------------------
class ImageTextStream(IterableDataset):
    """Yields ``(batch, state)`` forever; see the module docstring.

    ``resume`` holds one saved state per worker, in the order the DataLoader will ask its workers
    (worker ``i`` takes ``resume[i]``, whatever slot that state belongs to).
    """

    def __init__(
        self,
        sources: Sequence[Source],
        transform: Callable[[ImageTextSample], Any],
        collate: Callable[[list[Any]], Any],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        resume: Sequence[Mapping[str, Any]] | None = None,
        max_skips_in_a_row: int = MAX_CONSECUTIVE_SKIPS,
    ) -> None:
        super().__init__()
        self.sources = list(sources)
        self.weights = mixing_weights(self.sources)
        self.transform, self.collate, self.batch_size = transform, collate, batch_size
        self.seed, self.shuffle_buffer, self.rank = seed, shuffle_buffer, rank
        self.max_skips_in_a_row = max_skips_in_a_row
        self.workers = max(1, num_workers)
        self.slots = world_size * self.workers
        self.resume = list(resume) if resume else None
        if self.resume is not None and len(self.resume) != self.workers:
            raise ValueError(f"resume holds {len(self.resume)} states for {self.workers} workers")

    def initial_slots(self) -> list[int]:
        """The slot each worker starts with, in worker order."""
        if self.resume is not None:
            return [int(s["slot"]) for s in self.resume]
        return [self.rank * self.workers + i for i in range(self.workers)]

    def __iter__(self) -> Iterator[tuple[Any, dict[str, Any]]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        saved = self.resume[worker] if self.resume is not None else None
        slot = self.initial_slots()[worker]
        state = _SlotState(self, slot, saved if saved and "cursors" in saved else None)
        while True:
            yield self._batch(state), state.snapshot()

    def _batch(self, state: _SlotState) -> Any:
        samples: list[Any] = []
        in_a_row = 0
        with _global_rng(state.rng):
            while len(samples) < self.batch_size:
                raw = state.next_raw()  # None: the reader skipped (and counted) a record
                if raw is not None:
                    try:
                        samples.append(self.transform(decode(raw)))
                        in_a_row = 0
                        continue
                    except BadSample as exc:
                        state.skip(exc.reason, raw.key)
                    except SkipSample as exc:
                        state.skip(f"method: {exc.reason}", raw.key)
                in_a_row += 1
                if in_a_row >= self.max_skips_in_a_row:
                    counts = ", ".join(f"{k}: {v}" for k, v in state.skipped.most_common())
                    raise DataError(f"{in_a_row} samples in a row were unusable ({counts}); check --data")
            return self.collate(samples)


def mixing_weights(sources: Sequence[Source]) -> list[float]:
    """Per-source probabilities of the next sample: ``weight=``, else ``length`` (see ``spec``)."""
    if len(sources) == 1:
        return [1.0]
    weights = [s.spec.weight() or s.length for s in sources]
    missing = [s.spec.text for s, w in zip(sources, weights) if w is None]
    if missing:
        raise DataError(
            f"--data mixes sources, but the size of {', '.join(missing)} is unknown; give each source "
            "length= or weight= (e.g. 'cc3m/{00000..00331}.tar?length=2881393::cc12m/{...}.tar?length=11286526')"
        )
    total = float(sum(weights))  # type: ignore[arg-type]
    return [float(w) / total for w in weights]  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Main-process side
# --------------------------------------------------------------------------------------------
def _keep(item: Any) -> Any:
    return item


class StreamLoader:
    """Iterates a DataLoader over an :class:`ImageTextStream` and remembers, per slot, the state
    after the last batch consumed, in the order the workers will be asked next."""

    def __init__(self, stream: ImageTextStream, num_workers: int, pin_memory: bool = False) -> None:
        self.stream = stream
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        slots = stream.initial_slots()
        self._order = collections.deque(slots)
        initial = stream.resume or [{"slot": s} for s in slots]
        self._latest: dict[int, Mapping[str, Any]] = {int(s["slot"]): s for s in initial}

    def __iter__(self) -> Iterator[Any]:
        loader = DataLoader(
            self.stream,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_keep,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(self.stream.seed),  # keeps the global RNG untouched
            prefetch_factor=2 if self.num_workers else None,
        )
        for batch, state in loader:
            expected = self._order[0]
            if state["slot"] != expected:  # DataLoader asks workers round-robin; resume relies on it
                raise RuntimeError(f"batch from stream slot {state['slot']}, expected slot {expected}")
            self._order.rotate(-1)
            self._latest[expected] = state
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {
            "slots": self.stream.slots,
            "states": [self._latest[s] for s in self._order],
        }

    def skipped(self) -> collections.Counter[str]:
        """Skip counts of this process's slots (cumulative, resumes included)."""
        total: collections.Counter[str] = collections.Counter()
        for state in self._latest.values():
            total.update(state.get("skipped", {}))
        return total
