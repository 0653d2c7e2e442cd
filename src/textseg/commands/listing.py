"""``textseg list [methods|benchmarks|protocols|backbones]``: what is installed, where it comes from,
and which backbone spellings the ``clip`` and ``vfm`` settings take."""

from __future__ import annotations

import argparse
import sys

from textseg.registry import BENCHMARKS, METHODS, PROTOCOLS, Registry

REGISTRIES: dict[str, Registry] = {"methods": METHODS, "benchmarks": BENCHMARKS, "protocols": PROTOCOLS}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list methods, benchmarks, protocols (plugins included) and backbone spellings",
        description="List registered methods, benchmarks and protocols with their origin, and the backbone "
        "spellings that --set clip=... and --set vfm=... take (what each loads, whether it downloads).",
    )
    parser.add_argument(
        "what", nargs="?", choices=[*sorted(REGISTRIES), "backbones"], help="only this kind (default: all)"
    )
    parser.set_defaults(run=run)


def _summary(item: object) -> str:
    summary = getattr(item, "summary", "")
    if getattr(item, "trainable", False):
        summary += "  [trainable]"
    return summary


def _backbones() -> None:
    from textseg.backbones import backbone_rows

    rows = backbone_rows()
    print(f"backbones ({len(rows)} spellings for --set clip=... and --set vfm=...):")
    width = max(len(f"{row.setting}={row.spelling}") for row in rows)
    for row in rows:
        print(
            f"  {f'{row.setting}={row.spelling}'.ljust(width)}  download: {row.download.ljust(5)}  {row.loads}"
        )
    print()


def run(args: argparse.Namespace) -> int:
    kinds = [args.what] if args.what else [*REGISTRIES, "backbones"]
    for kind in kinds:
        if kind == "backbones":
            _backbones()
            continue
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
