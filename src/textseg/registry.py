"""Registries of methods, benchmarks and protocols.

Entries come from the entry-point groups ``textseg.methods``, ``textseg.benchmarks``,
``textseg.protocols`` and ``textseg.suites`` (named groups of benchmarks, :mod:`textseg.suite`). textseg registers its own built-ins through those groups in its
pyproject, so a built-in and an outside plugin take the same path. Nothing is imported until a
name is asked for. Setting ``TEXTSEG_DISABLE_PLUGINS=1`` ignores every distribution but textseg
itself, for hermetic runs.
"""

from __future__ import annotations

import difflib
import importlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from textseg.errors import TextsegError

if TYPE_CHECKING:
    from textseg.api import MethodSpec
    from textseg.benchmark import BenchmarkSpec
    from textseg.evaluation.protocol import Protocol
    from textseg.suite import Suite

T = TypeVar("T")

DISABLE_PLUGINS_ENV = "TEXTSEG_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "textseg"


class RegistryError(TextsegError, LookupError):
    """Base class for lookup failures in a registry."""


class UnknownNameError(RegistryError):
    """No entry has this name; the message lists close matches."""


class DuplicateNameError(RegistryError):
    """Two sources register the same name; the message names both."""


class PluginLoadError(RegistryError):
    """An entry point could not be imported, or gave an object of the wrong kind."""


def plugins_disabled() -> bool:
    return os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Entry:
    """Where a registered name comes from (its object is loaded only on demand)."""

    name: str
    target: str
    distribution: str | None = None
    version: str | None = None

    @property
    def builtin(self) -> bool:
        return _normalise(self.distribution or "") == BUILTIN_DISTRIBUTION

    @property
    def origin(self) -> str:
        if self.builtin:
            return "built-in"
        if self.distribution:
            return f"plugin {self.distribution} {self.version or ''}".rstrip()
        return "registered at runtime"


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One row of :meth:`Registry.listing`: the loaded object, or the error that loading raised."""

    entry: Entry
    item: T | None
    error: str | None


def _normalise(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


def _load_target(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """A name -> object registry filled lazily from one entry-point group.

    ``expected`` is the ``"module:Class"`` every entry must be an instance of; it is imported
    only when the first entry is loaded, so this module stays import-light.
    """

    def __init__(self, group: str, kind: str, expected: str) -> None:
        self.group = group
        self.kind = kind
        self._expected = expected
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] | None = None
        self._loaders: dict[str, Callable[[], Any]] = {}
        self._conflicts: dict[str, list[Entry]] = {}
        self._loaded: dict[str, T] = {}

    # -- discovery ---------------------------------------------------------------------------
    def _discover(self) -> dict[str, Entry]:
        with self._lock:
            if self._entries is None:
                self._entries = {}
                hermetic = plugins_disabled()
                for ep in metadata.entry_points(group=self.group):
                    dist = ep.dist
                    entry = Entry(
                        name=ep.name,
                        target=ep.value,
                        distribution=dist.metadata["Name"] if dist is not None else None,
                        version=dist.version if dist is not None else None,
                    )
                    if hermetic and not entry.builtin:
                        continue
                    self._add(entry, ep.load, strict=False)
            return self._entries

    def _add(self, entry: Entry, loader: Callable[[], Any], *, strict: bool) -> None:
        assert self._entries is not None
        previous = self._entries.get(entry.name) or next(iter(self._conflicts.get(entry.name, [])), None)
        if previous is not None and previous != entry:
            if strict:
                raise DuplicateNameError(self._duplicate_message(entry.name, [previous, entry]))
            # Discovery must not fail as a whole: the name is poisoned, the others keep working.
            self._conflicts.setdefault(entry.name, [previous]).append(entry)
            self._entries.pop(entry.name, None)
            self._loaders.pop(entry.name, None)
            return
        self._entries[entry.name] = entry
        self._loaders[entry.name] = loader

    def _duplicate_message(self, name: str, entries: list[Entry]) -> str:
        sources = " and ".join(f"{e.origin} ({e.target})" for e in entries)
        return (
            f"{self.kind} {name!r} is registered by more than one source: {sources}. "
            f"Uninstall one of them, or set {DISABLE_PLUGINS_ENV}=1 to use only textseg's built-ins."
        )

    # -- registration at runtime (tests, notebooks, programmatic plugins) ---------------------
    def register(self, name: str, item: T | str, *, distribution: str | None = None) -> None:
        """Add ``item`` (an object, or a ``"module:attr"`` string) under ``name``.

        A name that already exists raises :class:`DuplicateNameError` naming both sources.
        """
        with self._lock:
            self._discover()
            if isinstance(item, str):
                entry = Entry(name, item, distribution)
                loader: Callable[[], Any] = lambda: _load_target(item)  # noqa: E731
            else:
                entry = Entry(name, f"<{type(item).__name__} object>", distribution)
                loader = lambda: item  # noqa: E731
            self._add(entry, loader, strict=True)

    def unregister(self, name: str) -> None:
        """Remove a name (and any conflict recorded for it); unknown names are ignored."""
        with self._lock:
            self._discover()
            assert self._entries is not None
            self._entries.pop(name, None)
            self._loaders.pop(name, None)
            self._conflicts.pop(name, None)
            self._loaded.pop(name, None)

    # -- lookup ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        entries = self._discover()
        return sorted({*entries, *self._conflicts})

    def __contains__(self, name: object) -> bool:
        return name in self._discover()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def entry(self, name: str) -> Entry:
        entries = self._discover()
        self._raise_if_unavailable(name)
        return entries[name]

    def get(self, name: str) -> T:
        """The object registered as ``name``, imported on first use and cached."""
        with self._lock:
            entries = self._discover()
            self._raise_if_unavailable(name)
            if name not in self._loaded:
                entry = entries[name]
                try:
                    item = self._loaders[name]()
                except Exception as exc:  # a plugin may raise anything while importing
                    raise PluginLoadError(
                        f"{self.kind} {name!r} from {entry.origin} ({entry.target}) failed to load: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self._check(entry, item)
                self._loaded[name] = item
            return self._loaded[name]

    def _raise_if_unavailable(self, name: str) -> None:
        if name in self._conflicts:
            raise DuplicateNameError(self._duplicate_message(name, self._conflicts[name]))
        assert self._entries is not None
        if name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        known = self.names()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listing = ", ".join(known) if known else "none installed"
        return f"unknown {self.kind} {name!r}.{hint} Available: {listing}. (`textseg list` shows them all.)"

    def _check(self, entry: Entry, item: Any) -> None:
        expected = _load_target(self._expected)
        if not isinstance(item, expected):
            raise PluginLoadError(
                f"{self.kind} {entry.name!r} from {entry.origin} ({entry.target}) is a "
                f"{type(item).__name__}, not a {expected.__name__}."
            )
        declared = getattr(item, "name", entry.name)
        if declared != entry.name:
            raise PluginLoadError(
                f"{self.kind} registered as {entry.name!r} by {entry.origin} ({entry.target}) "
                f"calls itself {declared!r}; the entry-point name and the object's name must agree."
            )

    def listing(self) -> list[Listing[T]]:
        """Every name with its object, loading each; a broken entry reports its error instead."""
        rows: list[Listing[T]] = []
        for name in self.names():
            if name in self._conflicts:
                entry = self._conflicts[name][0]
                rows.append(Listing(entry, None, self._duplicate_message(name, self._conflicts[name])))
                continue
            entry = self.entry(name)
            try:
                rows.append(Listing(entry, self.get(name), None))
            except RegistryError as exc:
                rows.append(Listing(entry, None, str(exc)))
        return rows

    def reset(self) -> None:
        """Forget discovered entries so the next lookup scans entry points again (tests use this)."""
        with self._lock:
            self._entries = None
            self._loaders.clear()
            self._conflicts.clear()
            self._loaded.clear()


METHODS: Registry[MethodSpec] = Registry("textseg.methods", "method", "textseg.api:MethodSpec")
BENCHMARKS: Registry[BenchmarkSpec] = Registry(
    "textseg.benchmarks", "benchmark", "textseg.benchmark:BenchmarkSpec"
)
PROTOCOLS: Registry[Protocol] = Registry(
    "textseg.protocols", "protocol", "textseg.evaluation.protocol:Protocol"
)
SUITES: Registry[Suite] = Registry("textseg.suites", "suite", "textseg.suite:Suite")
