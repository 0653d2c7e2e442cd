"""Typed overrides of frozen config dataclasses: ``--set pamr=false --set train.lr=1e-4``.

Configs are plain frozen dataclasses (no YAML, no inheritance chains). A preset is a mapping of
field overrides; the command line adds more. Every value is converted to the field's annotated
type, and an unknown key fails with the valid keys and close matches. A number must be finite, and
a field annotated with a :class:`Range` (``Annotated[float, Range(0, 1)]``, or the aliases
:data:`Probability`, :data:`Positive`, :data:`NonNegative`) must lie in it: a setting out of range
is refused when it is parsed, with the valid range, never used.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from textseg.errors import ConfigError

C = TypeVar("C")


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric setting: ``low``/``high`` bounds (None: unbounded), each
    included unless ``low_open``/``high_open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}{')' if self.high_open or self.high is None else ']'}"

    def check(self, value: float, name: str) -> None:
        below = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        above = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        if below or above:
            raise ConfigError(f"{name} must be in {self}, got {value:g}")


#: A probability or a threshold on one, in [0, 1].
Probability = Annotated[float, Range(0.0, 1.0)]
#: A number above 0 (learning rates, temperatures, scales).
Positive = Annotated[float, Range(0.0, low_open=True)]
#: A number of at least 0 (loss weights, decay).
NonNegative = Annotated[float, Range(0.0)]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b.c=x"]`` -> ``{"a": "1", "b.c": "x"}``; later assignments win."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r} (for example --set bg_thresh=0.5)")
        result[key.strip()] = value.strip()
    return result


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (handles ``from __future__ import annotations``)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_overrides(config: C, overrides: Mapping[str, Any], *, what: str = "config") -> C:
    """A copy of the frozen dataclass ``config`` with ``overrides`` applied.

    Keys may be dotted to reach nested dataclass fields (``decoder.layers=1``). String values
    are parsed to the field's type; other values are checked against it.
    """
    if not overrides:
        return config
    nested: dict[str, dict[str, Any]] = {}
    direct: dict[str, Any] = {}
    types_ = field_types(type(config))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in types_:
            raise ConfigError(_unknown_key(key, types_, what))
        if rest:
            if not dataclasses.is_dataclass(getattr(config, head)):
                raise ConfigError(f"{what}: {head!r} is not a group of settings, so {key!r} cannot be set")
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = coerce(value, types_[head], f"{what}.{head}")
    for head, sub in nested.items():
        direct[head] = apply_overrides(direct.get(head, getattr(config, head)), sub, what=f"{what}.{head}")
    return dataclasses.replace(config, **direct)  # type: ignore[type-var]


def _unknown_key(key: str, types_: Mapping[str, Any], what: str) -> str:
    close = difflib.get_close_matches(key.split(".")[0], list(types_), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return f"{what} has no setting {key!r}.{hint} Valid settings: {', '.join(sorted(types_))}."


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """Convert ``value`` (often a command-line string) to ``annotation``, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is Annotated:
        base, *constraints = args
        value = coerce(value, base, name)
        for constraint in constraints:
            if isinstance(constraint, Range) and value is not None:
                constraint.check(value, name)
        return value
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{name}: cannot use {value!r}: " + "; ".join(errors))
    if origin is typing.Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (tuple, list):
        items = _split_sequence(value, name)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ConfigError(f"{name} needs {len(args)} values, got {len(items)}: {value!r}")
            return tuple(coerce(v, a, name) for v, a in zip(items, args))
        inner = args[0] if args else Any
        converted = [coerce(v, inner, name) for v in items]
        return tuple(converted) if origin is tuple else converted
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{name} expects a JSON object, got {value!r}") from exc
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name} expects a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{name} expects true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} expects an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} expects an integer, got {value!r}") from exc
        if not as_float.is_integer():
            raise ConfigError(f"{name} expects an integer, got {value!r}")
        return int(as_float)
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} expects a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name} expects a number, got {value!r}") from exc
        if not math.isfinite(number):
            raise ConfigError(f"{name} expects a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, str | int | float):
            raise ConfigError(f"{name} expects text, got {value!r}")
        return str(value)
    if annotation is Path:
        return Path(value)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            return apply_overrides(annotation(), value, what=name)
        raise ConfigError(f"{name} expects a group of settings, got {value!r}")
    return value


def _split_sequence(value: Any, name: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{name} expects a list, got {value!r}") from exc
            return list(parsed)
        return [part.strip() for part in text.split(",") if part.strip()] if text else []
    raise ConfigError(f"{name} expects a list, got {value!r}")


def to_jsonable(config: Any) -> Any:
    """A dataclass (or nested values) as plain JSON-compatible data, for results records."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_jsonable(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [to_jsonable(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    return config
