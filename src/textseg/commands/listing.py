"""``textseg list [methods|benchmarks|protocols|suites|backbones]``: what is installed, where it comes
from, and which backbone spellings the ``clip`` and ``vfm`` settings take; ``textseg list presets
METHOD``: a method's presets and every setting ``--set`` can change."""

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
        help="list methods, benchmarks, protocols, suites (plugins included), backbone spellings, a method's "
        "presets",
        description="List registered methods, benchmarks, protocols and suites (groups of benchmarks) with "
        "their origin, and the backbone spellings that --set clip=... and --set vfm=... take (what each "
        "loads, whether it downloads). `textseg list presets METHOD` shows a method's presets and settings.",
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=[*sorted(REGISTRIES), "backbones", "presets"],
        help="only this kind (default: all); presets: the presets and settings of METHOD",
    )
    parser.add_argument("method", nargs="?", metavar="METHOD", help="for `textseg list presets METHOD`")
    parser.set_defaults(run=run)


def _summary(item: object) -> str:
    if isinstance(item, Suite):
        return item.describe()
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


def _presets_line(spec: object) -> str:
    presets = getattr(spec, "presets", None)
    if not presets:
        return ""
    default = getattr(spec, "default_preset", "")
    return "presets: " + ", ".join(f"{name} (default)" if name == default else name for name in presets)


def list_presets(name: str) -> None:
    """Each preset (summary, protocol, settings, per-benchmark settings), then every setting with
    its type, default and valid range."""
    from textseg.config import Range, field_types

    spec = METHODS.get(name)
    print(f"{spec.name}: {spec.summary}\n")
    for preset_name, preset in spec.presets.items():
        default = " (default)" if preset_name == spec.default_preset else ""
        print(f"preset {preset_name}{default}: {preset.summary}")
        print(f"  protocol: {preset.protocol}")
        settings = {**preset.model, **{f"train.{k}": v for k, v in preset.train.items()}}
        for key, value in settings.items():
            print(f"  {key}={value}")
        for benchmark, values in preset.benchmarks.items():
            print(f"  on {benchmark}: " + " ".join(f"{k}={v}" for k, v in values.items()))
    inference = getattr(spec.build, "inference_settings", ())
    print("\nsettings (--set KEY=VALUE; train.KEY for training):")
    defaults = spec.config_cls()
    for field_name, annotation in field_types(spec.config_cls).items():
        ranges = [str(m) for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Range)]
        shown = f"  {field_name} = {getattr(defaults, field_name)!r}"
        extra = [f"in {r}" for r in ranges] + (
            ["inference only: method.reconfigure"] if field_name in inference else []
        )
        print(shown + (f"  ({'; '.join(extra)})" if extra else ""))


def run(args: argparse.Namespace) -> int:
    if args.what == "presets" or args.method:
        if args.what != "presets" or not args.method:
            from textseg.errors import ConfigError

            raise ConfigError("usage: textseg list presets METHOD (e.g. textseg list presets tcl)")
        list_presets(args.method)
        return 0
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
                if kind == "methods" and (line := _presets_line(row.item)):
                    print(f"  {' ' * width}  {' ' * origin_width}  {line}")
        print()
    return 0
