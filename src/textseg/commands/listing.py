"""``textseg list [methods|benchmarks|protocols|suites]``: what is installed, and where it comes from."""

from __future__ import annotations

import argparse
import sys

from textseg.registry import BENCHMARKS, METHODS, PROTOCOLS, SUITES, Registry
from textseg.suite import Suite

REGISTRIES: dict[str, Registry] = {
    "methods": METHODS,
    "benchmarks": BENCHMARKS,
    "protocols": PROTOCOLS,
    "suites": SUITES,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list methods, benchmarks, protocols and suites (plugins included)",
        description="List registered methods, benchmarks, protocols and suites (groups of benchmarks) "
        "with their origin.",
    )
    parser.add_argument("what", nargs="?", choices=sorted(REGISTRIES), help="only this kind (default: all)")
    parser.set_defaults(run=run)


def _summary(item: object) -> str:
    if isinstance(item, Suite):
        return item.describe()
    summary = getattr(item, "summary", "")
    if getattr(item, "trainable", False):
        summary += "  [trainable]"
    return summary


def run(args: argparse.Namespace) -> int:
    kinds = [args.what] if args.what else list(REGISTRIES)
    for kind in kinds:
        rows = REGISTRIES[kind].listing()
        print(f"{kind} ({len(rows)}):")
        width = max((len(row.entry.name) for row in rows), default=0)
        origin_width = max((len(row.entry.origin) for row in rows), default=0)
        for row in rows:
            name = row.entry.name.ljust(width)
            origin = row.entry.origin.ljust(origin_width)
            if row.error is not None:
                print(f"  {name}  {origin}  BROKEN (see below)")
                print(f"textseg: {row.error}", file=sys.stderr)
            else:
                print(f"  {name}  {origin}  {_summary(row.item)}")
        print()
    return 0
