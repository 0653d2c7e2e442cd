"""Suites: a named group of benchmarks, usable wherever ``textseg bench`` takes a benchmark name.

``textseg bench --dataset mess`` scores every member of the ``mess`` suite, one record each (the
records name the member benchmarks, never the suite). A suite may split its members into named
groups (MESS's domains); the leaderboard adds a column averaging each group. Suites are registered
like benchmarks, under the entry-point group ``textseg.suites``, so a plugin can add its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from textseg.errors import ConfigError


@dataclass(frozen=True)
class Suite:
    """``benchmarks`` in the order they are scored; ``groups`` maps a group name (e.g. a MESS
    domain) to the members it averages on the leaderboard."""

    name: str
    summary: str
    benchmarks: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.benchmarks or len(set(self.benchmarks)) != len(self.benchmarks):
            raise TypeError(f"suite {self.name!r}: benchmarks must be a non-empty list without repeats")
        for group, members in self.groups.items():
            strays = sorted(set(members) - set(self.benchmarks))
            if not members or strays:
                raise TypeError(
                    f"suite {self.name!r}: group {group!r} must list members of the suite: {strays}"
                )

    def describe(self) -> str:
        """The summary and the members, for ``textseg list``."""
        return f"{self.summary} ({len(self.benchmarks)}: {', '.join(self.benchmarks)})"


def expand(names: Iterable[str]) -> list[str]:
    """Benchmark names with each suite replaced by its members, in order, each name once.

    A name that is neither a benchmark nor a suite raises the benchmark registry's "did you mean"
    error, with the suites listed too; a name registered as both is refused as ambiguous.
    """
    from textseg.registry import BENCHMARKS, SUITES, UnknownNameError

    out: list[str] = []
    for name in names:
        if name in SUITES:
            if name in BENCHMARKS:
                raise ConfigError(f"{name!r} is both a benchmark and a suite; uninstall one of them")
            out += SUITES.get(name).benchmarks
        elif name in BENCHMARKS:
            out.append(name)
        else:
            suites = ", ".join(SUITES.names()) or "none installed"
            raise UnknownNameError(f"{BENCHMARKS.unknown_message(name)} Suites: {suites}.")
    return list(dict.fromkeys(out))
